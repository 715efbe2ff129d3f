"""Configuration from CHATMESH_* variables, the client address behind proxies,
and `python -m chatmesh.bff` as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import pytest
from pydantic import ValidationError

from chatmesh.bff.settings import BffSettings
from chatmesh.common.testing import free_port

PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize(
    "raw",
    [
        "https://app.example, http://localhost:3000",
        '["https://app.example", "http://localhost:3000"]',
        "HTTPS://App.Example:443/,http://localhost:3000/path",
    ],
)
def test_cors_origins_from_the_environment(monkeypatch, raw):
    monkeypatch.setenv("CHATMESH_CORS_ORIGINS", raw)
    assert BffSettings().cors_origins == ["https://app.example", "http://localhost:3000"]


@pytest.mark.parametrize("raw", ["ftp://files.example", "not an origin", "[1, 2]"])
def test_invalid_cors_origins_are_refused(monkeypatch, raw):
    monkeypatch.setenv("CHATMESH_CORS_ORIGINS", raw)
    with pytest.raises(ValidationError):
        BffSettings()


def test_cookies_are_secure_exactly_when_served_over_https(monkeypatch):
    assert BffSettings(public_url="https://chat.example").secure_cookies is True
    assert BffSettings(public_url="http://127.0.0.1:8000").secure_cookies is False
    monkeypatch.setenv("CHATMESH_COOKIE_SECURE", "true")
    assert BffSettings(public_url="http://127.0.0.1:8000").secure_cookies is True
    monkeypatch.setenv("CHATMESH_COOKIE_SECURE", "false")
    assert BffSettings(public_url="https://chat.example").secure_cookies is False


@pytest.mark.parametrize(("hops", "expected"), [(0, "127.0.0.1"), (1, "203.0.113.9")])
async def test_client_address_honours_only_trusted_proxy_hops(
    sqlite_auth, start_bff, hops, expected
):
    bff = await start_bff(auth_address=sqlite_auth.address, trusted_proxy_hops=hops)
    async with bff.client() as client:
        # A client-forged entry first, then the one our (single) proxy appended.
        forwarded = {"X-Forwarded-For": "10.9.8.7, 203.0.113.9"}
        response = await client.post(
            "/api/v1/auth/register",
            json={
                "email": f"proxy{hops}@example.com",
                "username": f"proxy{hops}",
                "password": PASSWORD,
                "display_name": "Proxy",
            },
            headers=forwarded,
        )
        assert response.status_code == 201, response.text
        sessions = await client.get("/api/v1/auth/sessions", headers=forwarded)
    assert [s["ip_address"] for s in sessions.json()["sessions"]] == [expected]


async def run_module(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh.bff",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_bad_configuration_exits_2_naming_the_variable():
    process = await run_module({"CHATMESH_HTTP_PORT": "eighty"})
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "CHATMESH_HTTP_PORT" in lines[0]


async def test_python_m_chatmesh_bff_serves_and_stops_on_sigterm(
    sqlite_auth, sqlite_deps, tmp_path
):
    port = free_port()
    process = await run_module(
        {
            "CHATMESH_HTTP_PORT": str(port),
            "CHATMESH_AUTH_ADDRESS": sqlite_auth.address,
            "CHATMESH_USER_ADDRESS": sqlite_deps["user_address"],
            "CHATMESH_CHAT_ADDRESS": sqlite_deps["chat_address"],
            "CHATMESH_REDIS_URL": "",
            "CHATMESH_WEB_DIR": str(tmp_path / "none"),
            "CHATMESH_LOG_FORMAT": "json",
        }
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            ready = None
            for _ in range(150):
                try:
                    ready = await client.get("/readyz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert ready is not None, "the BFF never started listening"
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"auth": "ok", "user": "ok", "chat": "ok"}
            assert "server" not in ready.headers
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
        # uvicorn shuts down gracefully, then re-raises the signal it caught so a
        # supervisor sees "terminated by SIGTERM" rather than a crash.
        assert process.returncode in (0, -signal.SIGTERM), stderr.decode()
        assert b"Application shutdown complete" in stderr
        # JSON log lines, ours and uvicorn's alike.
        assert b'"service": "bff"' in stderr or b'"service":"bff"' in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
