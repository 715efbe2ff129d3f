"""GitHub Actions workflows: actionlint-clean, least privilege, and the CI/CD flow
(ci -> images -> deploy with rollback) wired the way docs/deploy.md describes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github/workflows"
DOCKERFILES = sorted([*ROOT.glob("services/*/Dockerfile"), ROOT / "bff/Dockerfile"])


def load(name: str) -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the `on:` key as the boolean True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps_text(workflow: dict[Any, Any]) -> str:
    return "\n".join(
        str(step.get("run", "")) + " " + str(step.get("uses", ""))
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
    )


def test_actionlint_clean(actionlint: str, sh: Callable[..., Any]) -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} >= {"ci.yml", "images.yml", "deploy.yml"}
    result = sh([actionlint, "-no-color", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(
    actionlint: str, sh: Callable[..., Any], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "name: broken\n"
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"  # node20 runtime: deprecated
        "      - run: echo ${{ github.event.nope.title }}\n"
        "      - run: echo ${{ steps.missing.outputs.x }}\n"
    )
    result = sh([actionlint, "-no-color", str(broken)], cwd=tmp_path)
    assert result.returncode != 0
    assert "deprecated" in result.stdout
    assert "missing" in result.stdout


@pytest.mark.parametrize("name", ["ci.yml", "images.yml", "deploy.yml"])
def test_least_privilege_and_pinned_majors(name: str) -> None:
    workflow = load(name)
    permissions = workflow.get("permissions")
    assert permissions is not None, f"{name}: no top-level permissions"
    assert "write" not in str(permissions), f"{name}: writes must be granted per job"
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", uses), f"{name}/{job_name}: {uses}"
        if "runs-on" in job:
            assert "timeout-minutes" in job, f"{name}/{job_name}: no timeout"


def test_ci_runs_every_check_with_real_services() -> None:
    ci = load("ci.yml")
    assert set(ci["on"]) >= {"pull_request", "workflow_call"}
    text = steps_text(ci)
    for needle in (
        "make lint",
        "make typecheck",
        "make proto-check",
        "pytest --ignore=tests/ops",
        "pytest tests/ops",
        "npm run build",
    ):
        assert needle in text, f"ci.yml does not run {needle!r}"
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"make ([a-z-]+)", text):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no target {target}"
    for tool in ("ruff check", "ruff format --check", "mypy", "lint", "format -d", "breaking"):
        assert tool in makefile + (ROOT / "scripts/buf_breaking.sh").read_text(), tool
    services = ci["jobs"]["test"]["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "concurrency" in ci


def test_images_builds_every_dockerfile_with_cache_sbom_provenance() -> None:
    images = load("images.yml")
    job = images["jobs"]["build"]
    matrix = {entry["image"]: entry["dockerfile"] for entry in job["strategy"]["matrix"]["include"]}
    expected = {f"chatmesh-{p.parent.name}": p.relative_to(ROOT).as_posix() for p in DOCKERFILES}
    assert matrix == expected
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    build = next(
        s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action")
    )
    settings = build["with"]
    assert settings["push"] == "${{ inputs.push }}"
    assert "type=gha" in settings["cache-from"]
    assert "type=gha" in settings["cache-to"]
    assert settings["sbom"] is True
    assert "mode=max" in settings["provenance"]
    assert settings["target"] == "runtime"
    meta = next(
        s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/metadata-action")
    )
    assert "type=sha,format=long,prefix=sha-" in meta["with"]["tags"]


def test_deploy_flow_staging_production_rollback() -> None:
    deploy = load("deploy.yml")
    triggers = deploy["on"]
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in triggers
    jobs = deploy["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["images"]["uses"] == "./.github/workflows/images.yml"
    assert jobs["images"]["needs"] == "ci"
    job = jobs["deploy"]
    assert job["needs"] == "images"
    environment = str(job["environment"]["name"])
    assert "'production'" in environment
    assert "'staging'" in environment
    assert "refs/tags/v" in environment
    assert job["concurrency"]["cancel-in-progress"] is False
    text = steps_text(deploy)
    assert "k8s/release.sh" in text
    assert "k8s/deploy.sh" in text
    assert "k8s/overlays/staging" in text
    assert "k8s/overlays/prod" in text


def test_deploy_script_applies_waits_and_rolls_back(sh: Callable[..., Any]) -> None:
    script = ROOT / "k8s/deploy.sh"
    assert sh(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for needle in (
        "kubectl apply -k",
        "rollout status",
        '--timeout="$timeout"',
        "rollout undo",
        "--to-revision",
        "wait --for=condition=complete",
        "trap 'rollback' ERR",
    ):
        assert needle in text, f"deploy.sh lacks {needle!r}"


def test_release_script_rejects_bad_input(
    sh: Callable[..., Any], kubectl: str, tmp_path: Path
) -> None:
    script = str(ROOT / "k8s/release.sh")
    assert sh(["bash", "-n", script]).returncode == 0
    usage = sh([script])
    assert usage.returncode == 2
    assert "usage" in usage.stderr
    digests = tmp_path / "digests"
    digests.mkdir()
    (digests / "chatmesh-auth").write_text("sha256:not-a-digest\n")
    bad = sh(
        [
            script,
            str(tmp_path / "out"),
            str(ROOT / "k8s/overlays/prod"),
            "ghcr.io/x",
            "sha-1",
            str(digests),
        ]
    )
    assert bad.returncode != 0
    assert "does not hold a sha256 digest" in bad.stderr
