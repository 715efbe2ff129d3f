"""docker-compose.yml: valid for the compose binary, ordered by healthchecks, and
running the same images, hardened, as Kubernetes does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = sorted([*ROOT.glob("services/*/Dockerfile"), ROOT / "bff/Dockerfile"])


def config(compose: str, sh: Callable[..., Any], path: Path, *extra: str) -> Any:
    # --profile '*' so that optional services (jaeger) are validated too.
    return sh(
        [
            compose,
            "--project-directory",
            str(ROOT),
            "--profile",
            "*",
            "-f",
            str(path),
            "config",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def resolved(compose: str, sh: Callable[..., Any]) -> dict[str, Any]:
    """The file as compose understands it (anchors, defaults and profiles resolved)."""
    result = config(compose, sh, COMPOSE_FILE, "--format", "json")
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


def test_compose_config_is_valid(compose: str, sh: Callable[..., Any]) -> None:
    result = config(compose, sh, COMPOSE_FILE, "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s["bff"]["depends_on"].update({"authh": {"condition": "service_healthy"}}),
            "authh",
        ),
        (
            lambda s: s["auth"]["depends_on"]["redis"].update({"condition": "when_ready"}),
            "condition",
        ),
        (lambda s: s["redis"].update({"healthcheck": {"interval": "often"}}), "interval"),
    ],
    ids=["unknown-dependency", "bad-condition", "bad-duration"],
)
def test_compose_binary_rejects_broken_samples(
    compose: str,
    sh: Callable[..., Any],
    tmp_path: Path,
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    mutate(document["services"])
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    result = config(compose, sh, broken, "-q")
    assert result.returncode != 0
    assert expected in result.stderr


def test_start_order_follows_health(resolved: dict[str, Any]) -> None:
    for name, service in resolved.items():
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (
                name,
                dependency,
            )
            if condition == "service_healthy":
                assert "healthcheck" in resolved[dependency], f"{dependency} has no healthcheck"
    assert (
        resolved["auth"]["depends_on"]["auth-migrate"]["condition"]
        == "service_completed_successfully"
    )
    assert resolved["auth-migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert resolved["bff"]["depends_on"]["auth"]["condition"] == "service_healthy"
    assert {"postgres", "redis", "mailpit"} <= set(resolved)


def test_same_images_hardened(resolved: dict[str, Any]) -> None:
    built = {s["build"]["dockerfile"] for s in resolved.values() if "build" in s}
    assert built == {p.relative_to(ROOT).as_posix() for p in DOCKERFILES}
    for name, service in resolved.items():
        if "build" not in service:
            continue
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        if name.endswith("-migrate"):
            assert service["command"] == ["migrate"]
        else:
            assert "healthcheck" in service, name
    assert resolved["bff"]["ports"][0]["published"] == "8000"
    assert resolved["bff"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_mail_sends_to_mailpit_after_its_migrations(resolved: dict[str, Any]) -> None:
    mail = resolved["mail"]
    env = mail["environment"]
    assert env["CHATMESH_PROVIDER"] == "smtp"
    assert env["CHATMESH_SMTP_HOST"] == "mailpit"
    assert env["CHATMESH_SMTP_PORT"] == "1025"
    assert mail["depends_on"]["mail-migrate"]["condition"] == "service_completed_successfully"
    assert mail["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert resolved["mail-migrate"]["command"] == ["migrate"]
    # Mailpit's UI owns 127.0.0.1:8025; the mail REST API stays inside the network.
    assert not mail.get("ports")
    assert resolved["bff"]["environment"]["CHATMESH_MAIL_HTTP_URL"] == "http://mail:8025"
    assert resolved["chat"]["environment"]["CHATMESH_USER_ADDRESS"] == "user:50052"
