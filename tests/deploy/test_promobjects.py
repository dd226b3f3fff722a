"""Per-lease PodMonitor and PrometheusRule: made by the controller, follow the leases, owned, written on change."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from recording import wait_for

from autoscaler.config import parse_policy
from autoscaler.controller import Controller, Settings
from autoscaler.kube.api import KubeApi
from autoscaler.kube.promobjects import (
    LEASE_SERIES_LABEL,
    MANAGED_BY,
    MANAGED_BY_KEY,
    PrometheusObjects,
    desired_objects,
    object_name,
)
from autoscaler.metrics.kinds.queue_time import RECORDED_QUEUE_TIME, RECORDED_REQUEST_RATE
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import DEPLOYMENTS

POLICY = """
autoscaling:
  enable: true
  metrics: {queueTime: {allowed: true, enabled: true}}
  prometheus:
    url: http://127.0.0.1:9
    timeoutSeconds: 0.2
    createObjects: %s
    podMonitorLabels: {release: kube-prom}
    ruleLabels: {role: rules}
    metricsPort: triton-metrics
  loopIntervalSeconds: 0.1
"""
LEASE = {"inference-autoscaler.io/enabled": "true"}
PM, PR = "monitoring.coreos.com/podmonitors", "monitoring.coreos.com/prometheusrules"


def objects(cluster: SandboxCluster, storage: str, ns: str = "default") -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in cluster.store.list_objects(storage, ns)}


async def test_objects_follow_leases_through_the_controller(cluster: SandboxCluster, tmp_path: Path) -> None:
    """Leases get a labelled, owned PodMonitor and PrometheusRule; they go when the lease or Deployment goes."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % "true")
    cluster.ensure_namespace("team-a")
    a = cluster.create_deployment("triton-a", replicas=1, annotations=LEASE)
    cluster.create_deployment("nim-b", namespace="team-a", replicas=1, annotations={  # NIM's port and path
        **LEASE, "inference-autoscaler.io/metrics-port": "http", "inference-autoscaler.io/metrics-path": "/v1/metrics"})
    cluster.create_deployment("plain", replicas=1)
    api = await KubeApi.connect(str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    ctl = Controller(api, Settings(policy_file=str(policy), leader_election=False, listen_port=0))

    task = asyncio.create_task(ctl.run(serve_http=False))
    try:
        await wait_for(lambda: len(objects(cluster, PM)) == 1 and len(objects(cluster, PR, "team-a")) == 1,
                       "objects for both leases")
        pm = objects(cluster, PM)[object_name("triton-a")]
        assert pm["metadata"]["labels"] == {"release": "kube-prom", MANAGED_BY_KEY: MANAGED_BY}
        assert pm["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                      "name": "triton-a", "uid": a["metadata"]["uid"],
                                                      "controller": True}]
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        assert ep["port"] == "triton-metrics" and pm["spec"]["selector"] == a["spec"]["selector"]
        assert ep["relabelings"][0]["targetLabel"] == LEASE_SERIES_LABEL and ep["path"] == "/metrics"
        (nim,) = objects(cluster, PM, "team-a")[object_name("nim-b")]["spec"]["podMetricsEndpoints"]
        assert (nim["port"], nim["path"]) == ("http", "/v1/metrics")
        pr = objects(cluster, PR)[object_name("triton-a")]
        assert pr["metadata"]["labels"] == {"role": "rules", MANAGED_BY_KEY: MANAGED_BY}
        assert [r["record"] for r in pr["spec"]["groups"][0]["rules"]] == [RECORDED_REQUEST_RATE, RECORDED_QUEUE_TIME]
        assert not objects(cluster, PM).get(object_name("plain"))

        rv = pm["metadata"]["resourceVersion"]
        writes, events = api.writes, ctl.events.posted
        await asyncio.sleep(0.5)  # several loops: nothing changed, so no object writes
        assert objects(cluster, PM)[object_name("triton-a")]["metadata"]["resourceVersion"] == rv
        # at most the status annotations (and the Events saying that this test's Prometheus is not there)
        assert ctl.prom_objects.errors == 0 and (api.writes - writes) - (ctl.events.posted - events) <= 2

        dep = cluster.registry.get(DEPLOYMENTS, "default", "triton-a")
        dep["metadata"]["annotations"] = {"inference-autoscaler.io/enabled": "false"}
        cluster.registry.update(DEPLOYMENTS, "default", "triton-a", dep)
        await wait_for(lambda: not objects(cluster, PM) and not objects(cluster, PR), "objects of a lease that opted out")

        cluster.registry.delete(DEPLOYMENTS, "team-a", "nim-b")  # the garbage collector and the controller
        await wait_for(lambda: not objects(cluster, PM, "team-a") and not objects(cluster, PR, "team-a"),
                       "objects of a deleted Deployment")
    finally:
        ctl.stop.set()
        await asyncio.wait_for(task, 15)
        await api.close()


async def test_disabled_makes_no_calls_and_relist_adopts(cluster: SandboxCluster, tmp_path: Path) -> None:
    """createObjects false: no API call at all; a new leader adopts existing objects without rewriting them."""
    dep = cluster.create_deployment("triton-a", replicas=1, annotations=LEASE)
    api = await KubeApi.connect(str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        off = parse_policy(POLICY % "false").autoscaling.prometheus
        on = parse_policy(POLICY % "true").autoscaling.prometheus
        first = PrometheusObjects(api)
        report = await first.sync([dep], off)
        assert sum(api.calls.values()) == 0 and report.created == 0
        report = await first.sync([dep], on)
        assert (report.listed, report.created) == (True, 2)
        second = PrometheusObjects(api)  # another replica became the leader
        report = await second.sync([dep], on)
        assert (report.listed, report.created, report.updated) == (True, 0, 0)
        report = await second.sync([dep], off)  # turned off while running: cleans up what it knows
        assert report.deleted == 2 and not objects(cluster, PM) and not objects(cluster, PR)
    finally:
        await api.close()


def test_rule_passes_promtool(tmp_path: Path) -> None:
    """The per-lease recording rule is valid Prometheus rule syntax (promtool check rules)."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing (scripts/setup.sh installs the prometheus package)")
    dep = {"metadata": {"name": "triton-a", "namespace": "default", "uid": "u"},
           "spec": {"selector": {"matchLabels": {"app": "a"}}}}
    objs = desired_objects([dep], parse_policy(POLICY % "true").autoscaling.prometheus)
    rule = next(o for o in objs.values() if o["kind"] == "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'inference_autoscaler_lease="triton-a"' in rule["spec"]["groups"][0]["rules"][1]["expr"]
