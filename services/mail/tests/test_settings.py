"""A misconfigured provider stops start-up with one clear line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CHATMESH_PROVIDER": "smtp"}, ["CHATMESH_SMTP_HOST"]),
        ({"CHATMESH_PROVIDER": "sendgrid"}, ["CHATMESH_SENDGRID_API_KEY"]),
        ({"CHATMESH_PROVIDER": "ses"}, ["CHATMESH_SES_REGION"]),
        (
            {
                "CHATMESH_PROVIDER": "ses",
                "CHATMESH_SES_REGION": "eu-west-1",
                "CHATMESH_SES_ACCESS_KEY_ID": "AKID",
            },
            ["CHATMESH_SES_SECRET_ACCESS_KEY"],
        ),
        ({"CHATMESH_PROVIDER": "carrier-pigeon"}, ["CHATMESH_PROVIDER"]),
        ({"CHATMESH_SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5"}, ["WEBHOOK_PUBLIC_KEY"]),
    ],
)
def test_misconfigured_provider_exits_2_with_one_line(
    env: dict[str, str], names: list[str]
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
    result = subprocess.run(
        [sys.executable, "-m", "chatmesh.services.mail"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error:")
    for name in names:
        assert name in lines[0]
    assert "Traceback" not in result.stderr
