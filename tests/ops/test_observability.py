"""Observability (k8s/components/observability, in the dev overlay): the alert rules
pass `promtool check rules` and their unit tests (`promtool test rules`), the
Prometheus config passes `promtool check config`, the Grafana dashboard type-checks
against @grafana/schema (tsc), every metric the rules and the dashboard query is one
the code exports, and the pieces are wired to each other in the rendered overlay
(mount paths, datasource URLs, scrape annotations). Each check is shown catching a
broken sample."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.ops.conftest import Render

Doc = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "k8s/components/observability"
RULES = OBSERVABILITY / "alerts/chatmesh.rules.yml"
RULE_TESTS = OBSERVABILITY / "alerts/chatmesh.rules.test.yml"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus/prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana/dashboards/chatmesh.json"
DATASOURCES = OBSERVABILITY / "grafana/datasources.yaml"
DASHBOARD_PROVIDERS = OBSERVABILITY / "grafana/dashboards.yaml"
# Where the code defines its Prometheus metrics.
METRIC_SOURCES = [*ROOT.glob("services/*/src"), ROOT / "bff/src"]


# ---------------------------------------------------------------- promtool: rules


def test_alert_rules_pass_promtool(promtool: str, sh: Any) -> None:
    result = sh([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


RULE_SAMPLES = {
    "unbalanced PromQL": (
        ("sum by (namespace, service) (up{", "sum by (namespace, service (up{"),
        "parse error",
    ),
    "bad duration": (("for: 2m", "for: 2 minutes"), "not a valid duration"),
    "broken annotation template": (
        ('"{{ $labels.service }} is down', '"{{ $labels.service } is down'),
        "template",
    ),
}


@pytest.mark.parametrize("sample", sorted(RULE_SAMPLES))
def test_promtool_rejects_broken_rules(promtool: str, sh: Any, tmp_path: Path, sample: str) -> None:
    (old, new), expected = RULE_SAMPLES[sample]
    text = RULES.read_text()
    assert old in text, f"the sample no longer applies: {old!r}"
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(text.replace(old, new, 1))
    result = sh([promtool, "check", "rules", str(broken)])
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_alert_rule_unit_tests_pass(promtool: str, sh: Any) -> None:
    result = sh([promtool, "test", "rules", str(RULE_TESTS)], cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# A plausible regression in a rule makes its unit test fail.
RULE_REGRESSIONS = {
    "client errors counted as failures": (
        (
            'grpc_code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"',
            'grpc_code!="OK"',
        ),
        "ChatMeshGrpcHighErrorRate",
    ),
    "dead-letter threshold raised past the outage": (
        ('outcome="dead"}[30m])) > 10', 'outcome="dead"}[30m])) > 100'),
        "ChatMeshMailDeadLettersGrowing",
    ),
    "streams no longer excluded from latency": (
        ('grpc_method!~"StreamRoomEvents|WatchPresence"', 'grpc_method!=""'),
        "ChatMeshGrpcHighLatency",
    ),
    "service down on a single pod": (
        ("sum by (namespace, service) (up{", "min by (namespace, service) (up{"),
        "ChatMeshServiceDown",
    ),
}


@pytest.mark.parametrize("sample", sorted(RULE_REGRESSIONS))
def test_rule_unit_tests_catch_regressions(
    promtool: str, sh: Any, tmp_path: Path, sample: str
) -> None:
    (old, new), alert = RULE_REGRESSIONS[sample]
    text = RULES.read_text()
    assert old in text, f"the sample no longer applies: {old!r}"
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copyfile(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = sh([promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"alertname: {alert}" in result.stdout + result.stderr


def rule_list() -> list[Doc]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_is_unit_tested_firing_and_labelled() -> None:
    """Each alert has a severity and a summary, and a unit test in which it fires."""
    alerts = {rule["alert"]: rule for rule in rule_list() if "alert" in rule}
    assert {
        "ChatMeshServiceDown",
        "ChatMeshGrpcHighErrorRate",
        "ChatMeshGrpcHighLatency",
        "ChatMeshMailDeadLettersGrowing",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"].get("severity") in ("critical", "warning"), name
        assert rule["annotations"].get("summary"), name
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alerts) - fired == set(), "alerts without a firing unit test"


# ---------------------------------------------------------------- promtool: config


def checkable_config(config: Doc, rules: Path) -> Doc:
    """The config with what Debian's promtool cannot parse swapped out: it is built
    without kubernetes_sd_configs, so each becomes an (empty-target) static config;
    rule files point at the checked-in rules so their loading is checked too."""
    config = copy.deepcopy(config)
    config["rule_files"] = [str(rules)]
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:9090"]}]
    return config


def test_prometheus_config_passes_promtool(promtool: str, sh: Any, tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(checkable_config(config, RULES)))
    result = sh([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda c: c["scrape_configs"][0]["relabel_configs"][0].__setitem__("regex", "(true"),
            "missing closing )",
        ),
        (
            lambda c: c["scrape_configs"][0]["relabel_configs"][0].__setitem__("action", "kep"),
            "unknown relabel action",
        ),
        (lambda c: c["global"].__setitem__("scrape_interval", "often"), "not a valid duration"),
    ],
    ids=["bad-regex", "bad-action", "bad-interval"],
)
def test_promtool_rejects_a_broken_config(
    promtool: str, sh: Any, tmp_path: Path, mutate: Callable[[Doc], None], expected: str
) -> None:
    config = checkable_config(yaml.safe_load(PROMETHEUS_CONFIG.read_text()), RULES)
    mutate(config)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = sh([promtool, "check", "config", str(path)])
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


# ---------------------------------------------------------------- Grafana: @grafana/schema


def dashboard_problems(sh: Any, tsc: str, dashboard_json: str, workdir: Path) -> str:
    """tsc's complaints about the dashboard as a `Dashboard` from @grafana/schema. The
    JSON is inlined into a .ts file (importing the .json file widens its literal types
    and gives false errors); node_modules is linked in so the import resolves."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "node_modules").symlink_to(ROOT / "node_modules")
    (workdir / "dashboard.ts").write_text(
        "import type { Dashboard } from '@grafana/schema';\n"
        f"export const dashboard: Dashboard = {dashboard_json};\n"
    )
    (workdir / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "noEmit": True,
                    "module": "esnext",
                    "moduleResolution": "bundler",
                    "target": "es2022",
                    "skipLibCheck": True,
                    "types": [],
                },
                "files": ["dashboard.ts"],
            }
        )
    )
    result = sh([tsc, "-p", str(workdir / "tsconfig.json")], cwd=workdir, timeout=120)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_dashboard_matches_the_grafana_schema(sh: Any, tsc: str, tmp_path: Path) -> None:
    problems = dashboard_problems(sh, tsc, DASHBOARD.read_text(), tmp_path)
    assert not problems, problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"gridPos": {', '"gridPoss": {', "'\"gridPoss\"' does not exist"),
        ('"collapsed": false', '"collapsed": "no"', "not assignable to type 'boolean'"),
        ('"schemaVersion": 41,', "", "schemaVersion"),
    ],
    ids=["unknown-field", "wrong-type", "missing-required"],
)
def test_schema_check_catches_broken_dashboards(
    sh: Any, tsc: str, tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = DASHBOARD.read_text()
    assert old in text, f"the sample no longer applies: {old!r}"
    problems = dashboard_problems(sh, tsc, text.replace(old, new), tmp_path)
    assert expected in problems, problems


# ---------------------------------------------------------------- metric names


def exported_metrics() -> set[str]:
    """Series names the code exports: every prometheus_client Counter / Gauge /
    Histogram / Summary defined in the services and the BFF, with the suffixes the
    client adds, plus Prometheus' own `up`."""
    pattern = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][\w:]*)\"")
    names = {"up"}
    for source in METRIC_SOURCES:
        for path in source.rglob("*.py"):
            for kind, name in pattern.findall(path.read_text()):
                if kind == "Counter":
                    names.add(name if name.endswith("_total") else name + "_total")
                elif kind in ("Histogram", "Summary"):
                    names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
                else:
                    names.add(name)
    return names


