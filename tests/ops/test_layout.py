"""Every deployable (a workspace member with a Dockerfile) is wired into every way of
running it: kustomize base, NetworkPolicies, image builds, Compose and Tilt.
docs/deploy.md ("Adding a service") lists the same places."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYABLES = sorted(
    p.parent for p in [*ROOT.glob("services/*/Dockerfile"), ROOT / "bff/Dockerfile"]
)


def name_of(member: Path) -> str:
    return member.name


@pytest.mark.parametrize("member", DEPLOYABLES, ids=name_of)
def test_deployable_is_wired_everywhere(member: Path) -> None:
    name = member.name
    base = yaml.safe_load((ROOT / "k8s/base/kustomization.yaml").read_text())
    assert name in base["resources"], f"k8s/base/kustomization.yaml does not list {name}"
    assert (ROOT / "k8s/base" / name / "kustomization.yaml").is_file()
    policies = yaml.safe_load(
        (ROOT / "k8s/components/network-policies/kustomization.yaml").read_text()
    )
    assert f"{name}.yaml" in policies["resources"], f"no NetworkPolicy file for {name}"
    images = yaml.safe_load((ROOT / ".github/workflows/images.yml").read_text())
    matrix = images["jobs"]["build"]["strategy"]["matrix"]["include"]
    assert {
        "image": f"chatmesh-{name}",
        "dockerfile": f"{member.relative_to(ROOT)}/Dockerfile",
    } in matrix
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert name in compose["services"], f"docker-compose.yml has no {name} service"
    tiltfile = (ROOT / "Tiltfile").read_text()
    assert f"'name': '{name}'" in tiltfile, f"the Tiltfile's PYTHON_SERVICES has no {name}"
