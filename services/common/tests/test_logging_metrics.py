"""Logs are JSON lines with service / request id / trace id; metrics are served;
tracing stays off unless an endpoint is configured.

Logging and tracing are process-wide, so those checks run in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime
from typing import Any

import httpx
import pytest

from chatmesh.common.metrics import GRPC_HANDLED, start_metrics_server
from chatmesh.common.tracing import configure_tracing, tracing_enabled

JSON_LOGS = """
import logging, sys
import structlog
from chatmesh.common.logging import configure_logging, get_logger

# uvicorn installs its own plain-text handler before we get to configure anything.
logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(sys.stderr))
configure_logging("auth", level="info")
configure_logging("auth", level="info")  # a second call must not duplicate lines

structlog.contextvars.bind_contextvars(request_id="req-1", trace_id="trace-1")
log = get_logger("chatmesh.test")
log.info("user_registered", user_id="u1")
log.debug("too_chatty")
logging.getLogger("uvicorn.error").warning("started on %s", "port 8000")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_logs_are_json_lines_with_service_request_and_trace_ids() -> None:
    result = run(JSON_LOGS)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    events: list[dict[str, Any]] = [json.loads(line) for line in lines]  # all JSON, no plain text
    assert [e["event"] for e in events] == ["user_registered", "started on port 8000", "boom"]
    for event in events:
        assert event["service"] == "auth"
        assert event["request_id"] == "req-1"
        assert event["trace_id"] == "trace-1"
        assert datetime.fromisoformat(event["timestamp"]).utcoffset() is not None
    assert (events[0]["level"], events[0]["logger"], events[0]["user_id"]) == (
        "info",
        "chatmesh.test",
        "u1",
    )
    assert (events[1]["level"], events[1]["logger"]) == ("warning", "uvicorn.error")
    assert events[2]["level"] == "error"
    assert "ZeroDivisionError: division by zero" in events[2]["exception"]


def test_console_format_and_debug_level_for_development() -> None:
    result = run(
        "from chatmesh.common.logging import configure_logging, get_logger\n"
        "configure_logging('auth', level='debug', fmt='console')\n"
        "get_logger('dev').debug('hello_dev', answer=42)\n"
    )
    assert result.returncode == 0, result.stderr
    line = result.stderr.strip()
    assert "hello_dev" in line
    assert "answer" in line
    assert not line.startswith("{")


async def test_metrics_endpoint_serves_prometheus_text_on_a_picked_port() -> None:
    GRPC_HANDLED.labels("chatmesh.test.v1.MetricsProbe", "Probe", "OK").inc()
    port = start_metrics_server("127.0.0.1", 0)
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'grpc_method="Probe",grpc_service="chatmesh.test.v1.MetricsProbe"} 1.0' in response.text


def test_metrics_on_a_taken_port_fails_loudly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            start_metrics_server("127.0.0.1", taken.getsockname()[1])


def test_tracing_is_off_without_an_endpoint() -> None:
    configure_tracing("auth", "")
    assert not tracing_enabled()


def test_tracing_is_on_with_an_endpoint() -> None:
    result = run(
        "from chatmesh.common.tracing import configure_tracing, tracing_enabled\n"
        "print(tracing_enabled())\n"
        "configure_tracing('auth', 'http://127.0.0.1:4317')\n"
        "configure_tracing('auth', 'http://127.0.0.1:4317')\n"
        "from opentelemetry import trace\n"
        "resource = trace.get_tracer_provider().resource\n"
        "print(tracing_enabled(), resource.attributes['service.name'])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "auth"]
    assert "Overriding" not in result.stderr
