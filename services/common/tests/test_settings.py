"""Settings: typed values from CHATMESH_* and one clear line (exit 2) when wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from chatmesh.common.settings import ServiceSettings, load_settings

LOAD = (
    "from chatmesh.common.settings import ServiceSettings, load_settings\n"
    "settings = load_settings(ServiceSettings)\n"
    "print('loaded', settings.grpc_port)\n"
)


class AuthSettings(ServiceSettings):
    service_name = "auth"
    signing_secret: str
    pool_size: int = Field(default=5, validation_alias="AUTH_POOL_SIZE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("CHATMESH_", "OTEL_", "AUTH_")):
            monkeypatch.delenv(name)


def run_load(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHATMESH_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-c", LOAD],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_invalid_variable_stops_start_up_with_one_line_and_exit_code_2() -> None:
    result = run_load(CHATMESH_GRPC_PORT="abc")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CHATMESH_GRPC_PORT" in lines[0]
    assert "Traceback" not in result.stderr
    assert "loaded" not in result.stdout


def test_a_valid_environment_starts() -> None:
    result = run_load(CHATMESH_GRPC_PORT="6001")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded 6001"


def test_every_bad_variable_is_named_on_the_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATMESH_METRICS_PORT", "70000")
    monkeypatch.setenv("CHATMESH_LOG_FORMAT", "xml")
    monkeypatch.setenv("AUTH_POOL_SIZE", "many")
    with pytest.raises(SystemExit) as caught:
        load_settings(AuthSettings)
    assert caught.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    for variable in (
        "CHATMESH_METRICS_PORT",
        "CHATMESH_LOG_FORMAT",
        "CHATMESH_SIGNING_SECRET",
        "AUTH_POOL_SIZE",
    ):
        assert variable in line
    assert "CHATMESH_AUTH_POOL_SIZE" not in line


def test_values_are_typed_and_the_level_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATMESH_SIGNING_SECRET", "s3cret")
    monkeypatch.setenv("CHATMESH_GRPC_PORT", "50099")
    monkeypatch.setenv("CHATMESH_DRAIN_SECONDS", "0.5")
    monkeypatch.setenv("CHATMESH_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("AUTH_POOL_SIZE", "9")
    settings = load_settings(AuthSettings)
    assert settings.grpc_port == 50099
    assert settings.drain_seconds == 0.5
    assert settings.log_level == "debug"
    assert settings.otel_exporter_otlp_endpoint == "http://collector:4317"
    assert settings.pool_size == 9


def test_the_database_defaults_to_a_sqlite_file_per_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATMESH_SIGNING_SECRET", "s3cret")
    embedded = load_settings(AuthSettings)
    assert embedded.resolved_database_url() == f"sqlite+aiosqlite:///{Path('.chatmesh/auth.db')}"
    assert embedded.redis_url == ""
    monkeypatch.setenv("CHATMESH_DATABASE_URL", "postgresql+asyncpg://db/chatmesh")
    assert load_settings(AuthSettings).resolved_database_url() == "postgresql+asyncpg://db/chatmesh"
