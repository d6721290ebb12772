"""Prometheus config, alert rules and their unit tests, the Grafana dashboard, the /metrics format.

promtool (Debian package prometheus, installed by infra/system-deps.sh) checks the config and the
rules and runs rules_test.yml; the rest are the conventions the end-to-end test relies on.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from schemas import metrics

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "infra" / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "lantoa-dashboard.json"
# Families that belong to other processes' dashboards (citizen engagement, issue 8: lantoa triage
# and lantoa webhooks), not to the distribution dashboard.
ELSEWHERE = {
    "lantoa_open_questions",
    "lantoa_oldest_open_question_age_seconds",
    "lantoa_webhook_events",
    "lantoa_webhook_ack_seconds",
}
METRIC = re.compile(r"\b(lantoa_[a-z0-9_]+|up)\b")


def promtool(*args: str, cwd: Path = PROM, stdin: bytes | None = None) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: install the Debian package prometheus (infra/system-deps.sh)"
    done = subprocess.run([exe, *args], cwd=cwd, input=stdin, capture_output=True, timeout=120)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{out}"
    return out


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def family_names() -> dict[str, str]:
    """Every metric family declared in schemas/metrics.py: family name -> attribute name."""
    out: dict[str, str] = {}
    for attr, value in vars(metrics).items():
        if isinstance(value, MetricWrapperBase):
            for fam in value.describe():
                out[fam.name] = attr
        elif isinstance(value, metrics.ComputedGauge):
            out[value.name] = attr
    return out


def uses(expr: str, family: str) -> bool:
    return re.search(rf"\b{re.escape(family)}(_total|_bucket|_count|_sum)?\b", expr) is not None


# -- promtool -----------------------------------------------------------------------------------


def test_promtool_checks_the_config_and_the_rules() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    out = promtool("check", "rules", "rules.yml")
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    doc = yaml.safe_load((PROM / "rules_test.yml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - fired == set(), "alerts never shown firing in rules_test.yml"
    assert names - quiet == set(), "alerts never shown staying quiet in rules_test.yml"


def test_the_config_scrapes_every_process_from_file_sd_targets() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert {
        "lantoa-streams",
        "lantoa-adapter-fanpage",
        "lantoa-adapter-zalo",
        "lantoa-adapter-loudspeaker",
        "lantoa-adapter-archive",
        "lantoa-lag-exporter",
        "lantoa-emergency-lane",
    } <= set(jobs)
    for name, job in jobs.items():
        (files,) = [c["files"] for c in job["file_sd_configs"]]
        for f in files:
            groups = json.loads((PROM / f).read_text())
            assert isinstance(groups, list), f
            for g in groups:
                assert all(re.fullmatch(r"127\.0\.0\.1:\d+", t) for t in g["targets"]), (name, g)


# -- conventions --------------------------------------------------------------------------------


def test_every_rule_says_what_it_means_and_carries_a_probe_over_the_same_metrics() -> None:
    for rule in rules():
        ann = rule["annotations"]
        assert {"summary", "description", "probe"} <= set(ann), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["alert"].startswith("Lantoa")
        in_expr, in_probe = set(METRIC.findall(rule["expr"])), set(METRIC.findall(ann["probe"]))
        assert in_expr - {"up"} <= in_probe or in_expr <= in_probe, (rule["alert"], in_expr - in_probe)
        assert not re.search(r"[<>]=?\s*-?[0-9.]+\s*$", ann["probe"].strip()), (
            f"{rule['alert']}: probe keeps a threshold"
        )


def test_bucket_bounds_are_written_as_the_client_exports_them() -> None:
    for text in [r["expr"] for r in rules()] + dashboard_exprs():
        for bound in re.findall(r'le="([^"]+)"', text):
            assert bound == "+Inf" or "." in bound, (
                f'le="{bound}" never matches: prometheus_client writes "{float(bound)}"'
            )
    bounds = {str(b) for b in metrics.EMERGENCY_LATENCY._upper_bounds} | {
        str(b) for b in metrics.DELIVERY_LATENCY._upper_bounds
    }
    for text in [r["expr"] for r in rules()]:
        for bound in re.findall(r'le="([^"]+)"', text):
            assert bound in bounds, f"no bucket {bound}"


def test_the_dashboard_has_a_panel_for_every_metric_family() -> None:
    exprs = dashboard_exprs()
    missing = sorted(f for f in family_names() if f not in ELSEWHERE and not any(uses(e, f) for e in exprs))
    assert missing == [], f"metric families without a dashboard panel: {missing}"
    assert any('up{job=~"lantoa-.*"}' in e for e in exprs)


def test_the_dashboard_is_importable_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "lantoa-distribution" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["title"] and p["description"] and p["datasource"]["uid"] == "${datasource}"
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"]
            assert "$" not in t["expr"], "expressions are queried as they are by tests/e2e/test_prometheus.py"


def test_rules_and_dashboard_share_expressions() -> None:
    exprs = {" ".join(e.split()) for e in dashboard_exprs()}
    shared = [r["alert"] for r in rules() if " ".join(r["annotations"]["probe"].split()) in exprs]
    # Every alert's condition (without its threshold) is on the dashboard, except where the
    # dashboard splits an `and` into its two panels.
    split = {"LantoaConsumerLagGrowing", "LantoaDeliveryLatencyObjectiveMissed"}
    assert {r["alert"] for r in rules()} - set(shared) == split


# -- the /metrics page --------------------------------------------------------------------------


def test_the_metrics_page_passes_promtool_check_metrics() -> None:
    """Every family declared in schemas/metrics.py, with samples, as a process serves it."""
    for attr in family_names().values():
        m = getattr(metrics, attr)
        if isinstance(m, metrics.ComputedGauge):
            m.source(
                "test",
                lambda m=m: [(("x",) * len(m.labelnames), math.inf), (("y",) * len(m.labelnames), 1.5)],
            )
            continue
        child = m.labels(*(["x"] * len(m._labelnames))) if m._labelnames else m
        if hasattr(child, "observe"):
            child.observe(0.2)
        elif hasattr(child, "inc"):
            child.inc()
        else:
            child.set(1)
    try:
        page = generate_latest(REGISTRY)
    finally:
        for attr in family_names().values():
            m = getattr(metrics, attr)
            if isinstance(m, metrics.ComputedGauge):
                m.remove("test")
    text = page.decode()
    for family in family_names():
        assert re.search(rf"^# TYPE {family}(_total)? ", text, re.M), family
    promtool("check", "metrics", stdin=page)


@pytest.mark.parametrize("bad", ["lantoa_Bad_name 1\n", "# TYPE lantoa_things counter\nlantoa_things 1\n"])
def test_promtool_check_metrics_would_catch_a_bad_name(bad: str) -> None:
    exe = shutil.which("promtool")
    assert exe
    done = subprocess.run([exe, "check", "metrics"], input=bad.encode(), capture_output=True, timeout=60)
    assert done.returncode != 0
