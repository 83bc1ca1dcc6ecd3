"""The Prometheus configuration, recording and alerting rules in deploy/prometheus, checked with promtool.

promtool comes with Debian's `prometheus` package; `make test` installs it. These
tests fail (never skip) when it is missing.
"""

from __future__ import annotations

import re

import pytest
from deploy_support import (
    PROM_DIR,
    PROM_TESTS_DIR,
    PROMTOOL_MISSING,
    all_rules,
    load_yaml_file,
    promtool_path,
    rule_files,
    rule_test_files,
    rules_of,
    run_promtool,
)

#: The alerts the fraud monitoring center relies on; removing one must be deliberate.
REQUIRED_ALERTS = {
    "FraudstreamNoAuthorizations",
    "FraudstreamConsumerLagGrowing",
    "FraudstreamDeadLetterRateHigh",
    "FraudstreamAlertVolumeOffBudget",
    "FraudstreamModelPrecisionDropping",
    "FraudstreamModelCheckpointStale",
    "FraudstreamWorkerDown",
    "FraudstreamLatencyHigh",
}
SEVERITIES = {"critical", "warning", "info"}


def _alerts() -> list[dict]:
    return [r for r in all_rules() if "alert" in r]


def _ok(proc) -> str:
    out = f"$ {' '.join(map(str, proc.args))}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, out
    return proc.stdout + proc.stderr


def test_promtool_is_installed():
    assert promtool_path(), PROMTOOL_MISSING
    version = run_promtool("--version")
    assert version.returncode == 0 and "promtool" in (version.stdout + version.stderr)


def test_files_exist():
    assert (PROM_DIR / "prometheus.yml").is_file()
    assert [p.name for p in rule_files()] == ["alerts.yml", "recording.yml"]
    assert any(p.name == "alerts_test.yml" for p in rule_test_files())


def test_promtool_check_config():
    out = _ok(run_promtool("check", "config", PROM_DIR / "prometheus.yml"))
    assert f"SUCCESS: {len(rule_files())} rule files found" in out


def test_promtool_check_rules_and_rule_counts():
    """promtool accepts every rule file, and finds as many rules as the tests read (so none is missed)."""
    out = _ok(run_promtool("check", "rules", *rule_files()))
    counts = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", out)]
    assert counts == [len(rules_of(f)) for f in rule_files()], out


def test_promtool_check_rules_lint_clean():
    """No duplicate rules (promtool's lint)."""
    out = _ok(run_promtool("check", "rules", "--lint=all", "--lint-fatal", *rule_files()))
    assert "duplicate" not in out.lower()


def test_promtool_test_rules():
    out = _ok(run_promtool("test", "rules", *rule_test_files()))
    assert out.count("SUCCESS") == len(rule_test_files()), out
    assert "FAILED" not in out


def test_promtool_test_rules_catches_a_broken_expectation(tmp_path):
    """The unit tests are not vacuous: the same file with a wrong expectation fails."""
    src = (PROM_TESTS_DIR / "alerts_test.yml").read_text(encoding="utf-8")
    broken = src.replace("severity: critical", "severity: page", 1)
    assert broken != src
    (tmp_path / "alerts_test.yml").write_text(broken.replace("../rules/", str(PROM_DIR / "rules") + "/"), encoding="utf-8")
    proc = run_promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_scrape_config():
    cfg = load_yaml_file(PROM_DIR / "prometheus.yml")
    assert cfg["rule_files"] == ["rules/*.yml"]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    job = jobs["fraudstream"]
    assert job.get("scrape_interval", cfg["global"]["scrape_interval"]) == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "localhost:9464" in [t for sc in job["static_configs"] for t in sc["targets"]]


def test_required_alerts_exist():
    names = [r["alert"] for r in _alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    missing = REQUIRED_ALERTS - set(names)
    assert not missing, f"alerts missing from {PROM_DIR / 'rules'}: {sorted(missing)}"


def test_recording_rule_names():
    names = [r["record"] for r in all_rules() if "record" in r]
    assert len(names) == len(set(names)), "duplicate recording rules"
    for name in names:
        assert re.fullmatch(r"fraudstream:[a-z0-9_]+:[a-z0-9_]+", name), f"recording rule {name} is not fraudstream:<what>:<how>"
    for required in (
        "fraudstream:authorizations_scored:rate1m",
        "fraudstream:dead_letters:rate5m",
        "fraudstream:end_to_end_latency_seconds:p99_5m",
        "fraudstream:consumer_lag:sum",
        "fraudstream:alerts:rate5m",
        "fraudstream:compromised_cards_found_by_model:ratio1d",
        "fraudstream:detection_delay_seconds:p50_1d",
        "fraudstream:fraud_amount_prevented:ratio1d",
    ):
        assert required in names


@pytest.mark.parametrize("alert", _alerts(), ids=lambda r: r["alert"])
def test_alert_has_severity_and_annotations(alert):
    assert alert.get("labels", {}).get("severity") in SEVERITIES, f"{alert['alert']}: severity label"
    annotations = alert.get("annotations") or {}
    for key in ("summary", "description", "runbook"):
        assert (annotations.get(key) or "").strip(), f"{alert['alert']}: annotation {key} is missing"
    runbook = annotations["runbook"]
    path, _, anchor = runbook.partition("#")
    assert anchor == alert["alert"].lower(), runbook
    text = (PROM_DIR.parents[1] / path).read_text(encoding="utf-8")
    assert f"\n## {alert['alert']}\n" in text, f"{path} has no section for {alert['alert']}"


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in rule_test_files():
        doc = load_yaml_file(path)
        for case in doc["tests"]:
            for check in case.get("alert_rule_test") or []:
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in _alerts()}
    assert not names - firing, f"alerts without a test where they fire: {sorted(names - firing)}"
    assert not names - quiet, f"alerts without a test where they do not fire: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, f"tests of unknown alerts: {sorted((firing | quiet) - names)}"
