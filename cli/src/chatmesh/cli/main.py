"""`chatmesh` command line: `chatmesh dev` runs the whole mesh on this machine."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from chatmesh.cli.dev import DevSettings, run_dev
from chatmesh.common.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatmesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser(
        "dev",
        help="run every service and the BFF in embedded mode (SQLite, in-process bus)",
    )
    dev.add_argument("--host", help="interface for every listener (default 127.0.0.1)")
    dev.add_argument("--port", type=int, help="HTTP port of the BFF (default 8000)")
    dev.add_argument("--data-dir", help="where SQLite files live (default ./.chatmesh)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev":
        settings = load_settings(DevSettings)
        overrides = {
            "host": args.host,
            "http_port": args.port,
            "data_dir": args.data_dir,
        }
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        return asyncio.run(run_dev(settings))
    return 2  # pragma: no cover - argparse rejects unknown commands
