"""The configuration each local way of running the mesh hands a ChatMesh process
(the dev overlay's ConfigMaps and Secret, docker-compose.yml's environment) passes
that process's own settings validation: the check `python -m …` makes at start-up,
exiting 2 with one line naming the variable. A broken sample shows it failing."""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from chatmesh.bff.settings import BffSettings
from chatmesh.common.settings import ServiceSettings
from chatmesh.services.auth.settings import AuthSettings
from chatmesh.services.chat.settings import ChatSettings
from chatmesh.services.mail.settings import MailSettings
from chatmesh.services.user.settings import UserSettings

if TYPE_CHECKING:
    from tests.ops.conftest import Render

Doc = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[ServiceSettings]] = {
    "auth": AuthSettings,
    "user": UserSettings,
    "chat": ChatSettings,
    "mail": MailSettings,
    "bff": BffSettings,
}
# Variables the settings read; everything else in the process environment is hidden
# while a configuration is checked.
PREFIXES = ("CHATMESH_", "OTEL_")


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith(PREFIXES)]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_problem(service: str, env: dict[str, str]) -> str | None:
    with environment(env):
        try:
            SETTINGS[service]()
        except ValidationError as error:
            return f"{service}: {error}"
    return None


def service_of_image(image: str) -> str | None:
    """chatmesh-mail, chatmesh-mail-migrate (dev's plain build) -> mail."""
    name = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    if not name.startswith("chatmesh-"):
        return None
    service = name.removeprefix("chatmesh-").removesuffix("-migrate")
    return service if service in SETTINGS else None


def container_env(render: Render, container: Doc, secret: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            configmap = render.get("ConfigMap", source["configMapRef"]["name"])
            env.update({k: str(v) for k, v in configmap.get("data", {}).items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["key"] in secret:
            env[item["name"]] = secret[ref["key"]]
    return env


def kubernetes_problems(render: Render) -> list[str]:
    """Every ChatMesh container of the overlay, with the overlay's generated Secret."""
    (secret_doc,) = [
        s for s in render.of_kind("Secret") if "chatmesh-secrets" in s["metadata"]["name"]
    ]
    secret = {k: base64.b64decode(v).decode() for k, v in secret_doc.get("data", {}).items()}
    problems = []
    checked = set()
    for doc in render.workloads():
        for container in render.containers(doc):
            service = service_of_image(str(container["image"]))
            if service is None:
                continue
            checked.add(service)
            env = container_env(render, container, secret)
            problem = settings_problem(service, env)
            if problem:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {problem}")
    missing = set(SETTINGS) - checked
    problems += [f"no container runs {service}" for service in sorted(missing)]
    return problems


def test_dev_overlay_configuration_passes_each_services_settings(
    renders: dict[str, Render],
) -> None:
    problems = kubernetes_problems(renders["dev"])
    assert not problems, "\n".join(problems)


def _mail_config(render: Render) -> Doc:
    data: Doc = next(
        c for c in render.of_kind("ConfigMap") if c["metadata"]["name"].startswith("mail-config")
    )["data"]
    return data


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: _mail_config(r).__setitem__("CHATMESH_SMTP_PORT", "smtp"), "smtp_port"),
        (lambda r: _mail_config(r).pop("CHATMESH_SMTP_HOST"), "CHATMESH_SMTP_HOST"),
        (lambda r: _mail_config(r).__setitem__("CHATMESH_PROVIDER", "mailgun"), "provider"),
    ],
    ids=["port-not-a-number", "smtp-without-host", "unknown-provider"],
)
def test_settings_check_catches_a_broken_dev_configuration(
    renders: dict[str, Render], mutate: Callable[[Render], None], expected: str
) -> None:
    good = renders["dev"]
    broken = dataclasses.replace(good, docs=copy.deepcopy(good.docs))
    mutate(broken)
    problems = kubernetes_problems(broken)
    assert any(expected in p and "mail" in p for p in problems), problems


def compose_problems(services: dict[str, Doc]) -> list[str]:
    problems = []
    for name, service in services.items():
        if "build" not in service:
            continue
        dockerfile = Path(service["build"]["dockerfile"])
        member = dockerfile.parent.name
        env = {k: str(v) for k, v in (service.get("environment") or {}).items() if v is not None}
        problem = settings_problem(member, env)
        if problem:
            problems.append(f"compose service {name}: {problem}")
    return problems


@pytest.fixture(scope="module")
def compose_services(compose: str, sh: Callable[..., Any]) -> dict[str, Doc]:
    compose_file = str(ROOT / "docker-compose.yml")
    result = sh(
        [
            compose,
            "--project-directory",
            str(ROOT),
            "-f",
            compose_file,
            "config",
            "--format",
            "json",
        ]
    )
    assert result.returncode == 0, result.stderr
    services: dict[str, Doc] = json.loads(result.stdout)["services"]
    return services


def test_compose_configuration_passes_each_services_settings(
    compose_services: dict[str, Doc],
) -> None:
    assert "mail" in compose_services
    problems = compose_problems(compose_services)
    assert not problems, "\n".join(problems)


def test_settings_check_catches_a_broken_compose_configuration(
    compose_services: dict[str, Doc],
) -> None:
    broken = copy.deepcopy(compose_services)
    broken["mail"]["environment"]["CHATMESH_SMTP_STARTTLS"] = "sometimes"
    problems = compose_problems(broken)
    assert any("compose service mail" in p and "smtp_starttls" in p for p in problems), problems
