"""Dockerfiles: hadolint-clean, and the shape every ChatMesh image shares.

Images cannot be built on this machine (no engine, no registry), so the checks are
hadolint plus a reading of each Dockerfile against the conventions in
docs/adr/0003-deployment-layout.md; each check is shown catching a broken sample.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted([*ROOT.glob("services/*/Dockerfile"), ROOT / "bff/Dockerfile"])
BUILD_TOOLS = ("gcc", "build-essential", "apt-get install", "/uv ", "uv sync", "npm ")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def workspace_members() -> dict[str, str]:
    """Distribution name -> member directory, from the root pyproject.toml."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: dict[str, str] = {}
    for member in root["tool"]["uv"]["workspace"]["members"]:
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
        members[project["name"]] = member
    return members


def workspace_closure(member_dir: str) -> set[str]:
    """The member and every workspace member it depends on, transitively."""
    members = workspace_members()
    seen: set[str] = set()
    todo = [member_dir]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        project = tomllib.loads((ROOT / current / "pyproject.toml").read_text())["project"]
        for dependency in project.get("dependencies", []):
            name = re.split(r"[\s\[<>=!~;]", dependency, maxsplit=1)[0]
            if name in members:
                todo.append(members[name])
    return seen


def expected_module(member_dir: str) -> str:
    """services/<x> runs chatmesh.services.<x>; another member <m> runs chatmesh.<m>."""
    parts = Path(member_dir).parts
    if parts[0] == "services":
        return f"chatmesh.services.{parts[1]}"
    return f"chatmesh.{parts[-1]}"


def logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def stages(text: str) -> list[tuple[str, str, list[str]]]:
    """(name, base, instructions) per stage."""
    result: list[tuple[str, str, list[str]]] = []
    for line in logical_lines(text):
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            result.append((match.group(2) or "", match.group(1), []))
        elif result:
            result[-1][2].append(line)
    return result


def arg_defaults(text: str) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for line in logical_lines(text):
        match = re.match(r"ARG\s+(\w+)=(\S+)", line)
        if match:
            defaults.setdefault(match.group(1), match.group(2))
    return defaults


def dockerfile_problems(text: str, member_dir: str) -> list[str]:
    problems: list[str] = []
    found = stages(text)
    names = [name for name, _, _ in found]
    for needed in ("deps", "dev", "build", "runtime"):
        if needed not in names:
            problems.append(f"no `{needed}` stage")
    if not found or names[-1] != "runtime":
        problems.append("the last (default) stage is not `runtime`")
        return problems
    defaults = arg_defaults(text)
    python_image = defaults.get("PYTHON_IMAGE", "")
    if not re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", python_image):
        problems.append(f"Python base {python_image!r} is not a pinned python:3.11 slim image")
    if not re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", defaults.get("UV_IMAGE", "")):
        problems.append("uv image is not pinned to an exact version")
    project = tomllib.loads((ROOT / member_dir / "pyproject.toml").read_text())["project"]
    if defaults.get("PACKAGE") != project["name"]:
        problems.append(f"PACKAGE is {defaults.get('PACKAGE')!r}, not {project['name']!r}")
    body = "\n".join(logical_lines(text))
    if "UV_COMPILE_BYTECODE=1" not in body:
        problems.append("bytecode is not compiled (UV_COMPILE_BYTECODE=1)")
    problems += _layer_order_problems(found, member_dir)
    _, runtime_base, runtime = found[-1]
    problems += _runtime_problems(runtime_base, runtime, member_dir)
    return problems


