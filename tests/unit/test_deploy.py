"""Operations artifacts: dashboard and alert queries name only exported metrics; unit, image.

The metric names come from the code (``daemon.metrics``), not from a list kept here, so
renaming a metric without updating the dashboard or the alert rules fails this module.
The rules' behaviour is tested by promtool (``deploy/prometheus/alerts.test.yml``) and the
unit's hardening by ``systemd-analyze security``, both in ``.ci/ops-checks``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from daemon.metrics import Metrics
from daemon.metrics.collectors import StreamLengthCollector
from daemon.metrics.groups import ConsumerGroupCollector, GroupStats, StreamGroups
from daemon.metrics.process import register_process_metrics
from daemon.runtime.leased import wrap
from daemon.server.stats import HttpMetrics
from daemon.sink.durability import ReplicationWatch

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "notification-drainer.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
UNIT = ROOT / "deploy" / "systemd" / "notification-drainer.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OPS_README = ROOT / "deploy" / "README-ops.md"

# Series that Prometheus itself makes (not the daemon) and that rules may use.
PROMETHEUS_SERIES = {"up"}
# process_* series come from the daemon's registry (daemon/metrics/process.py).
# Functions and aggregations the queries may call; anything else followed by "(" is an error,
# so a misspelt function is not silently taken for something else.
PROMQL_CALLS = {
    "abs", "absent", "avg", "avg_over_time", "ceil", "changes", "clamp_min", "count",
    "delta", "deriv", "floor", "histogram_quantile", "increase", "irate", "label_replace",
    "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile",
    "rate", "resets", "round", "scalar", "sort", "sum", "time", "topk", "vector",
}  # fmt: skip
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
EXPECTED_ALERTS = {
    "DrainerDown",
    "DrainerNotReady",
    "DocPlannerExpiryRisk",
    "DocPlannerQueueGrowing",
    "MyInvoisWatermarkStale",
    "DeadLettersAppearing",
    "SpoolFilling",
    "SpoolNotDraining",
    "UpstreamRateLimited",
    "UpstreamAuthFailing",
    "RedisWritesNotDurable",
    "RedisRefusingPublish",
    "ConsumerGroupFallingBehind",
    "UnreadEntriesTrimmed",
    "RedisDown",
    "LeaseNotHeld",
    "LeaseHeldTwice",
    "DocPlannerPushRejected",
    "DrainerRestarting",
    "DocPlannerNotFound",
    "MyInvoisRequestRefused",
    "DocPlannerReleaseForbidden",
    "SpoolRecordSetAside",
    "RedisMasterWithoutReplicas",
    "MyInvoisClientBudgetTooSmall",
}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exports."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not its functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if name.lower() in PROMQL_KEYWORDS:  # `a and (b)`: an operator, not a function
            continue
        if call:
            assert name in PROMQL_CALLS, f"unknown PromQL function {name!r} in {expr!r}"
        else:
            names.add(name)
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def load_dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as f:
        dashboard: dict[str, Any] = json.load(f)
    return dashboard


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


def variable_metric_names(dashboard: dict[str, Any]) -> set[str]:
    """Metric names of the ``label_values(metric{...}, label)`` template variables."""
    names: set[str] = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*(?:\{.*\})?\s*,\s*\w+\)", text)
        assert match, f"unexpected variable query {text!r}"
        names.add(match.group(1))
    return names


def load_rules() -> list[dict[str, Any]]:
    with ALERTS.open(encoding="utf-8") as f:
        document = yaml.safe_load(f)
    return [rule for group in document["groups"] for rule in group["rules"]]


def unit_directives() -> list[tuple[str, str, str]]:
    """(section, key, value) of every directive in the unit file, repeats kept."""
    directives = []
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.append((section, key.strip(), value.strip()))
    return directives


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            logical.append(pending)
            pending = ""
    return [(head.upper(), rest.strip()) for head, _, rest in (s.partition(" ") for s in logical)]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name the daemon exports, read from a registry like the daemon's."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, [("docplanner", "pl"), ("myinvois", "acme")])
    # Only labelled samples appear; this one has no pre-initialised series (code is open).
    metrics.upstream_requests.labels(
        source="docplanner", account="pl", endpoint="notifications", code="200"
    ).inc()
    registry.register(StreamLengthCollector(lambda: [("drainer:{docplanner}", 1)]))
    metrics.trimmed_unread.labels(stream="drainer:{docplanner}")  # wiring does this per stream
    group = GroupStats("billing", 1, 0, 0, 0.0, False)
    stream = StreamGroups("drainer:{docplanner}", (group,))
    registry.register(ConsumerGroupCollector(lambda: [stream]))
    register_process_metrics(registry)  # as wiring.build does
    HttpMetrics(registry).add_listener("main", dict)  # as the server's listener does
    wrap([], None, {}, 30.0, registry)  # leases = true: drainer_lease_held  # type: ignore[arg-type]
    registry.register(ReplicationWatch())  # the sink's, registered by wiring.build
    return exported_names(registry)


def test_metric_name_extraction_skips_functions_labels_and_keywords() -> None:
    """The extractor returns series names only, not functions, labels, strings or durations."""
    expr = (
        'histogram_quantile(0.99, sum by (le, source) (rate(drainer_a_bucket{code="401",'
        ' stream="drainer_not_a_metric"}[$__rate_interval]))) > bool 1e3'
        " and on (source, account) time() - drainer_b offset 5m or absent(up{job='x'})"
    )
    assert metric_names(expr) == {"drainer_a_bucket", "drainer_b", "up"}


def test_metric_name_extraction_rejects_unknown_functions() -> None:
    """A misspelt function is an error, not a metric name nor silently ignored."""
    with pytest.raises(AssertionError, match="histogram_quantiles"):
        metric_names("histogram_quantiles(0.5, drainer_a_bucket)")


def test_exported_names_cover_every_spec_metric(exported: set[str]) -> None:
    """The registry the other tests compare against exports every SPEC §7 metric."""
    expected = {
        "drainer_events_received_total",
        "drainer_events_published_total",
        "drainer_events_duplicate_total",
        "drainer_deadletter_total",
        "drainer_upstream_requests_total",
        "drainer_upstream_request_duration_seconds_bucket",
        "drainer_rate_limited_total",
        "drainer_redis_publish_duration_seconds_bucket",
        "drainer_spool_pending_events",
        "drainer_spool_bytes",
        "drainer_docplanner_queue_remaining",
        "drainer_docplanner_oldest_event_age_seconds",
        "drainer_myinvois_watermark_timestamp_seconds",
        "drainer_last_success_timestamp_seconds",
        "drainer_up",
        "drainer_build_info",
        "drainer_stream_length",
    }
    assert expected <= exported
    assert "drainer_no_such_metric" not in exported


def test_dashboard_queries_use_only_exported_metrics(exported: set[str]) -> None:
    """Every metric a dashboard panel or variable queries is one the daemon exports."""
    dashboard = load_dashboard()
    exprs = dashboard_exprs(dashboard)
    assert exprs
    used = set().union(*(metric_names(e) for e in exprs)) | variable_metric_names(dashboard)
    assert used - exported == set()


def test_dashboard_shows_every_operational_metric() -> None:
    """The dashboard has a panel for each metric an operator needs (SPEC §7)."""
    used = set().union(*(metric_names(e) for e in dashboard_exprs(load_dashboard())))
    assert {
        "drainer_events_received_total",
        "drainer_events_published_total",
        "drainer_events_duplicate_total",
        "drainer_docplanner_queue_remaining",
        "drainer_docplanner_oldest_event_age_seconds",
        "drainer_myinvois_watermark_timestamp_seconds",
        "drainer_upstream_requests_total",
        "drainer_rate_limited_total",
        "drainer_upstream_request_duration_seconds_bucket",
        "drainer_redis_publish_duration_seconds_bucket",
        "drainer_spool_pending_events",
        "drainer_spool_bytes",
        "drainer_deadletter_total",
        "drainer_up",
        "drainer_build_info",
        "drainer_stream_length",
        "drainer_consumer_group_lag",
        "drainer_consumer_group_pending",
        "drainer_consumer_group_oldest_pending_age_seconds",
        "drainer_redis_up",
        "drainer_http_responses_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "drainer_ready",
        "drainer_unclean_exits_total",
    } <= used


def test_every_dashboard_query_is_scoped_to_the_job_and_instance_variables() -> None:
    """Each series a panel selects carries job=~"$job", instance=~"$instance": no other process."""
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] and "allValue" not in variables[name]
    assert variables["job"]["query"]["query"] == "label_values(drainer_build_info, job)"
    for name in ("instance", "source", "account"):
        assert 'job=~"$job"' in variables[name]["query"]["query"], name
    scoped = '{job=~"$job", instance=~"$instance"'
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        exprs = [t["expr"] for t in panel["targets"]]
        assert any(scoped in e for e in exprs), panel["title"]
        for expr in exprs:
            for match in re.finditer(r"(?<![\w:$])(?:drainer|process)_\w+", expr):
                assert expr[match.end() :].startswith(scoped), (panel["title"], expr)


def test_dashboard_has_a_readiness_panel() -> None:
    """The signal DrainerNotReady pages on, drainer_ready, has a panel of its own."""
    titles = {
        p["title"]
        for p in panels(load_dashboard()["panels"])
        for t in p.get("targets", [])
        if metric_names(t["expr"]) == {"drainer_ready"}
    }
    assert titles == {"Ready (/readyz)"}


def test_dashboard_uses_a_prometheus_datasource_variable() -> None:
    """The datasource is a `datasource` variable, and every panel and query uses it."""
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("source", "account"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_panels_have_titles_and_unique_ids() -> None:
    """Every panel has a title and an id no other panel has; the schema is a current one."""
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    all_panels = list(panels(dashboard["panels"]))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    assert all(p.get("title", "").strip() for p in all_panels)


def test_alert_rules_use_only_exported_metrics(exported: set[str]) -> None:
    """Every metric an alert rule queries is exported by the daemon (or is Prometheus' up)."""
    used = set().union(*(metric_names(r["expr"]) for r in load_rules()))
    assert used - exported - PROMETHEUS_SERIES == set()
    assert used & exported


def test_alert_rules_have_severity_summary_and_runbook() -> None:
    """Each expected alert exists once, with a severity and summary and runbook texts."""
    rules = load_rules()
    assert sorted(r["alert"] for r in rules) == sorted(EXPECTED_ALERTS)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["runbook"].strip(), rule["alert"]


def test_every_alert_links_to_its_runbook_section() -> None:
    """Each alert's runbook_url is deploy/README-ops.md#<its name>, a heading that exists."""
    text = OPS_README.read_text(encoding="utf-8")
    anchors = {line.lstrip("#").strip().lower() for line in text.splitlines() if line[:3] == "###"}
    for rule in load_rules():
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "deploy/README-ops.md", rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def test_ops_readme_has_a_runbook_section_per_alert() -> None:
    """deploy/README-ops.md has a `### <alert>` section for every alert, so a page leads to it."""
    text = OPS_README.read_text(encoding="utf-8")
    assert {a for a in EXPECTED_ALERTS if f"\n### {a}\n" not in text} == set()


def test_unit_is_notify_with_watchdog_credentials_and_state_dir() -> None:
    """The unit is Type=notify with a watchdog, LoadCredential secrets and a StateDirectory."""
    service = {}
    repeated: dict[str, list[str]] = {}
    for section, key, value in unit_directives():
        if section == "Service":
            service[key] = value
            repeated.setdefault(key, []).append(value)
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"]
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"] == (
        "/opt/notification-drainer/venv/bin/drainer run"
        " --config /etc/notification-drainer/drainer.toml"
    )
    assert service["StateDirectory"] == "notification-drainer"
    assert service["DynamicUser"] == "yes"
    assert all(re.fullmatch(r"[\w.-]+:/\S+", c) for c in repeated["LoadCredential"])
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert service["ProtectSystem"] == "strict"


