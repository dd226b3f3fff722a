"""``wake-target: auto``: a predictive lease at zero is woken to the replicas the predictive algorithm sizes its
wake value with (a request rate), from its last service time (persisted before it went to zero) and its slots;
one never measured is woken to its wake replicas, and says why. The sandbox API server and a real Prometheus,
whose wake query answers a constant 12 req/s."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler.config import PREDICTIVE_STATE_ANNOTATION, load_policy
from autoscaler.metrics.localprom import LocalPrometheus
from autoscaler.policy.predictive import replicas_needed
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import DEPLOYMENTS
from autoscaler.statestore import PredictivePersisted
from tests.controller.conftest import tick_driven
from tests.support import P

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 12}, limits: {maximum: 12, minimum: {lowerBound: 0, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 500000, minimum: 1000, maximum: 0}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 60}
  algorithm: predictive
  scaleToZero:
    wakeQuery: 'vector(12)'
    wakeTargetPerReplica: auto
"""
SERVICE_S = 0.5


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[SandboxCluster, str]]:
    """Three predictive leases at zero replicas: "measured" (2 slots stated, a service time of 0.5 s persisted),
    "flagged" (the same service time, its container passing --max-num-seqs 4) and "new" (2 slots, never
    measured)."""
    svc = PredictivePersisted(b"", time.time(), 600.0, (0.0, 0), SERVICE_S).to_annotation()
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        await c.controllers.stop()
        leases = {"measured": ({P + "slots-per-replica": "2", PREDICTIVE_STATE_ANNOTATION: svc}, {}),
                  "flagged": ({PREDICTIVE_STATE_ANNOTATION: svc}, {"args": ["--max-num-seqs", "4"]}),
                  "new": ({P + "slots-per-replica": "2"}, {})}
        for name, (ann, container) in leases.items():
            c.create_ready_deployment(name, namespace="ml", replicas=0, kind="vllm", container=container,
                                      annotations={P + "enabled": "true", P + "min-replicas": "0", **ann})
        c.write_kubeconfig(str(tmp_path / "kubeconfig"))
        (tmp_path / "tsdb").mkdir()
        with LocalPrometheus(tmp_path / "tsdb") as prom:
            yield c, prom.url


@pytest.mark.prometheus
async def test_a_predictive_lease_at_zero_is_woken_to_what_its_rate_needs(
        cluster: tuple[SandboxCluster, str], tmp_path: Path) -> None:
    c, url = cluster
    (tmp_path / "policy.yaml").write_text(POLICY)
    params = load_policy(tmp_path / "policy.yaml").autoscaling.predictive.to_params(500000.0)
    async with tick_driven(tmp_path, url) as (ctl, _):
        await ctl.tick()
        replicas = {n: c.store.get(DEPLOYMENTS.storage_key, "ml", n)["spec"]["replicas"]
                    for n in ("measured", "flagged", "new")}
        last = {n: ctl.runtime[("ml", n)].last for n in replicas}
    # 12 req/s at 0.5 s a request: 6 requests in service, 3 replicas of 2 slots at full load; a 0.5-s queue-time
    # target needs more, not all 12
    measured = replicas_needed(12.0, SERVICE_S, 2, params, 12)
    assert 3 < measured < 12 and replicas["measured"] == measured, last["measured"]
    assert replicas["flagged"] == replicas_needed(12.0, SERVICE_S, 4, params, 12) < measured, last["flagged"]
    assert replicas["new"] == 1, last["new"]
    assert all(d is not None and d["reason"] == "Wake" for d in last.values()), last
    assert "at its last service time 0.5s and 2 slots a replica" in last["measured"]["message"], last["measured"]
    assert "its service time not known yet: woken to its wake replicas" in last["new"]["message"], last["new"]


@pytest.mark.prometheus
async def test_a_new_max_num_seqs_in_the_pod_template_sizes_the_next_wake(
        cluster: tuple[SandboxCluster, str], tmp_path: Path) -> None:
    """The pod template's --max-num-seqs is read again when the Deployment's spec changes (its generation), not only
    when its annotations do: halved, the same 12 req/s wakes the lease to more replicas."""
    c, url = cluster
    (tmp_path / "policy.yaml").write_text(POLICY)
    params = load_policy(tmp_path / "policy.yaml").autoscaling.predictive.to_params(500000.0)
    async with tick_driven(tmp_path, url) as (ctl, _):
        await ctl.tick()
        assert c.store.get(DEPLOYMENTS.storage_key, "ml", "flagged")["spec"]["replicas"] == replicas_needed(
            12.0, SERVICE_S, 4, params, 12)
        dep = c.registry.get(DEPLOYMENTS, "ml", "flagged")
        dep["spec"]["template"]["spec"]["containers"][0]["args"] = ["--max-num-seqs", "2"]
        dep["spec"]["replicas"] = 0  # rolled out again at zero
        c.registry.update(DEPLOYMENTS, "ml", "flagged", dep)
        await ctl.deployments.relist()
        await ctl.tick()
        d = ctl.runtime[("ml", "flagged")].last
        assert d is not None and d["reason"] == "Wake" and "and 2 slots a replica" in d["message"], d
        assert c.store.get(DEPLOYMENTS.storage_key, "ml", "flagged")["spec"]["replicas"] == replicas_needed(
            12.0, SERVICE_S, 2, params, 12)