def _layer_order_problems(found: list[tuple[str, str, list[str]]], member_dir: str) -> list[str]:
    problems = []
    flat = [(name, line) for name, _, lines in found for line in lines]
    dependency_sync = next(
        (
            i
            for i, (_, line) in enumerate(flat)
            if "--locked" in line and "--no-install-workspace" in line
        ),
        None,
    )
    members = set(workspace_members().values())
    first_source = next(
        (
            i
            for i, (_, line) in enumerate(flat)
            if (m := re.match(r"COPY (?!--from)(\S+) ", line)) and m.group(1).rstrip("/") in members
        ),
        None,
    )
    if dependency_sync is None:
        problems.append("no `uv sync --locked --no-install-workspace` dependency layer")
    elif first_source is None or first_source < dependency_sync:
        problems.append("sources are copied before the dependency layer")
    if not any(
        name == "build" and "--locked" in line and "--no-editable" in line for name, line in flat
    ):
        problems.append("the build stage does not `uv sync --locked --no-editable`")
    copied = {
        m.group(1).rstrip("/")
        for _, line in flat
        if (m := re.match(r"COPY (?!--from)(\S+) ", line))
    }
    for needed in sorted(workspace_closure(member_dir)):
        if needed not in copied:
            problems.append(f"workspace member {needed} is not copied into the image")
    for source in sorted(copied):
        if source != "." and "[" not in source and not (ROOT / source).exists():
            problems.append(f"COPY source {source} does not exist")
    return problems


def _runtime_problems(base: str, runtime: list[str], member_dir: str) -> list[str]:
    problems = []
    if base != "${PYTHON_IMAGE}":
        problems.append(f"runtime stage is based on {base}, not the slim Python image")
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        problems.append("runtime does not switch to a numeric non-root USER")
    if "STOPSIGNAL SIGTERM" not in runtime:
        problems.append("no STOPSIGNAL SIGTERM")
    entrypoints = [line for line in runtime if line.startswith("ENTRYPOINT")]
    module = expected_module(member_dir)
    if not entrypoints:
        problems.append("no ENTRYPOINT")
    else:
        try:
            command = json.loads(entrypoints[-1].removeprefix("ENTRYPOINT").strip())
        except json.JSONDecodeError:
            command = None
        if command != ["python", "-m", module]:
            problems.append(f"ENTRYPOINT is not the exec form of `python -m {module}`")
    for line in runtime:
        if line.startswith(("RUN", "COPY")) and any(tool in line for tool in BUILD_TOOLS):
            problems.append(f"build tooling in the final stage: {line}")
        if line.startswith("COPY --from=uv"):
            problems.append("uv is copied into the final stage")
    if not any(line.startswith("COPY --from=build /app/.venv") for line in runtime):
        problems.append("the final stage does not take the built virtualenv")
    return problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=rel)
def test_hadolint_clean(hadolint: str, sh: Callable[..., Any], dockerfile: Path) -> None:
    result = sh([hadolint, "--failure-threshold", "warning", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_broken_dockerfile(
    hadolint: str, sh: Callable[..., Any], tmp_path: Path
) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python -m app\n"
    )
    result = sh([hadolint, "--failure-threshold", "warning", str(broken)])
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):  # latest tag, unpinned apt, shell-form CMD
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=rel)
def test_dockerfile_shape(dockerfile: Path) -> None:
    member_dir = rel(dockerfile.parent)
    problems = dockerfile_problems(dockerfile.read_text(), member_dir)
    assert not problems, "\n".join(problems)
    module_dir = ROOT / member_dir / "src" / Path(*expected_module(member_dir).split("."))
    assert module_dir.is_dir(), f"{module_dir} (the ENTRYPOINT module) does not exist"


def test_images_use_the_uv_version_ci_uses() -> None:
    ci = (ROOT / ".github/workflows/ci.yml").read_text()
    match = re.search(r'UV_VERSION:\s*"?([\d.]+)', ci)
    assert match, "ci.yml pins no UV_VERSION"
    for dockerfile in DOCKERFILES:
        assert arg_defaults(dockerfile.read_text())["UV_IMAGE"].endswith(":" + match.group(1))


def replace_last(text: str, old: str, new: str) -> str:
    """Edit the final (runtime) stage: the last occurrence of `old`."""
    head, found, tail = text.rpartition(old)
    return head + new + tail if found else text


