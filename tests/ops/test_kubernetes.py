"""k8s/: every kustomization renders, validates strictly against the Kubernetes 1.30
schemas, passes checkov, and has the properties reviewers look for.

Renders (see conftest): `base`, each overlay, and `release:<overlay>` = what
deploy.yml applies (k8s/release.sh pins the images). Each structural check is a
function returning problems, and each is shown catching a broken sample.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

if TYPE_CHECKING:
    from tests.ops.conftest import Render

Doc = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
SERVICE_SRC = ROOT / "services"
KUBERNETES_VERSION = "1.30.0"


# ---------------------------------------------------------------- structural checks


def label(doc: Doc, key: str) -> str | None:
    value = doc["metadata"].get("labels", {}).get(key)
    return None if value is None else str(value)


def pod_labels(doc: Doc) -> dict[str, str]:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {}))
    return dict(doc["spec"]["template"]["metadata"].get("labels", {}))


def where(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def container_hardening_problems(at: str, container: Doc, writable_ok: bool) -> list[str]:
    problems = []
    sc = container.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{at}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append(f"{at}: privileged")
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []):
        problems.append(f"{at}: capabilities do not drop ALL")
    if caps.get("add"):
        problems.append(f"{at}: adds capabilities {caps['add']}")
    if sc.get("readOnlyRootFilesystem") is not True and not writable_ok:
        problems.append(f"{at}: root filesystem is writable")
    resources = container.get("resources", {})
    for key in ("cpu", "memory"):
        if key not in resources.get("requests", {}):
            problems.append(f"{at}: no {key} request")
    if "memory" not in resources.get("limits", {}):
        problems.append(f"{at}: no memory limit")
    image = str(container["image"])
    last = image.rsplit("/", 1)[-1]
    pinned = "@sha256:" in image or (":" in last and not last.endswith(":latest"))
    if not pinned and not image.startswith("chatmesh-"):
        problems.append(f"{at}: image {image} is not pinned to a version")
    return problems


def hardening_problems(render: Render, *, dev: bool = False) -> list[str]:
    """Restricted Pod Security Standard plus resources and pinned images, for every
    workload. In dev, Deployments of chatmesh-* images may have a writable root
    filesystem (Tilt's live_update syncs files into them); nothing else may."""
    problems = []
    for doc in render.workloads():
        spec = render.pod_spec(doc)
        assert spec is not None
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{where(doc)}: pod runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where(doc)}: pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where(doc)}: service account token is mounted")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                problems.append(f"{where(doc)}: {host}")
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{where(doc)}: hostPath volume {volume['name']}")
        for container in render.containers(doc):
            writable_ok = (
                dev
                and doc["kind"] == "Deployment"
                and str(container["image"]).startswith("chatmesh-")
            )
            at = f"{where(doc)} container {container['name']}"
            problems += container_hardening_problems(at, container, writable_ok)
    return problems


