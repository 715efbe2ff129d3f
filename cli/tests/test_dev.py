"""`chatmesh dev` as a user runs it: a real process, real ports, real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatmesh.common.testing import free_port

START_TIMEOUT = 60.0


class DevProcess:
    def __init__(
        self, proc: subprocess.Popen[str], base_url: str, log: Path, mail_http_port: int
    ) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log = log
        self.mail_http_port = mail_http_port

    def output(self) -> str:
        return self.log.read_text()


def wait_ready(dev: DevProcess) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            pytest.fail(f"chatmesh dev exited early ({dev.proc.returncode}):\n{dev.output()}")
        try:
            response = httpx.get(f"{dev.base_url}/readyz", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"chatmesh dev not ready after {START_TIMEOUT}s:\n{dev.output()}")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    http_port, auth_port, mail_http_port = free_port(), free_port(), free_port()
    log = tmp_path / "dev.log"
    env = {
        **os.environ,
        "CHATMESH_DEV_HTTP_PORT": str(http_port),
        "CHATMESH_DEV_AUTH_PORT": str(auth_port),
        "CHATMESH_DEV_USER_PORT": str(free_port()),
        "CHATMESH_DEV_CHAT_PORT": str(free_port()),
        "CHATMESH_DEV_MAIL_PORT": str(free_port()),
        "CHATMESH_DEV_MAIL_HTTP_PORT": str(mail_http_port),
        "CHATMESH_DEV_DATA_DIR": str(tmp_path / "data"),
        "CHATMESH_DEV_WEB_DIR": str(tmp_path / "no-web-build"),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatmesh.cli", "dev"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    dev = DevProcess(proc, f"http://127.0.0.1:{http_port}", log, mail_http_port)
    try:
        yield dev
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dev_serves_ready_and_stops_cleanly(dev: DevProcess, sig: signal.Signals) -> None:
    ready = wait_ready(dev)
    assert ready.json()["status"] == "ready"
    assert dev.base_url in dev.output()
    home = httpx.get(f"{dev.base_url}/", timeout=5)
    assert home.status_code == 200
    assert "text/html" in home.headers["content-type"]

    dev.proc.send_signal(sig)
    assert dev.proc.wait(timeout=20) == 0, dev.output()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{dev.base_url}/healthz", timeout=2)


def test_dev_mails_the_verification_link_and_it_verifies(dev: DevProcess) -> None:
    """Registration → auth's event → the real mail service (dev mailbox): the link is
    printed to the console and listed at /api/v1/dev/mail, and it verifies."""
    wait_ready(dev)
    # A browser sends its Origin on writes; the BFF refuses cookie writes without one.
    with httpx.Client(
        base_url=dev.base_url, timeout=10, headers={"Origin": dev.base_url}
    ) as client:
        created = client.post(
            "/api/v1/auth/register",
            json={
                "email": "ada@example.com",
                "username": "ada",
                "password": "correct horse battery staple",
                "display_name": "Ada Lovelace",
            },
        )
        assert created.status_code == 201, created.text
        printed = ""
        deadline = time.monotonic() + 15
        while not printed and time.monotonic() < deadline:
            for line in dev.output().splitlines():
                if line.startswith("[dev mail] to ada@example.com: Verify your email address: "):
                    printed = line.rsplit(": ", 1)[1]
            time.sleep(0.1)
        assert printed.startswith(f"{dev.base_url}/verify-email?token="), dev.output()

        mailbox = client.get("/api/v1/dev/mail")
        assert mailbox.status_code == 200, mailbox.text
        [message] = mailbox.json()["messages"]
        assert message["to"] == "ada@example.com"
        assert message["subject"] == "Verify your email address"
        assert printed in message["text"]

        token = printed.split("token=", 1)[1]
        verified = client.post("/api/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
        me = client.get("/api/v1/me")
        assert me.status_code == 200
        assert me.json()["email_verified"] is True
    dev.proc.send_signal(signal.SIGINT)
    assert dev.proc.wait(timeout=20) == 0, dev.output()
    # The mail service stopped with the rest: its REST port is closed.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{dev.mail_http_port}/healthz", timeout=2)
