"""A controller's first loop (after a restart or a failover) writes every lease's status once; a lease that must
scale is written first, not behind those annotation patches. The sandbox API server's watch gives the order of the
writes; Prometheus serves backfilled queue times."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path

import pytest

from autoscaler.controller import Controller, Settings
from autoscaler.kube.api import KubeApi
from autoscaler.kube.workloads import deployments_path
from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import DEPLOYMENTS, PODS

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 4}, limits: {maximum: 10, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
  prometheus: {queueTimeRecordingRule: true, maxSampleAgeSeconds: 600}
"""
QUIET = 120  # leases at their queue-time target: a status write each, no scale
HOT = "model-060"  # in the middle of the list: its queue time is 10x the target


@pytest.mark.prometheus
async def test_the_first_loop_scales_before_it_writes_every_status(tmp_path: Path) -> None:
    end = float(math.floor(time.time() / 60) * 60)
    names = [f"model-{i:03d}" for i in range(QUIET + 1)]
    w = OpenMetricsWriter()
    for name in names:
        value = 100_000.0 if name == HOT else 10_000.0
        w.add("inference_autoscaler:queue_time_us:rate1m", {"namespace": "ml", "pod": f"{name}-5d8f7c9b4-p0000"},
              [(end - 600 + 15 * k, value) for k in range(41)])
    w.write(tmp_path / "data.om")
    backfill(tmp_path / "data.om", tmp_path / "tsdb")
    (tmp_path / "policy.yaml").write_text(POLICY)
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        await c.controllers.stop()  # the objects are written below, Ready, as in Prometheus
        c.ensure_namespace("ml")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 600))
        for name in names:
            dep = c.create_deployment(name, namespace="ml", replicas=1, kind="triton",
                                      annotations={"inference-autoscaler.io/enabled": "true"})
            dep["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
            c.store.replace(DEPLOYMENTS.storage_key, dep)
            tmpl = dep["spec"]["template"]
            pod = c.create({"apiVersion": "v1", "kind": "Pod", "spec": tmpl["spec"],
                            "metadata": {"name": f"{name}-5d8f7c9b4-p0000", "namespace": "ml",
                                         "labels": dict(tmpl["metadata"]["labels"])}})
            pod["status"] = {"phase": "Running", "startTime": stamp, "podIP": "127.0.0.1",
                             "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}
            c.store.replace(PODS.storage_key, pod)
        c.write_kubeconfig(str(tmp_path / "kubeconfig"))
        with LocalPrometheus(tmp_path / "tsdb") as prom:
            api = await KubeApi.connect(str(tmp_path / "kubeconfig"), timeout_s=30)
            ctl = Controller(api, Settings(policy_file=str(tmp_path / "policy.yaml"), prometheus_url=prom.url,
                                           leader_election=False, listen_port=0, write_concurrency=4))
            writes: list[tuple[str, int]] = []  # (deployment, spec.replicas) per watched change, in order

            async def watch(rv: str) -> None:
                async for event in api.watch(deployments_path(), resource_version=rv, timeout_s=30):
                    obj = event.get("object") or {}
                    if event.get("type") == "MODIFIED":
                        writes.append((obj["metadata"]["name"], int(obj["spec"]["replicas"])))

            try:
                for cache in (ctl.deployments, ctl.pods, ctl.configmaps):
                    await cache.relist()
                watcher = asyncio.create_task(watch(ctl.deployments.resource_version))
                report = await ctl.tick(now=end, query_at=end)
                assert report.api_writes >= QUIET + 2  # every status, the scale
                for _ in range(100):
                    if len(writes) >= QUIET + 2:
                        break
                    await asyncio.sleep(0.1)
                scaled = next(i for i, (name, replicas) in enumerate(writes) if name == HOT and replicas == 4)
                assert scaled < 8, f"the scale was write {scaled + 1} of {len(writes)}"  # one of the first batch
                assert sum(1 for name, _ in writes if name != HOT) == QUIET  # and every other lease's status
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                await ctl.prometheus.close()
                await api.close()
