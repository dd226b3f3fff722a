"""The real Prometheus as the sandbox runs it: config, rules, start, stop, no orphan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from autoscaler.sandbox.prometheus import (
    JOB_PODS,
    PrometheusError,
    PrometheusServer,
    default_rule_files,
    rule_groups_from,
)

REPO_RULES = list((Path(__file__).resolve().parents[2] / "config").glob("rules/*.yaml"))
RULE = {"groups": [{"name": "t", "interval": "1s", "rules": [{"record": "sandbox:test:one", "expr": "vector(1)"}]}]}


def test_config_scrapes_every_second_with_valid_timeout(tmp_path: Path) -> None:
    """Scrape interval 1 s with a timeout not above it; three file-SD jobs; honor_labels as the operator."""
    prom = PrometheusServer(workdir=tmp_path, scrape_interval_s=1.0, rule_files=[])
    cfg = prom.config()
    assert cfg["global"]["scrape_interval"] == "1s" and cfg["global"]["scrape_timeout"] == "1s"
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["pods"]["honor_labels"] is False and jobs["dcgm-exporter"]["honor_labels"] is False
    assert jobs["kubelet"]["honor_labels"] is True and jobs["kubelet"]["metrics_path"] == "/metrics/cadvisor"
    assert PrometheusServer(workdir=tmp_path, scrape_interval_s=0.5, rule_files=[]).config()["global"][
        "scrape_interval"] == "500ms"


def test_targets_written_atomically(tmp_path: Path) -> None:
    """Targets are file-SD JSON groups with their labels; removal rewrites the file."""
    prom = PrometheusServer(workdir=tmp_path, rule_files=[])
    prom.write_config()
    prom.set_target(JOB_PODS, "127.0.0.1:1234", {"namespace": "ns", "pod": "p", "container": "c"})
    groups = yaml.safe_load((tmp_path / "targets" / "pods.json").read_text())
    assert groups == [{"targets": ["127.0.0.1:1234"], "labels": {"namespace": "ns", "pod": "p", "container": "c"}}]
    prom.remove_target(JOB_PODS, "127.0.0.1:1234")
    assert yaml.safe_load((tmp_path / "targets" / "pods.json").read_text()) == []


def test_rule_files_from_config_and_prometheusrule(tmp_path: Path) -> None:
    """config/*.rules.yaml and config/rules/*.yaml are found; a PrometheusRule object yields its spec.groups."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "a.rules.yaml").write_text("groups: []\n")
    (tmp_path / "rules" / "b.yaml").write_text("groups: []\n")
    (tmp_path / "policy.yaml").write_text("x: 1\n")
    found = [p.name for p in default_rule_files(tmp_path)]
    assert found[:2] == ["a.rules.yaml", "b.yaml"] and "policy.yaml" not in found
    cr = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "spec": RULE}
    assert rule_groups_from(cr, "x") == RULE["groups"]
    assert rule_groups_from(RULE, "x") == RULE["groups"]
    with pytest.raises(PrometheusError, match="groups"):
        rule_groups_from({"groups": "nope"}, "x")


async def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    """Without the binary, start() fails with the set-up command to run."""
    prom = PrometheusServer(workdir=tmp_path, binary=str(tmp_path / "no-prometheus"), rule_files=[])
    with pytest.raises(PrometheusError, match=r"scripts/setup.sh|apt-get install prometheus"):
        await prom.start()


@pytest.mark.prometheus
async def test_starts_loads_rules_and_stops_without_orphan(tmp_path: Path) -> None:
    """Prometheus starts on a free port with the repo's rules and a runtime rule; stop() leaves no process."""
    extra = tmp_path / "extra.rules.yaml"
    extra.write_text(yaml.safe_dump(RULE))
    prom = PrometheusServer(rule_files=[*default_rule_files(), extra])
    await prom.start()
    try:
        assert prom.proc is not None
        pid = prom.proc.pid
        assert prom.port > 0 and prom.url.startswith("http://127.0.0.1:")
        await prom.set_rule_groups("runtime", [{"name": "r", "rules": [{"record": "sandbox:test:two",
                                                                         "expr": "vector(2)"}]}])
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(f"{prom.url}/api/v1/rules") as r:
            names = {g["name"] for g in (await r.json())["data"]["groups"]}
        assert {"t", "r"} <= names
        if REPO_RULES:
            assert len(names) > 2  # the repository's own rule groups were loaded too
        workdir = prom.workdir
    finally:
        await prom.stop()
    assert prom.proc is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not workdir.exists()  # the temporary TSDB is gone


@pytest.mark.prometheus
async def test_bad_rules_fail_with_the_log(tmp_path: Path) -> None:
    """An invalid rule file stops start-up with Prometheus's own message."""
    bad = tmp_path / "bad.rules.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "a", "expr": "rate("}]}]}))
    prom = PrometheusServer(workdir=tmp_path / "w", rule_files=[bad])
    with pytest.raises(PrometheusError, match="exited"):
        await prom.start()
    await prom.stop()
