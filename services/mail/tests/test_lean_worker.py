"""A replica whose schema a migration job maintains (`migrate_on_start=false`)
serves from the migrated database, and a queue-only worker (REST off, SMTP)
loads neither Alembic nor the HTTP framework nor the HTTP providers' libraries:
each is MBs of RSS per worker (the bench's target is under 100 MB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from chatmesh.services.mail.app import migrate

HEAVY = ("alembic", "mako", "uvicorn", "starlette", "sendgrid", "boto3", "botocore")

WORKER = """
import asyncio, sys
from chatmesh.services.mail.app import serve
from chatmesh.services.mail.settings import MailSettings

async def main() -> None:
    server = await serve(MailSettings(
        database_url=sys.argv[1], redis_url="", grpc_port=0, metrics_port=0, rest_port=0,
        migrate_on_start=False, provider="smtp", smtp_host="127.0.0.1", smtp_port=2,
        smtp_starttls=False, auth_address="127.0.0.1:1",
    ))
    loaded = {name.split(".")[0] for name in sys.modules}
    print("heavy:", sorted(loaded & set(sys.argv[2].split(","))))
    await server.stop(drain=0.0, grace=0.5)

asyncio.run(main())
"""


async def test_a_migrated_database_serves_without_migrating_on_start(
    tmp_path: Path, smtp_sink: Any, kit: Any
) -> None:
    settings = kit.smtp_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'mail.db'}", smtp_sink, migrate_on_start=False
    )
    await migrate(settings)  # the migration job
    async with kit.start(settings) as mail:
        sent = await mail.send(
            "system_alert",
            "ops@example.com",
            {"title": "disk", "message": "almost full", "severity": "warning"},
        )
        [received] = await smtp_sink.wait_count(1)
    assert received.message["Subject"] == "[WARNING] disk"
    assert sent.created


def test_a_queue_only_worker_loads_no_heavy_libraries(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mail.db'}"
    env = {**os.environ, "CHATMESH_DATABASE_URL": url, "CHATMESH_REDIS_URL": ""}
    migrated = subprocess.run(
        [sys.executable, "-m", "chatmesh.services.mail", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    worker = subprocess.run(
        [sys.executable, "-c", WORKER, url, ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert "heavy: []" in worker.stdout.splitlines(), worker.stdout