def env_of(render: Render, container: Doc) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps and literal values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            configmap = render.get("ConfigMap", source["configMapRef"]["name"])
            env.update({k: str(v) for k, v in configmap.get("data", {}).items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def budget(probe: Doc) -> int:
    """Seconds of consecutive failures before a probe acts (Kubernetes defaults)."""
    return int(probe.get("failureThreshold", 3)) * int(probe.get("periodSeconds", 10))


def prestop_seconds(container: Doc) -> float | None:
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep":
        return float(command[1])
    return None


def probe_problems(at: str, container: Doc) -> list[str]:
    problems = []
    probes = {k: container.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        if probe is None:
            problems.append(f"{at}: no {kind}")
    if problems:
        return problems
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if "grpc" in ports:
        for kind, probe in probes.items():
            grpc = probe.get("grpc") if probe else None
            if not grpc or grpc.get("port") != ports["grpc"] or not grpc.get("service"):
                problems.append(
                    f"{at}: {kind} is not a native grpc probe of the service on the grpc port"
                )
    elif "http" in ports:
        for kind, probe in probes.items():
            http = probe.get("httpGet") if probe else None
            if not http or http.get("port") not in ("http", ports["http"]):
                problems.append(f"{at}: {kind} is not an HTTP probe on the http port")
        paths = {k: (p or {}).get("httpGet", {}).get("path") for k, p in probes.items()}
        if paths["readinessProbe"] == paths["livenessProbe"]:
            problems.append(f"{at}: readiness and liveness probe the same path")
    else:
        problems.append(f"{at}: no container port named grpc or http")
    readiness, liveness = probes["readinessProbe"], probes["livenessProbe"]
    assert readiness is not None
    assert liveness is not None
    if budget(readiness) >= budget(liveness):
        problems.append(f"{at}: readiness must give up before liveness (different thresholds)")
    return problems


def worker_probe_problems(at: str, container: Doc) -> list[str]:
    """Workers (component=worker, e.g. mail-worker) serve no gRPC health service and
    no API: they expose only their metrics port, and all three probes GET /metrics
    there. That proves the process is alive, not that it makes progress (alerts do)."""
    problems = []
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if set(ports) != {"metrics"}:
        problems.append(f"{at}: a worker exposes only its metrics port, not {sorted(ports)}")
    probes = {k: container.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        if probe is None:
            problems.append(f"{at}: no {kind}")
            continue
        http = probe.get("httpGet", {})
        if http.get("path") != "/metrics" or http.get("port") not in (
            "metrics",
            ports.get("metrics"),
        ):
            problems.append(f"{at}: {kind} is not an HTTP GET of /metrics on the metrics port")
    readiness, liveness = probes["readinessProbe"], probes["livenessProbe"]
    if readiness and liveness and budget(readiness) >= budget(liveness):
        problems.append(f"{at}: readiness must give up before liveness (different thresholds)")
    return problems


def drain_problems(render: Render, doc: Doc, container: Doc) -> list[str]:
    at = where(doc)
    spec = render.pod_spec(doc)
    assert spec is not None
    env = env_of(render, container)
    drain = float(env.get("CHATMESH_DRAIN_SECONDS", "5"))
    grace = float(env.get("CHATMESH_GRACE_SECONDS", "10"))
    pre_stop = prestop_seconds(container)
    problems = []
    if pre_stop is None:
        problems.append(f"{at}: no preStop sleep")
        pre_stop = 0.0
    period = float(spec.get("terminationGracePeriodSeconds", 30))
    if period < pre_stop + drain + grace:
        problems.append(
            f"{at}: terminationGracePeriodSeconds {period:g} < preStop {pre_stop:g}"
            f" + drain {drain:g} + grace {grace:g}"
        )
    liveness = container.get("livenessProbe")
    if liveness and budget(liveness) < drain + grace:
        problems.append(f"{at}: liveness would restart a pod that is still draining")
    return problems


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def server_problems(render: Render) -> list[str]:
    """ChatMesh Deployments: probes, drain timing, spread, Service, PDB, SA, secrets.
    Servers (component=server) are probed over gRPC / HTTP and sit behind a Service;
    workers (component=worker) have their own probe rule and no Service."""
    problems = []
    deployments = [
        d
        for d in render.of_kind("Deployment")
        if label(d, "app.kubernetes.io/part-of") == "chatmesh"
        and label(d, "app.kubernetes.io/component") in ("server", "worker")
    ]
    if not any(label(d, "app.kubernetes.io/component") == "server" for d in deployments):
        problems.append(f"{render.name}: no ChatMesh server Deployments")
    for doc in deployments:
        at = where(doc)
        spec = render.pod_spec(doc)
        assert spec is not None
        name = doc["metadata"]["name"]
        worker = label(doc, "app.kubernetes.io/component") == "worker"
        main = next((c for c in spec["containers"] if c["name"] == name), None)
        if main is None:
            problems.append(f"{at}: no container named {name}")
            continue
        problems += worker_probe_problems(at, main) if worker else probe_problems(at, main)
        problems += drain_problems(render, doc, main)
        if not spec.get("topologySpreadConstraints"):
            problems.append(f"{at}: no topologySpreadConstraints")
        labels = pod_labels(doc)
        port_names = {p.get("name") for p in main.get("ports", [])}
        services = [
            s for s in render.of_kind("Service") if selects(s["spec"].get("selector", {}), labels)
        ]
        if worker and services:
            problems.append(f"{at}: a worker behind a Service ({where(services[0])})")
        if not worker and not any(
            {p.get("name") for p in s["spec"]["ports"]} & port_names & {"grpc", "http"}
            for s in services
        ):
            problems.append(f"{at}: no Service exposes its grpc/http port by name")
        if not any(
            selects(p["spec"]["selector"].get("matchLabels", {}), labels)
            for p in render.of_kind("PodDisruptionBudget")
        ):
            problems.append(f"{at}: no PodDisruptionBudget")
        account = spec.get("serviceAccountName")
        if not account or not any(
            s["metadata"]["name"] == account for s in render.of_kind("ServiceAccount")
        ):
            problems.append(f"{at}: no dedicated ServiceAccount")
        if any("secretRef" in s for s in main.get("envFrom", [])):
            problems.append(f"{at}: takes a whole Secret as environment")
    return problems


# What a mail sender reads from the Secret: the worker takes exactly mail's references.
MAIL_DELIVERY_SECRETS = (
    "CHATMESH_DATABASE_URL",
    "CHATMESH_REDIS_URL",
    "CHATMESH_SENDGRID_API_KEY",
    "CHATMESH_SES_ACCESS_KEY_ID",
    "CHATMESH_SES_SECRET_ACCESS_KEY",
    "CHATMESH_SMTP_USERNAME",
    "CHATMESH_SMTP_PASSWORD",
)


def secret_refs(container: Doc) -> dict[str, tuple[str, str]]:
    return {
        item["name"]: (ref["name"], ref["key"])
        for item in container.get("env", [])
        if (ref := item.get("valueFrom", {}).get("secretKeyRef"))
    }


def mail_queue_only(render: Render) -> bool:
    (container,) = render.containers(render.get("Deployment", "mail"))
    return env_of(render, container).get("CHATMESH_QUEUE_WORKERS", "true").lower() == "false"


def mail_delivery_problems(render: Render) -> list[str]:
    """Somebody sends queued mail: either the mail replicas (all-in-one) or, when they
    only queue (CHATMESH_QUEUE_WORKERS=false), a mail-worker Deployment running
    `worker` from the same image with the same ConfigMaps and sender secrets."""
    try:
        worker = render.get("Deployment", "mail-worker")
    except KeyError:
        if mail_queue_only(render):
            return [
                "Deployment/mail: queues only (CHATMESH_QUEUE_WORKERS=false)"
                " but no mail-worker Deployment delivers"
            ]
        return []
    at = where(worker)
    problems = []
    if mail_queue_only(render) and worker["spec"].get("replicas", 1) < 1:
        problems.append(f"{at}: scaled to 0 while mail only queues")
    (mail,) = render.containers(render.get("Deployment", "mail"))
    (container,) = render.containers(worker)
    if container.get("args") != ["worker"]:
        problems.append(f"{at}: does not run `worker` (args {container.get('args')})")
    if container["image"] != mail["image"]:
        problems.append(f"{at}: image {container['image']} is not mail's {mail['image']}")
    if container.get("envFrom") != mail.get("envFrom"):
        problems.append(f"{at}: not mail's ConfigMaps")
    ours, theirs = secret_refs(container), secret_refs(mail)
    for name in MAIL_DELIVERY_SECRETS:
        if ours.get(name) != theirs.get(name):
            problems.append(f"{at}: {name} is {ours.get(name)}, mail's is {theirs.get(name)}")
    return problems


def autoscaling_problems(render: Render) -> list[str]:
    problems = []
    for hpa in render.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        try:
            deployment = render.get(target["kind"], target["name"])
        except KeyError:
            problems.append(f"{where(hpa)}: scales missing {target['kind']}/{target['name']}")
            continue
        if "replicas" in deployment["spec"]:
            problems.append(f"{where(deployment)}: sets replicas although an HPA owns the count")
    return problems


def network_policy_problems(render: Render) -> list[str]:
    """Deny-by-default: a policy selecting every pod with no rules for both
    directions, DNS egress allowed, and every workload selected by its own policy."""
    problems = []
    policies = render.of_kind("NetworkPolicy")
    deny_all = [
        p
        for p in policies
        if p["spec"].get("podSelector") in ({}, None)
        and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", []))
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny_all:
        problems.append(f"{render.name}: no default-deny NetworkPolicy")
    dns = [
        p
        for p in policies
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
        if port.get("port") == 53
    ]
    if not dns:
        problems.append(f"{render.name}: DNS egress is not allowed")
    for doc in render.workloads():
        labels = pod_labels(doc)
        own = [
            p
            for p in policies
            if p["spec"].get("podSelector", {}).get("matchLabels")
            and selects(p["spec"]["podSelector"]["matchLabels"], labels)
        ]
        if not own:
            problems.append(f"{where(doc)}: no NetworkPolicy of its own (only the defaults)")
    return problems


def ingress_problems(render: Render) -> list[str]:
    problems = []
    ingresses = render.of_kind("Ingress")
    if not ingresses:
        problems.append(f"{render.name}: no Ingress")
    for ingress in ingresses:
        at = where(ingress)
        hosts = {r.get("host") for r in ingress["spec"].get("rules", [])}
        tls_hosts = {h for t in ingress["spec"].get("tls", []) for h in t.get("hosts", [])}
        if not hosts or not hosts <= tls_hosts:
            problems.append(f"{at}: hosts {sorted(map(str, hosts))} not all covered by TLS")
        annotations = ingress["metadata"].get("annotations", {})
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            value = annotations.get(f"nginx.ingress.kubernetes.io/{key}", "60")
            if int(value) < 3600:
                problems.append(f"{at}: {key} {value}s would cut idle WebSockets")
        for rule in ingress["spec"].get("rules", []):
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                try:
                    service = render.get("Service", backend["name"])
                except KeyError:
                    problems.append(f"{at}: backend Service {backend['name']} missing")
                    continue
                names = {p.get("name") for p in service["spec"]["ports"]}
                if backend["port"].get("name") not in names:
                    problems.append(f"{at}: backend port {backend['port']} not on the Service")
    return problems


def namespace_problems(render: Render) -> list[str]:
    problems = []
    namespaces = render.of_kind("Namespace")
    if len(namespaces) != 1:
        return [f"{render.name}: expected one Namespace, got {len(namespaces)}"]
    namespace = namespaces[0]
    name = namespace["metadata"]["name"]
    if namespace["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != (
        "restricted"
    ):
        problems.append(f"{render.name}: namespace {name} does not enforce PSS restricted")
    for doc in render.docs:
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != name:
            problems.append(f"{where(doc)}: not in namespace {name}")
    return problems


def migration_services() -> list[str]:
    """Deployable services (they have a Dockerfile) that own a schema (they ship
    Alembic migrations). test_layout checks every deployable is wired in."""
    return sorted(
        p.parent.name
        for p in SERVICE_SRC.glob("*/src/chatmesh/services/*/migrations")
        if p.is_dir() and (SERVICE_SRC / p.parent.name / "Dockerfile").is_file()
    )


def migration_problems(render: Render) -> list[str]:
    problems = []
    for service in migration_services():
        name = f"{service}-migrate"
        try:
            job = render.get("Job", name)
        except KeyError:
            problems.append(f"{render.name}: no migration Job {name}")
            continue
        (container,) = render.containers(job)
        if f"chatmesh-{service}" not in container["image"] or container.get("args") != ["migrate"]:
            problems.append(f"{where(job)}: does not run `chatmesh-{service} migrate`")
        if label(job, "app.kubernetes.io/component") != "migration":
            problems.append(
                f"{where(job)}: not labelled component=migration (deploy.sh waits on it)"
            )
    return problems


def cronjob_problems(render: Render) -> list[str]:
    """Scheduled ChatMesh commands (the mail digests): never two runs at once, a
    bounded run, a missed run skipped rather than replayed late, a command to run."""
    problems = []
    for cronjob in render.of_kind("CronJob"):
        at = where(cronjob)
        spec = cronjob["spec"]
        if spec.get("concurrencyPolicy") != "Forbid":
            problems.append(f"{at}: runs may overlap (concurrencyPolicy is not Forbid)")
        if "startingDeadlineSeconds" not in spec:
            problems.append(f"{at}: no startingDeadlineSeconds (a missed run starts late)")
        job = spec["jobTemplate"]["spec"]
        if "activeDeadlineSeconds" not in job:
            problems.append(f"{at}: a run is not time-limited (activeDeadlineSeconds)")
        for container in render.containers(cronjob):
            if "chatmesh-" in str(container["image"]) and not container.get("args"):
                problems.append(
                    f"{at}: container {container['name']} runs the server, not a command"
                )
    return problems


def test_scheduled_jobs_do_not_overlap(renders: dict[str, Render], render_name: str) -> None:
    cronjobs = {c["metadata"]["name"] for c in renders[render_name].of_kind("CronJob")}
    assert {"mail-weekly-digest", "mail-missed-messages"} <= cronjobs
    problems = cronjob_problems(renders[render_name])
    assert not problems, "\n".join(problems)


def test_weekly_digest_runs_the_mail_command(renders: dict[str, Render]) -> None:
    render = renders["release:prod"]
    (container,) = render.containers(render.get("CronJob", "mail-weekly-digest"))
    assert "/chatmesh-mail@sha256:" in container["image"]
    assert container["args"] == ["send-weekly-digests"]


def test_dev_mail_goes_to_mailpit_and_prod_to_a_provider(renders: dict[str, Render]) -> None:
    """Dev: SMTP to the Mailpit Service's SMTP port. Prod: SendGrid with its key
    referenced from the Secret. Everywhere the BFF forwards unsubscribe links to the
    mail REST API."""

    def config(render: Render, prefix: str) -> dict[str, str]:
        configmap = next(
            c for c in render.of_kind("ConfigMap") if c["metadata"]["name"].startswith(prefix)
        )
        return {k: str(v) for k, v in configmap["data"].items()}

    dev = renders["dev"]
    mail = config(dev, "mail-config")
    assert mail["CHATMESH_PROVIDER"] == "smtp"
    mailpit = dev.get("Service", mail["CHATMESH_SMTP_HOST"])
    assert int(mail["CHATMESH_SMTP_PORT"]) in {p["port"] for p in mailpit["spec"]["ports"]}
    assert config(dev, "bff-config")["CHATMESH_MAIL_HTTP_URL"] == "http://mail:8025"
    for name in ("release:prod", "release:staging"):
        render = renders[name]
        assert config(render, "mail-config")["CHATMESH_PROVIDER"] == "sendgrid"
        assert config(render, "bff-config")["CHATMESH_MAIL_HTTP_URL"] == "http://mail:8025"
        assert "CHATMESH_DEV_MAILBOX" not in config(render, "bff-config")
        (container,) = render.containers(render.get("Deployment", "mail"))
        refs = {
            item["name"]: item["valueFrom"]["secretKeyRef"]["key"]
            for item in container["env"]
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert refs["CHATMESH_SENDGRID_API_KEY"] == "sendgrid-api-key"


def test_chat_knows_the_user_service(renders: dict[str, Render], render_name: str) -> None:
    """The chat service asks the user service about blocks (CHATMESH_USER_ADDRESS)."""
    render = renders[render_name]
    (container,) = render.containers(render.get("Deployment", "chat"))
    address = env_of(render, container)["CHATMESH_USER_ADDRESS"]
    host, port = address.split(":")
    service = render.get("Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"}


# ---------------------------------------------------------------- render + validate


def test_renders_and_validates_strictly(renders: dict[str, Render], render_name: str) -> None:
    render = renders[render_name]
    assert render.docs, f"{render_name} rendered nothing"
    errors = []
    for doc in render.docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{where(doc)}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"].__setitem__("replica", 2), "'replica' was unexpected"),
        (lambda d: d["spec"].__setitem__("replicas", "two"), "is not of type 'integer'"),
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_strict_validation_catches_a_broken_deployment(
    renders: dict[str, Render], mutate: Callable[[Doc], None], expected: str
) -> None:
    broken = copy.deepcopy(renders["base"].get("Deployment", "auth"))
    mutate(broken)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    assert expected in caught.value.message


def test_kustomize_rejects_a_broken_overlay(kubectl: str, k8s_copy: Path, sh: Any) -> None:
    """`kubectl kustomize` itself fails on a patch aimed at a missing object."""
    broken = k8s_copy.parent / "broken-overlay"
    broken.mkdir(exist_ok=True)
    (broken / "kustomization.yaml").write_text(
        "resources: [../k8s/base]\n"
        "patches:\n"
        "  - target: {kind: Deployment, name: authh}\n"
        '    patch: \'[{"op": "replace", "path": "/spec/replicas", "value": 1}]\'\n'
        "  - path: missing.yaml\n"
    )
    result = sh([kubectl, "kustomize", str(broken)])
    assert result.returncode != 0


# ---------------------------------------------------------------- checkov

CHECKOV_TARGETS = ("dev", "release:")  # what gets applied: the dev overlay, each release


@dataclasses.dataclass(frozen=True)
class CheckovRun:
    scanned: dict[str, int]  # file name -> checks passed
    failed: dict[str, list[str]]  # file name -> "CKV_x resource" failures
    skipped: list[tuple[str, str, str]]  # (check id, resource, reason)
    output: str


@pytest.fixture(scope="session")
def checkov_run(
    renders: dict[str, Render], checkov: list[str], tmp_path_factory: pytest.TempPathFactory
) -> CheckovRun:
    """One checkov run (a few seconds) over the dev overlay, every release render, and
    a broken sample (a release with a privileged container). No run-wide skips: each
    skip is a `checkov.io/skipN: CKV_x=<reason>` annotation on the resource it excuses."""
    paths = [r.path for name, r in renders.items() if name.startswith(CHECKOV_TARGETS)]
    release = renders[next(n for n in sorted(renders) if n.startswith("release:"))]
    broken_docs = copy.deepcopy(release.docs)
    for doc in broken_docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    broken = tmp_path_factory.mktemp("checkov") / "broken-sample.yaml"
    broken.write_text(yaml.safe_dump_all(broken_docs))
    args = [*checkov, "--framework", "kubernetes", "--skip-download", "-o", "json"]
    for path in [*paths, broken]:
        args += ["-f", str(path)]
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not produce a JSON report:\n{result.stdout}\n{result.stderr}")
    checks = report["results"]
    scanned: dict[str, int] = {}
    for check in checks["passed_checks"]:
        name = Path(check["file_path"]).name
        scanned[name] = scanned.get(name, 0) + 1
    failed: dict[str, list[str]] = {}
    for check in checks["failed_checks"]:
        failed.setdefault(Path(check["file_path"]).name, []).append(
            f"{check['check_id']} {check['resource']}: {check['check_name']}"
        )
    skipped = [
        (c["check_id"], c["resource"], str(c["check_result"].get("suppress_comment", "")))
        for c in checks["skipped_checks"]
    ]
    assert not checks["parsing_errors"], checks["parsing_errors"]
    return CheckovRun(scanned, failed, skipped, result.stdout[-4000:])


def test_checkov_passes(renders: dict[str, Render], checkov_run: CheckovRun) -> None:
    targets = [r for name, r in renders.items() if name.startswith(CHECKOV_TARGETS)]
    assert {r.name for r in targets} >= {"dev", "release:prod", "release:staging"}
    for render in targets:
        assert checkov_run.scanned.get(render.path.name, 0) > 100, f"{render.name} was not scanned"
        assert not checkov_run.failed.get(render.path.name), "\n".join(
            [render.name, *checkov_run.failed[render.path.name]]
        )


def test_checkov_catches_a_privileged_container(checkov_run: CheckovRun) -> None:
    failures = checkov_run.failed.get("broken-sample.yaml", [])
    assert any(f.startswith("CKV_K8S_16 ") for f in failures), checkov_run.output


def test_checkov_skips_are_justified(checkov_run: CheckovRun) -> None:
    """Every skip names its check and says why (the annotation's text after `=`)."""
    assert checkov_run.skipped, "expected the documented skips"
    for check, resource, reason in checkov_run.skipped:
        assert len(reason.strip()) > 20, f"{check} on {resource} is skipped without a reason"
    allowed = {
        "CKV_K8S_35",  # settings from env by design (base services)
        "CKV_K8S_14",  # dev: Tilt replaces the chatmesh-* references
        "CKV_K8S_22",  # dev: live_update needs a writable filesystem
        "CKV_K8S_43",  # dev: local builds / dev-only third-party images have no digest
    }
    assert {check for check, _, _ in checkov_run.skipped} <= allowed


# ---------------------------------------------------------------- structure


def test_workloads_are_hardened(renders: dict[str, Render], render_name: str) -> None:
    problems = hardening_problems(renders[render_name], dev=render_name == "dev")
    assert not problems, "\n".join(problems)


def test_servers_have_probes_drain_spread_pdb(renders: dict[str, Render], render_name: str) -> None:
    problems = server_problems(renders[render_name])
    assert not problems, "\n".join(problems)


def test_someone_delivers_queued_mail(renders: dict[str, Render], render_name: str) -> None:
    problems = mail_delivery_problems(renders[render_name])
    assert not problems, "\n".join(problems)


def test_release_splits_mail_and_dev_keeps_it_all_in_one(renders: dict[str, Render]) -> None:
    """Staging / prod: the mail replicas only queue and mail-worker delivers. Dev: one
    mail replica does both, and there is no worker (or its PDB / NetworkPolicy)."""
    for name in ("base", "release:prod", "release:staging"):
        render = renders[name]
        assert mail_queue_only(render), f"{name}: mail still delivers in-process"
        worker = render.get("Deployment", "mail-worker")
        assert worker["spec"]["replicas"] >= 2
        render.get("PodDisruptionBudget", "mail-worker")
    dev = renders["dev"]
    assert not mail_queue_only(dev)
    assert not [d for d in dev.docs if d["metadata"]["name"] == "mail-worker"]


def test_mail_worker_network_policy(renders: dict[str, Render], release_name: str) -> None:
    """Only Prometheus (the monitoring namespace) reaches a worker, on its metrics
    port; it reaches PostgreSQL, Redis, the collector and the provider."""
    policy = renders[release_name].get("NetworkPolicy", "mail-worker")
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = spec["ingress"]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 9104}]
    egress = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
    assert egress == {5432, 6379, 4317, 443, 587, 465}


def test_autoscaled_deployments_leave_replicas_to_the_hpa(
    renders: dict[str, Render], render_name: str
) -> None:
    problems = autoscaling_problems(renders[render_name])
    assert not problems, "\n".join(problems)


def test_schema_owners_have_a_migration_job(renders: dict[str, Render], render_name: str) -> None:
    assert migration_services(), "expected at least the auth service's migrations"
    problems = migration_problems(renders[render_name])
    assert not problems, "\n".join(problems)


def test_overlays_live_in_one_restricted_namespace(
    renders: dict[str, Render], overlay_name: str
) -> None:
    problems = namespace_problems(renders[overlay_name])
    assert not problems, "\n".join(problems)


def test_network_policies_deny_by_default(renders: dict[str, Render], overlay_name: str) -> None:
    problems = network_policy_problems(renders[overlay_name])
    assert not problems, "\n".join(problems)


def test_release_has_tls_ingress_hpa_and_replicas(
    renders: dict[str, Render], release_name: str
) -> None:
    render = renders[release_name]
    problems = ingress_problems(render)
    scaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in render.of_kind("HorizontalPodAutoscaler")
    }
    assert "bff" in scaled, "the BFF must be autoscaled"
    for deployment in render.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if name not in scaled and deployment["spec"].get("replicas", 1) < 2:
            problems.append(f"{where(deployment)}: a single replica in {release_name}")
    for hpa in render.of_kind("HorizontalPodAutoscaler"):
        if hpa["spec"].get("minReplicas", 1) < 2:
            problems.append(f"{where(hpa)}: minReplicas below 2")
    assert not problems, "\n".join(problems)


def test_release_pins_every_app_image_to_the_registry(
    renders: dict[str, Render], release_name: str
) -> None:
    render = renders[release_name]
    for doc in render.workloads():
        for container in render.containers(doc):
            image = str(container["image"])
            if "chatmesh-" in image:
                assert image.startswith("ghcr.io/chatmesh-test/chatmesh-"), image
                assert "@sha256:" in image, f"{image} is not pinned by digest"


def test_release_uses_external_databases(renders: dict[str, Render], release_name: str) -> None:
    """No database in the production namespace: PostgreSQL / Redis URLs come from the
    out-of-band `chatmesh-secrets` Secret, which the release does not contain."""
    render = renders[release_name]
    assert not render.of_kind("StatefulSet")
    assert not render.of_kind("Secret")
    refs = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for doc in render.workloads()
        for container in render.containers(doc)
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert refs == {"chatmesh-secrets"}


def test_dev_overlay_runs_everything_locally(renders: dict[str, Render]) -> None:
    dev = renders["dev"]
    assert {s["metadata"]["name"] for s in dev.of_kind("StatefulSet")} >= {"postgres", "redis"}
    deployments = {d["metadata"]["name"]: d for d in dev.of_kind("Deployment")}
    assert {"otel-collector", "jaeger", "mailpit"} <= set(deployments)
    for name, deployment in deployments.items():
        assert deployment["spec"].get("replicas", 1) == 1, f"{name} is not single-replica in dev"
    assert not dev.of_kind("HorizontalPodAutoscaler")
    config = next(
        c for c in dev.of_kind("ConfigMap") if c["metadata"]["name"].startswith("chatmesh-config")
    )
    endpoint = config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4317"
    dev.get("Service", "otel-collector")


def test_dev_secret_example_has_every_key_the_manifests_use(renders: dict[str, Render]) -> None:
    """Every secretKeyRef / secret volume key in any render exists in the example env
    file, so the dev overlay works from a fresh clone and docs list the prod keys."""
    example = (K8S / "overlays/dev/secrets.env.example").read_text()
    keys = {
        line.split("=", 1)[0].strip()
        for line in example.splitlines()
        if line.strip() and not line.startswith("#")
    }
    used: set[str] = set()
    for render in renders.values():
        for doc in render.workloads():
            spec = render.pod_spec(doc)
            assert spec is not None
            for container in render.containers(doc):
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        used.add(ref["key"])
            for volume in spec.get("volumes", []):
                used.update(i["key"] for i in volume.get("secret", {}).get("items", []))
    assert used, "expected secret references"
    assert used <= keys, f"missing from secrets.env.example: {sorted(used - keys)}"
    deploy_doc = (ROOT / "docs/deploy.md").read_text()
    for key in sorted(used):
        assert key in deploy_doc, f"docs/deploy.md does not document secret key {key}"


def test_dev_overlay_renders_from_a_fresh_clone_only_after_the_copy(
    kubectl: str, sh: Any, tmp_path: Path
) -> None:
    """Without secrets.env the dev overlay fails loudly (no silent empty Secret);
    the documented copy of the example fixes it."""
    copy_root = tmp_path / "k8s"
    shutil.copytree(K8S, copy_root, ignore=shutil.ignore_patterns("secrets.env"))
    failed = sh([kubectl, "kustomize", str(copy_root / "overlays/dev")])
    assert failed.returncode != 0
    assert "secrets.env" in failed.stderr
    shutil.copyfile(
        copy_root / "overlays/dev/secrets.env.example", copy_root / "overlays/dev/secrets.env"
    )
    assert sh([kubectl, "kustomize", str(copy_root / "overlays/dev")]).returncode == 0


# ---------------------------------------------------------------- the checks catch defects


def _first(render: Render, kind: str, name: str) -> Doc:
    return render.get(kind, name)


def _spec(render: Render, kind: str, name: str) -> Doc:
    spec = render.pod_spec(render.get(kind, name))
    assert spec is not None
    return spec


def _container(render: Render, name: str) -> Doc:
    spec = render.pod_spec(render.get("Deployment", name))
    assert spec is not None
    container: Doc = spec["containers"][0]
    return container


BROKEN_SAMPLES: dict[str, tuple[Callable[[Render], None], Callable[[Render], list[str]], str]] = {
    "auth without readiness probe": (
        lambda r: _container(r, "auth").pop("readinessProbe"),
        server_problems,
        "no readinessProbe",
    ),
    "auth probing the metrics port": (
        lambda r: _container(r, "auth")["livenessProbe"]["grpc"].__setitem__("port", 9101),
        server_problems,
        "livenessProbe is not a native grpc probe",
    ),
    "bff probing readiness on /healthz": (
        lambda r: _container(r, "bff")["readinessProbe"]["httpGet"].__setitem__("path", "/healthz"),
        server_problems,
        "same path",
    ),
    "grace period shorter than the drain": (
        lambda r: _spec(r, "Deployment", "auth").__setitem__("terminationGracePeriodSeconds", 10),
        server_problems,
        "terminationGracePeriodSeconds 10 <",
    ),
    "liveness that kills draining pods": (
        lambda r: _container(r, "auth")["livenessProbe"].__setitem__("failureThreshold", 1),
        server_problems,
        "liveness would restart",
    ),
    "no topology spread": (
        lambda r: _spec(r, "Deployment", "bff").pop("topologySpreadConstraints"),
        server_problems,
        "no topologySpreadConstraints",
    ),
    "writable root filesystem": (
        lambda r: _container(r, "bff")["securityContext"].__setitem__(
            "readOnlyRootFilesystem", False
        ),
        hardening_problems,
        "root filesystem is writable",
    ),
    "pod may run as root": (
        lambda r: _spec(r, "Deployment", "auth")["securityContext"].pop("runAsNonRoot"),
        hardening_problems,
        "runAsNonRoot is not true",
    ),
    "no memory limit": (
        lambda r: _container(r, "auth")["resources"]["limits"].pop("memory"),
        hardening_problems,
        "no memory limit",
    ),
    "replicas fighting the HPA": (
        lambda r: _first(r, "Deployment", "bff")["spec"].__setitem__("replicas", 3),
        autoscaling_problems,
        "sets replicas although an HPA owns the count",
    ),
    "default deny removed": (
        lambda r: r.docs.remove(_first(r, "NetworkPolicy", "default-deny-all")),
        network_policy_problems,
        "no default-deny NetworkPolicy",
    ),
    "ingress without TLS": (
        lambda r: _first(r, "Ingress", "chatmesh")["spec"].pop("tls"),
        ingress_problems,
        "not all covered by TLS",
    ),
    "ingress cutting WebSockets after 60 s": (
        lambda r: _first(r, "Ingress", "chatmesh")["metadata"]["annotations"].pop(
            "nginx.ingress.kubernetes.io/proxy-read-timeout"
        ),
        ingress_problems,
        "would cut idle WebSockets",
    ),
    "migration job dropped": (
        lambda r: r.docs.remove(_first(r, "Job", "auth-migrate")),
        migration_problems,
        "no migration Job auth-migrate",
    ),
    "mail migration job dropped": (
        lambda r: r.docs.remove(_first(r, "Job", "mail-migrate")),
        migration_problems,
        "no migration Job mail-migrate",
    ),
    "overlapping digest runs": (
        lambda r: _first(r, "CronJob", "mail-weekly-digest")["spec"].__setitem__(
            "concurrencyPolicy", "Allow"
        ),
        cronjob_problems,
        "runs may overlap",
    ),
    "digest CronJob starting the server": (
        lambda r: _spec(r, "CronJob", "mail-missed-messages")["containers"][0].pop("args"),
        cronjob_problems,
        "runs the server, not a command",
    ),
    "mail probing its REST port": (
        lambda r: _container(r, "mail")["readinessProbe"]["grpc"].__setitem__("port", 8025),
        server_problems,
        "readinessProbe is not a native grpc probe",
    ),
    "mail worker without liveness probe": (
        lambda r: _container(r, "mail-worker").pop("livenessProbe"),
        server_problems,
        "Deployment/mail-worker: no livenessProbe",
    ),
    "mail worker probing another path": (
        lambda r: _container(r, "mail-worker")["readinessProbe"]["httpGet"].__setitem__(
            "path", "/healthz"
        ),
        server_problems,
        "readinessProbe is not an HTTP GET of /metrics",
    ),
    "mail worker behind a Service": (
        lambda r: r.docs.append(
            {
                "kind": "Service",
                "metadata": {"name": "mail-worker"},
                "spec": {
                    "selector": {"app.kubernetes.io/name": "mail-worker"},
                    "ports": [{"name": "metrics", "port": 9104}],
                },
            }
        ),
        server_problems,
        "a worker behind a Service",
    ),
    "mail worker without its PDB": (
        lambda r: r.docs.remove(_first(r, "PodDisruptionBudget", "mail-worker")),
        server_problems,
        "Deployment/mail-worker: no PodDisruptionBudget",
    ),
    "mail worker without a preStop sleep": (
        lambda r: _container(r, "mail-worker").pop("lifecycle"),
        server_problems,
        "Deployment/mail-worker: no preStop sleep",
    ),
    "gRPC server relabelled as a worker to dodge grpc probes": (
        lambda r: _first(r, "Deployment", "auth")["metadata"]["labels"].__setitem__(
            "app.kubernetes.io/component", "worker"
        ),
        server_problems,
        "Deployment/auth: a worker exposes only its metrics port",
    ),
    "mail worker without its NetworkPolicy": (
        lambda r: r.docs.remove(_first(r, "NetworkPolicy", "mail-worker")),
        network_policy_problems,
        "Deployment/mail-worker: no NetworkPolicy of its own",
    ),
    "mail queueing only with nobody delivering": (
        lambda r: r.docs.remove(_first(r, "Deployment", "mail-worker")),
        mail_delivery_problems,
        "no mail-worker Deployment delivers",
    ),
    "mail worker scaled to 0": (
        lambda r: _first(r, "Deployment", "mail-worker")["spec"].__setitem__("replicas", 0),
        mail_delivery_problems,
        "scaled to 0 while mail only queues",
    ),
    "mail worker running the API server": (
        lambda r: _container(r, "mail-worker").pop("args"),
        mail_delivery_problems,
        "does not run `worker`",
    ),
    "mail worker without the provider key": (
        lambda r: _container(r, "mail-worker")["env"].remove(
            next(
                e
                for e in _container(r, "mail-worker")["env"]
                if e["name"] == "CHATMESH_SENDGRID_API_KEY"
            )
        ),
        mail_delivery_problems,
        "CHATMESH_SENDGRID_API_KEY is None",
    ),
    "digests without their own NetworkPolicy": (
        lambda r: r.docs.remove(_first(r, "NetworkPolicy", "mail-digests")),
        network_policy_problems,
        "CronJob/mail-weekly-digest: no NetworkPolicy of its own",
    ),
}


@pytest.mark.parametrize("sample", sorted(BROKEN_SAMPLES))
def test_structural_checks_catch_broken_samples(renders: dict[str, Render], sample: str) -> None:
    mutate, check, expected = BROKEN_SAMPLES[sample]
    good = renders["release:prod"]
    assert not check(good)
    broken = dataclasses.replace(good, docs=copy.deepcopy(good.docs))
    mutate(broken)
    problems = check(broken)
    assert any(expected in p for p in problems), problems