def test_dockerfile_has_required_instructions() -> None:
    """The image: python:3.11-slim, non-root, volume, port, healthcheck, exec-form entrypoint."""
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, args in instructions:
        by_name.setdefault(name, []).append(args)
    assert all(f.split()[0] == "python:3.11-slim" for f in by_name["FROM"])
    assert any(re.search(r"\bpip install\b.* \.$", r) for r in by_name["RUN"])
    user = by_name["USER"][-1].split(":")[0]
    assert user not in {"root", "0"}
    assert by_name["VOLUME"] == ['["/var/lib/notification-drainer"]']
    assert by_name["EXPOSE"] == ["9464"]
    assert "http://127.0.0.1:9464/healthz" in by_name["HEALTHCHECK"][-1]
    assert json.loads(by_name["ENTRYPOINT"][-1]) == ["drainer"]
    assert json.loads(by_name["CMD"][-1]) == [
        "run",
        "--config",
        "/etc/notification-drainer/drainer.toml",
    ]
    assert by_name["STOPSIGNAL"] == ["SIGTERM"]
    # The last FROM is the runtime stage: USER must come after it.
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    assert any(name == "USER" for name, _ in instructions[last_from:])


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    """The build context excludes everything but what `pip install .` reads."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!daemon/"} <= set(lines)
