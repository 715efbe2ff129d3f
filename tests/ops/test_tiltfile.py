"""Tiltfile: evaluated for real (starlark) with recording stand-ins for Tilt's
builtins; every Dockerfile, stage, path, overlay, image and resource it names must
exist, and the resource graph must start things in the right order."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.ops.conftest import Render

starlark = pytest.importorskip("starlark", reason="uv sync (PyPI starlark-pyo3, `ops` group)")

ROOT = Path(__file__).resolve().parents[2]
TILTFILE = ROOT / "Tiltfile"
# Build outputs a resource creates (may be absent in a fresh clone).
GENERATED = ("clients/web/out",)


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(key, default)


@dataclass
class Recording:
    calls: list[Call] = field(default_factory=list)
    globals: dict[str, Any] = field(default_factory=dict)

    def of(self, *names: str) -> list[Call]:
        return [c for c in self.calls if c.name in names]


TILT_BUILTINS = (
    "docker_build",
    "k8s_yaml",
    "kustomize",
    "k8s_resource",
    "local_resource",
    "local",
    "sync",
    "run",
    "fall_back_on",
)


class TiltfileFailedError(Exception):
    """The Tiltfile called fail()."""


def _fail(message: str) -> None:
    raise TiltfileFailedError(message)


def evaluate(source: str, exists: Callable[[str], bool] | None = None) -> Recording:
    """Run a Tiltfile under starlark-pyo3. Builtins record their arguments and return
    a dict describing the call (so e.g. `k8s_yaml(kustomize(...))` can be followed)."""
    recording = Recording()

    def recorder(name: str) -> Callable[..., dict[str, Any]]:
        def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
            recording.calls.append(Call(name, args, kwargs))
            return {"builtin": name, "args": list(args)}

        return record

    def path_exists(path: str) -> bool:
        if exists is not None:
            return exists(path)
        return (ROOT / path).exists()

    module = starlark.Module()
    for name in TILT_BUILTINS:
        module.add_callable(name, recorder(name))
    module.add_callable("read_file", lambda path: (ROOT / path).read_text())
    module.add_callable("fail", _fail)
    module.add_callable("_path_exists", path_exists)
    module.add_callable("_getenv", lambda key, default="": os.environ.get(key, default))

    extension = starlark.Module()
    extension.add_callable("docker_build_with_restart", recorder("docker_build_with_restart"))
    frozen_extension = extension.freeze()

    def load(name: str) -> Any:
        assert name == "ext://restart_process", f"unexpected load({name!r})"
        return frozen_extension

    dialect = starlark.Dialect.extended()
    library = starlark.Globals.extended_by([starlark.LibraryExtension.StructType])
    prelude = "os = struct(path = struct(exists = _path_exists), getenv = _getenv)\n"
    starlark.eval(module, starlark.parse("prelude", prelude, dialect), library)
    starlark.eval(
        module, starlark.parse("Tiltfile", source, dialect), library, starlark.FileLoader(load)
    )
    for key in ("WORKSPACE_MEMBERS", "PYTHON_SERVICES", "MIGRATIONS"):
        recording.globals[key] = module[key]
    return recording


def builds(recording: Recording) -> dict[str, Call]:
    return {
        str(c.arg(0, "ref")): c for c in recording.of("docker_build", "docker_build_with_restart")
    }


def missing(path: str, what: str) -> list[str]:
    if path.startswith(GENERATED) or (ROOT / path).exists():
        return []
    return [f"{what}: {path} does not exist"]


def build_problems(recording: Recording) -> list[str]:
    problems = []
    for ref, build in builds(recording).items():
        dockerfile = str(build.kwargs.get("dockerfile", "Dockerfile"))
        problems += missing(dockerfile, f"image {ref} Dockerfile")
        problems += missing(str(build.arg(1, "context")), f"image {ref} context")
        target = build.kwargs.get("target")
        text = (ROOT / dockerfile).read_text() if (ROOT / dockerfile).is_file() else ""
        if target and not re.search(rf"^FROM .+ AS {re.escape(target)}$", text, re.M):
            problems.append(f"image {ref}: {dockerfile} has no stage {target}")
        for path in build.kwargs.get("only", []):
            problems += missing(str(path), f"image {ref} only")
    for step in recording.of("sync"):
        problems += missing(str(step.args[0]), "sync")
        if not str(step.args[1]).startswith(("/src/", "/app/")):
            problems.append(f"sync target {step.args[1]} is outside /src and /app")
    for step in recording.of("run"):
        for trigger in step.kwargs.get("trigger", []):
            problems += missing(str(trigger), "run trigger")
    for step in recording.of("fall_back_on"):
        for path in step.args[0]:
            problems += missing(str(path), "fall_back_on")
    return problems


def path_problems(recording: Recording) -> list[str]:
    """Every file or directory the Tiltfile names exists (or is a known build output)."""
    problems = build_problems(recording)
    for call in recording.of("kustomize"):
        problems += missing(str(call.args[0]) + "/kustomization.yaml", "kustomize")
    makefile = (ROOT / "Makefile").read_text()
    for call in recording.of("local_resource"):
        for path in call.kwargs.get("deps", []):
            problems += missing(str(path), f"local_resource {call.args[0]} deps")
        make = re.fullmatch(r"make (\S+)", str(call.kwargs.get("cmd", "")))
        if make and not re.search(rf"^{re.escape(make.group(1))}:", makefile, re.M):
            problems.append(f"local_resource {call.args[0]}: no Makefile target {make.group(1)}")
    for call in recording.of("local"):
        command = call.args[0]
        if isinstance(command, list) and command[:1] == ["cp"]:
            problems += missing(str(command[1]), "local cp source")
    return problems


def resource_deps(recording: Recording) -> dict[str, list[str]]:
    calls = recording.of("k8s_resource", "local_resource")
    return {str(c.args[0]): list(c.kwargs.get("resource_deps", [])) for c in calls}


def reaches(deps: dict[str, list[str]], start: str, goal: str) -> bool:
    """Whether `start` waits (directly or not) for `goal`."""
    seen: set[str] = set()
    todo = list(deps.get(start, []))
    while todo:
        current = todo.pop()
        if current == goal:
            return True
        if current not in seen:
            seen.add(current)
            todo += deps.get(current, [])
    return False


def graph_problems(recording: Recording, workloads: set[str], images: set[str]) -> list[str]:
    """Resources match the rendered dev workloads; deps exist and run
    databases -> migrations -> services -> BFF; images match the manifests."""
    problems = []
    resources = {str(c.args[0]) for c in recording.of("k8s_resource")}
    problems += [
        f"k8s_resource {n} matches no workload in the dev overlay"
        for n in sorted(resources - workloads)
    ]
    problems += [
        f"workload {n} has no k8s_resource (labels, deps)" for n in sorted(workloads - resources)
    ]
    deps = resource_deps(recording)
    problems += [
        f"{name} waits for unknown resource {dep}"
        for name, needed in deps.items()
        for dep in needed
        if dep not in deps
    ]
    problems += [
        f"{c.args[0]} has no labels"
        for c in recording.of("k8s_resource", "local_resource")
        if not c.kwargs.get("labels")
    ]
    problems += [f"{name} depends on itself" for name in deps if reaches(deps, name, name)]
    for job, service in dict(recording.globals["MIGRATIONS"]).items():
        if not reaches(deps, job, "postgres"):
            problems.append(f"{job} does not wait for postgres")
        if not reaches(deps, service, job):
            problems.append(f"{service} does not wait for its migrations {job}")
    if not reaches(deps, "bff", "auth"):
        problems.append("bff does not wait for auth")
    built = set(builds(recording))
    problems += [
        f"the dev overlay uses {i} but Tilt builds no such image" for i in sorted(images - built)
    ]
    problems += [f"Tilt builds {i} but no dev workload uses it" for i in sorted(built - images)]
    return problems


@pytest.fixture(scope="module")
def recording() -> Recording:
    return evaluate(TILTFILE.read_text())


@pytest.fixture(scope="module")
def dev_workloads(renders: dict[str, Render]) -> tuple[set[str], set[str]]:
    dev = renders["dev"]
    workloads = {d["metadata"]["name"] for d in dev.workloads()}
    images = {
        str(c["image"])
        for d in dev.workloads()
        for c in dev.containers(d)
        if str(c["image"]).startswith("chatmesh-")
    }
    return workloads, images


def test_tiltfile_paths_exist(recording: Recording) -> None:
    problems = path_problems(recording)
    assert not problems, "\n".join(problems)


def test_tiltfile_syncs_only_what_reaches_the_build_context(
    dockerignored: Callable[..., bool],
) -> None:
    """Tilt neither builds nor live-syncs files that .dockerignore excludes."""

    def exists(path: str) -> bool:
        return path.startswith("clients/web") or (ROOT / path).exists()

    recording = evaluate(TILTFILE.read_text(), exists=exists)
    paths = [str(step.args[0]) for step in recording.of("sync")]
    for build in builds(recording).values():
        paths += [str(p) for p in build.kwargs.get("only", [])]
    assert paths
    ignored = sorted({p for p in paths if dockerignored(p)})
    assert not ignored, f"excluded by .dockerignore: {ignored}"


def test_tiltfile_resources_match_the_dev_overlay(
    recording: Recording, dev_workloads: tuple[set[str], set[str]]
) -> None:
    problems = graph_problems(recording, *dev_workloads)
    assert not problems, "\n".join(problems)


def test_tiltfile_applies_the_dev_overlay_and_forwards_ports(recording: Recording) -> None:
    (k8s_yaml,) = recording.of("k8s_yaml")
    assert k8s_yaml.args[0] == {"builtin": "kustomize", "args": ["k8s/overlays/dev"]}
    forwards = {
        str(c.args[0]): list(c.kwargs.get("port_forwards", []))
        for c in recording.of("k8s_resource")
    }
    assert "8000:8000" in forwards["bff"]
    assert "16686:16686" in forwards["jaeger"]
    assert "3000:3000" in forwards["grafana"]
    assert "9090:9090" in forwards["prometheus"]
    proto = next(c for c in recording.of("local_resource") if c.args[0] == "proto")
    assert proto.kwargs["cmd"] == "make proto"
    assert "proto" in proto.kwargs["deps"]


def test_tiltfile_live_updates_every_service(recording: Recording) -> None:
    """Python images sync their sources, re-sync the venv on uv.lock, restart the process."""
    for service in recording.globals["PYTHON_SERVICES"]:
        ref = "chatmesh-" + service["name"]
        build = builds(recording)[ref]
        assert build.name == "docker_build_with_restart", ref
        assert build.kwargs["target"] == "dev"
        assert build.kwargs["entrypoint"] == ["python", "-m", service["module"]]
        steps = [step["builtin"] for step in build.kwargs["live_update"]]
        assert steps[0] == "fall_back_on", steps
        assert "sync" in steps, steps
        assert steps[-1] == "run", steps
    uv_sync = [c for c in recording.of("run") if str(c.args[0]).startswith("uv sync --locked")]
    assert uv_sync
    assert all(c.kwargs["trigger"] == ["uv.lock"] for c in uv_sync)


def test_tiltfile_workspace_members_match_pyproject(recording: Recording) -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (
        list(recording.globals["WORKSPACE_MEMBERS"]) == root["tool"]["uv"]["workspace"]["members"]
    )


def test_tiltfile_builds_the_web_ui_when_it_exists(
    dev_workloads: tuple[set[str], set[str]],
) -> None:
    """With clients/web present the UI is built by local resources the BFF waits for."""

    def exists(path: str) -> bool:
        return path.startswith("clients/web") or (ROOT / path).exists()

    recording = evaluate(TILTFILE.read_text(), exists=exists)
    local = {str(c.args[0]): c for c in recording.of("local_resource")}
    assert {"web", "web-deps"} <= set(local)
    assert "npm --prefix clients/web run build" in local["web"].kwargs["cmd"]
    bff = next(c for c in recording.of("k8s_resource") if c.args[0] == "bff")
    assert "web" in bff.kwargs["resource_deps"]
    assert not graph_problems(recording, *dev_workloads)


BROKEN = {
    "misspelled Dockerfile": (
        ("dockerfile=svc['dir'] + '/Dockerfile'", "dockerfile=svc['dir'] + '/Dockerfle'"),
        "Dockerfle does not exist",
    ),
    "missing stage": (
        ("target='dev',\n        entrypoint", "target='debug',\n        entrypoint"),
        "no stage debug",
    ),
    "misspelled overlay": (
        ("DEV_OVERLAY = 'k8s/overlays/dev'", "DEV_OVERLAY = 'k8s/overlay/dev'"),
        "kustomize",
    ),
    "unknown dependency": (
        ("'deps': ['auth', 'redis'", "'deps': ['authh', 'redis'"),
        "unknown resource authh",
    ),
    "services before migrations": (
        ("'deps': ['auth-migrate', 'redis'", "'deps': ['redis'"),
        "does not wait for its migrations",
    ),
    "unknown make target": (("cmd='make proto'", "cmd='make protos'"), "no Makefile target protos"),
}


@pytest.mark.parametrize("sample", sorted(BROKEN))
def test_tiltfile_checks_catch_broken_samples(
    sample: str, dev_workloads: tuple[set[str], set[str]]
) -> None:
    (old, new), expected = BROKEN[sample]
    source = TILTFILE.read_text()
    assert old in source, f"the sample no longer applies: {old!r}"
    recording = evaluate(source.replace(old, new, 1))
    problems = path_problems(recording) + graph_problems(recording, *dev_workloads)
    assert any(expected in p for p in problems), problems
