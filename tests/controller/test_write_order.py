"""A controller's first loop (after a restart or a failover) writes every lease's status once; a lease that must
scale is written first, not behind those annotation patches. The sandbox API server's watch gives the order of the
writes; Prometheus serves backfilled queue times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler.config import STATUS_ANNOTATION
from autoscaler.kube.workloads import deployment_path, deployments_path
from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.sandbox.cluster import SandboxCluster
from tests.controller.conftest import tick_driven

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


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[str, float]]:
    """The sandbox with QUIET + 1 Ready Deployments, and Prometheus holding their queue times: every lease at its
    target but HOT, at 10x. Yields Prometheus's URL and the data's end."""
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
        for name in names:
            c.create_ready_deployment(name, namespace="ml", kind="triton", started=end - 600,
                                      annotations={"inference-autoscaler.io/enabled": "true"})
        c.write_kubeconfig(str(tmp_path / "kubeconfig"))
        with LocalPrometheus(tmp_path / "tsdb") as prom:
            yield prom.url, end


@pytest.mark.prometheus
async def test_the_first_loop_scales_before_it_writes_every_status(fleet: tuple[str, float], tmp_path: Path) -> None:
    url, end = fleet
    async with tick_driven(tmp_path, url, write_concurrency=4) as (ctl, api):
        writes: list[tuple[str, int]] = []  # (deployment, spec.replicas) per watched change, in order

        async def watch(rv: str) -> None:
            async for event in api.watch(deployments_path(), resource_version=rv, timeout_s=30):
                obj = event.get("object") or {}
                if event.get("type") == "MODIFIED":
                    writes.append((obj["metadata"]["name"], int(obj["spec"]["replicas"])))

        watcher = asyncio.create_task(watch(ctl.deployments.resource_version))
        try:
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


@pytest.mark.prometheus
async def test_a_new_leader_rewrites_only_the_statuses_that_changed(fleet: tuple[str, float], tmp_path: Path) -> None:
    """A controller that starts (a restart, a failover) over leases whose status annotations an earlier one wrote
    takes what they say as written: its first loop writes none of the unchanged ones (a fleet of 10,000 leases
    otherwise starts with 10,000 patches), and a status that is not what the lease's loop says is rewritten."""
    url, end = fleet
    async with tick_driven(tmp_path, url, write_concurrency=4) as (first, _):
        assert (await first.tick(now=end, query_at=end)).api_writes >= QUIET + 2
        await first.tick(now=end + 5, query_at=end)  # the scaled lease's new count, seen
    async with tick_driven(tmp_path, url, write_concurrency=4) as (second, api):
        report = await second.tick(now=end + 10, query_at=end)
        assert report.decided == QUIET + 1
        assert report.api_writes <= 1, report.api_writes  # at most the hot lease's (its stabilisation state ages)
        # a status that is not what the loop says (edited, or from an older version) is rewritten at once
        await api.patch(deployment_path("ml", "model-007"), {"metadata": {"annotations": {
            STATUS_ANNOTATION: '{"current": 1, "desired": 3, "reason": "x", "mode": "enforce", "metrics": []}'}}})
        await asyncio.sleep(0.5)  # the watch delivers the edit

    async with tick_driven(tmp_path, url, write_concurrency=4) as (third, api):
        assert (await third.tick(now=end + 15, query_at=end)).api_writes <= 2  # model-007's, the hot lease's
        status = json.loads((await api.get(deployment_path("ml", "model-007")))["metadata"]["annotations"][
            STATUS_ANNOTATION])
        assert (status["desired"], status["reason"]) == (1, "DesiredWithinRange")