EXEC_FORM = 'ENTRYPOINT ["python", "-m", "chatmesh.services.auth"]'
BROKEN: dict[str, tuple[Callable[[str], str], str]] = {
    "root user": (lambda t: replace_last(t, "USER 10001:10001\n", ""), "numeric non-root USER"),
    "shell-form entrypoint": (
        lambda t: replace_last(t, EXEC_FORM, "ENTRYPOINT python -m chatmesh.services.auth"),
        "exec form",
    ),
    "no stop signal": (lambda t: replace_last(t, "STOPSIGNAL SIGTERM\n", ""), "STOPSIGNAL"),
    "sources before dependencies": (
        lambda t: t.replace("--no-install-workspace ", ""),
        "dependency layer",
    ),
    "editable install shipped": (lambda t: t.replace("--no-editable ", ""), "--no-editable"),
    "shared package missing": (
        lambda t: t.replace("COPY services/common services/common\n", ""),
        "services/common is not copied",
    ),
    "uv in the final image": (
        lambda t: t + "COPY --from=uv /uv /usr/local/bin/uv\n",
        "uv is copied into the final stage",
    ),
    "floating base image": (
        lambda t: t.replace("python:3.11-slim-bookworm", "python:latest"),
        "not a pinned python:3.11 slim image",
    ),
}


@pytest.mark.parametrize("sample", sorted(BROKEN))
def test_shape_check_catches_broken_samples(sample: str) -> None:
    good = (ROOT / "services/auth/Dockerfile").read_text()
    assert not dockerfile_problems(good, "services/auth")
    mutate, expected = BROKEN[sample]
    broken = mutate(good)
    assert broken != good, "the mutation did not apply"
    problems = dockerfile_problems(broken, "services/auth")
    assert any(expected in p for p in problems), problems


def dockerignore_problems(ignored: Callable[[str], bool]) -> list[str]:
    problems = []
    needed = ["pyproject.toml", "uv.lock", "clients/web/package.json", "clients/web/out/index.html"]
    needed += [f"{member}/pyproject.toml" for member in workspace_members().values()]
    for dockerfile in DOCKERFILES:
        for line in logical_lines(dockerfile.read_text()):
            match = re.match(r"COPY (?!--from)(\S+) ", line)
            if match and match.group(1) != "." and "[" not in match.group(1):
                needed.append(match.group(1).rstrip("/") + "/src/chatmesh/__init__.py")
    problems += [f"{path} is kept out of the build context" for path in needed if ignored(path)]
    unwanted = [
        ".git/config",
        ".venv/bin/python",
        "k8s/overlays/dev/secrets.env",
        ".env",
        "services/auth/local.env",
        "services/auth/tests/test_x.py",
        "services/common/src/chatmesh/common/__pycache__/x.cpython-311.pyc",
        "clients/web/node_modules/react/index.js",
        ".chatmesh/auth.db",
        "node_modules/.bin/buf",
    ]
    problems += [f"{path} reaches the build context" for path in unwanted if not ignored(path)]
    return problems


def test_dockerignore_keeps_the_context_small_and_secret_free(
    dockerignored: Callable[..., bool],
) -> None:
    problems = dockerignore_problems(dockerignored)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("**/*.env\n", ""), "services/auth/local.env reaches"),
        (lambda t: t.replace("**/tests/\n", ""), "tests/test_x.py reaches"),
        (lambda t: t.replace("!bff/\n", ""), "bff/pyproject.toml is kept out"),
        (lambda t: t + "**/out/\n", "clients/web/out/index.html is kept out"),
    ],
    ids=["env-files", "tests", "bff-sources", "ui-export"],
)
def test_dockerignore_check_catches_broken_samples(
    dockerignored: Callable[..., bool], edit: Callable[[str], str], expected: str
) -> None:
    text = (ROOT / ".dockerignore").read_text()
    broken = edit(text)
    assert broken != text
    problems = dockerignore_problems(lambda path: dockerignored(path, broken))
    assert any(expected in p for p in problems), problems