def queried_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (every selector here carries {…} or […])."""
    return set(re.findall(r"([a-zA-Z_:][\w:]*)\s*[{\[]", expr))


def dashboard_expressions(dashboard: Doc) -> list[str]:
    exprs = [
        str(target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    exprs += [
        str(var["query"])
        for var in dashboard.get("templating", {}).get("list", [])
        if var.get("type") == "query"
    ]
    return exprs


def metric_problems(exprs: list[str], exported: set[str]) -> list[str]:
    problems = []
    for expr in exprs:
        names = queried_metrics(expr)
        if not names:
            problems.append(f"no metric selector in {expr!r}")
        problems += [f"{name} is not exported by the code ({expr})" for name in names - exported]
    return problems


def test_rules_and_dashboard_query_metrics_the_code_exports() -> None:
    exported = exported_metrics()
    assert {"grpc_server_handled_total", "mail_emails_total", "http_requests_total"} <= exported
    exprs = [str(rule["expr"]) for rule in rule_list()]
    exprs += dashboard_expressions(json.loads(DASHBOARD.read_text()))
    problems = metric_problems(exprs, exported)
    assert not problems, "\n".join(problems)


def test_metric_check_catches_an_invented_metric() -> None:
    problems = metric_problems(
        ['sum(mail_queue_depth{namespace="x"})', "sum(up)"], exported_metrics()
    )
    assert any("mail_queue_depth is not exported" in p for p in problems), problems
    assert any("no metric selector" in p for p in problems), problems


def test_dashboard_shows_what_operators_ask_for() -> None:
    """Request rate, error rate and p99 per gRPC method, WebSocket connections,
    fan-out lag and the mail queue each have a panel, on provisioned datasources."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}
    queries = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}
    wanted = {
        "Request rate per method": "grpc_server_handled_total",
        "Error rate per method": "grpc_code=~",
        "p99 latency per method": "histogram_quantile(0.99",
        "WebSocket connections": "chatmesh_presence_connections_total",
        "Fan-out lag": "chat_room_event_publish_delay_seconds_bucket",
        "Mail queue: time in queue": "mail_queue_latency_seconds_bucket",
    }
    for title, needle in wanted.items():
        assert needle in queries.get(title, ""), f"no {title!r} panel querying {needle}"
    for title in ("Request rate per method", "Error rate per method", "p99 latency per method"):
        assert "grpc_method" in queries[title], f"{title} is not per method"
    uids = {d["uid"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    used = {
        str(t["datasource"]["uid"])
        for p in dashboard["panels"]
        for t in [p, *p.get("targets", [])]
        if "datasource" in t
    }
    assert used <= uids, f"datasources not provisioned: {sorted(used - uids)}"
    assert {"prometheus", "jaeger"} <= uids


# ---------------------------------------------------------------- wiring in the dev overlay


def _mounts(render: Render, deployment: str) -> dict[str, tuple[str, Doc]]:
    """mountPath -> (subPath or "", volume) for the deployment's first container."""
    doc = render.get("Deployment", deployment)
    spec = render.pod_spec(doc)
    assert spec is not None
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {
        m["mountPath"]: (m.get("subPath", ""), volumes[m["name"]])
        for m in spec["containers"][0].get("volumeMounts", [])
    }


def _configmap_file(render: Render, path: str, mounts: dict[str, tuple[str, Doc]]) -> str | None:
    """The text a container sees at `path` through a ConfigMap mount (None: nothing)."""
    for mount_path, (sub_path, volume) in mounts.items():
        if sub_path and path == mount_path:
            key = sub_path
        elif not sub_path and path.startswith(mount_path.rstrip("/") + "/"):
            key = path[len(mount_path.rstrip("/")) + 1 :]
        else:
            continue
        if "configMap" not in volume:
            return None
        try:
            data: dict[str, str] = render.get("ConfigMap", volume["configMap"]["name"])["data"]
        except KeyError:
            return None
        return data.get(key)
    return None


def _service_port(render: Render, url: str) -> bool:
    match = re.fullmatch(r"https?://([a-z0-9-]+):(\d+)", url)
    if not match:
        return False
    try:
        service = render.get("Service", match.group(1))
    except KeyError:
        return False
    return any(p["port"] == int(match.group(2)) for p in service["spec"]["ports"])


def wiring_problems(render: Render) -> list[str]:
    """What Prometheus and Grafana read is where they read it from, and their URLs
    and ports point at real Services; every scraped pod announces its metrics port."""
    problems = []
    prometheus = render.pod_spec(render.get("Deployment", "prometheus"))
    assert prometheus is not None
    args = prometheus["containers"][0].get("args", [])
    config_path = next((a.split("=", 1)[1] for a in args if a.startswith("--config.file=")), "")
    mounts = _mounts(render, "prometheus")
    config_text = _configmap_file(render, config_path, mounts)
    if config_text is None:
        problems.append(f"prometheus: {config_path} is not mounted from a ConfigMap")
        config: Doc = {"rule_files": [], "scrape_configs": []}
    else:
        config = yaml.safe_load(config_text)
    for rule_file in config.get("rule_files", []):
        if _configmap_file(render, rule_file, mounts) != RULES.read_text():
            problems.append(f"prometheus: rule file {rule_file} is not the checked-in rules")
    for job in config["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs", []):
            token = sd.get("authorization", {}).get("credentials_file", "")
            if not any(token.startswith(m) and "projected" in v for m, (_, v) in mounts.items()):
                problems.append(f"prometheus: API token {token} is not projected into the pod")
    grafana = _mounts(render, "grafana")
    providers = yaml.safe_load(
        _configmap_file(render, "/etc/grafana/provisioning/dashboards/chatmesh.yaml", grafana)
        or "providers: []"
    )
    for provider in providers["providers"]:
        folder = provider["options"]["path"]
        if _configmap_file(render, folder + "/chatmesh.json", grafana) != DASHBOARD.read_text():
            problems.append(f"grafana: {folder} does not hold the ChatMesh dashboard")
    datasources = yaml.safe_load(
        _configmap_file(render, "/etc/grafana/provisioning/datasources/chatmesh.yaml", grafana)
        or "datasources: []"
    )
    if not datasources["datasources"]:
        problems.append("grafana: no datasources provisioned")
    for source in datasources["datasources"]:
        if not _service_port(render, source["url"]):
            problems.append(f"grafana: {source['name']} at {source['url']} is not a Service port")
    problems += scrape_problems(render)
    return problems


def scrape_problems(render: Render) -> list[str]:
    """ChatMesh servers opt in to scraping on the port their metrics really use."""
    problems = []
    for doc in render.of_kind("Deployment"):
        labels = doc["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/part-of") != "chatmesh":
            continue
        name = doc["metadata"]["name"]
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            problems.append(f"{name}: pods are not annotated for scraping")
            continue
        spec = render.pod_spec(doc)
        assert spec is not None
        container = spec["containers"][0]
        port = annotations.get("prometheus.io/port")
        ports = {str(p["containerPort"]): p.get("name") for p in container.get("ports", [])}
        if ports.get(str(port)) not in ("metrics", "http"):
            problems.append(f"{name}: prometheus.io/port {port} is not its metrics/http port")
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                configmap = render.get("ConfigMap", source["configMapRef"]["name"])
                env.update(configmap.get("data", {}))
        if "CHATMESH_METRICS_PORT" in env and env["CHATMESH_METRICS_PORT"] != port:
            problems.append(
                f"{name}: scraped on {port}, serves metrics on {env['CHATMESH_METRICS_PORT']}"
            )
    return problems


def test_observability_is_wired_in_the_dev_overlay(renders: dict[str, Render]) -> None:
    problems = wiring_problems(renders["dev"])
    assert not problems, "\n".join(problems)


def test_release_pods_are_scrapable(renders: dict[str, Render], release_name: str) -> None:
    problems = scrape_problems(renders[release_name])
    assert not problems, "\n".join(problems)


def _annotations(render: Render, name: str) -> Doc:
    annotations: Doc = render.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
    return annotations


def _prometheus_args(render: Render) -> list[str]:
    spec = render.pod_spec(render.get("Deployment", "prometheus"))
    assert spec is not None
    args: list[str] = spec["containers"][0]["args"]
    return args


def _volume(render: Render, deployment: str, volume: str) -> Doc:
    spec = render.pod_spec(render.get("Deployment", deployment))
    assert spec is not None
    found: Doc = next(v for v in spec["volumes"] if v["name"] == volume)
    return found


WIRING_SAMPLES: dict[str, tuple[Callable[[Render], None], str]] = {
    "mail scraped on auth's port": (
        lambda r: _annotations(r, "mail").__setitem__("prometheus.io/port", "9101"),
        "mail: prometheus.io/port 9101 is not its metrics/http port",
    ),
    "mail not annotated": (
        lambda r: _annotations(r, "mail").pop("prometheus.io/scrape"),
        "mail: pods are not annotated for scraping",
    ),
    "config file path typo": (
        lambda r: _prometheus_args(r).__setitem__(0, "--config.file=/etc/prometheus/prom.yml"),
        "/etc/prometheus/prom.yml is not mounted",
    ),
    "token not projected": (
        lambda r: _volume(r, "prometheus", "kube-api-access").pop("projected"),
        "is not projected into the pod",
    ),
    "dashboards ConfigMap not mounted": (
        lambda r: _volume(r, "grafana", "dashboards").__setitem__("configMap", {"name": "nope"}),
        "does not hold the ChatMesh dashboard",
    ),
}


@pytest.mark.parametrize("sample", sorted(WIRING_SAMPLES))
def test_wiring_check_catches_broken_samples(renders: dict[str, Render], sample: str) -> None:
    mutate, expected = WIRING_SAMPLES[sample]
    good = renders["dev"]
    broken = dataclasses.replace(good, docs=copy.deepcopy(good.docs))
    mutate(broken)
    problems = wiring_problems(broken)
    assert any(expected in p for p in problems), problems
