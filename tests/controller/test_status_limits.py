"""A controller driven by `tick` against the sandbox API server and a real Prometheus serving backfilled Triton counters
of a pod whose requests wait 100x the queue-time target: what its status says limited the count, and what closing it
does with Events not yet posted."""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from autoscaler.config import STATUS_ANNOTATION
from autoscaler.kube.workloads import deployment_path
from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.sandbox.cluster import SandboxCluster
from tests.controller.conftest import tick_driven

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 3}, limits: {maximum: 10, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
  algorithm: predictive
  predictive: {slotsPerReplica: 4}
  prometheus: {queueTimeRecordingRule: false}
"""
POD = "slow-5d8f7c9b4-p0000"  # create_ready_deployment's pod


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[str, float]]:
    """One Ready predictive Deployment (at most 3 replicas) whose pod served 2 req/s of 0.2 s each for ten minutes,
    each request queued 1 s first (the target is 10 ms). Yields Prometheus's URL and the data's end."""
    end = float(math.floor(time.time() / 60) * 60)
    times = end - 600 + 15.0 * np.arange(41)
    served = 2.0 * (times - times[0])
    w = OpenMetricsWriter()
    w.add_triton({"namespace": "ml", "pod": POD, "model": "llm", "version": "1"}, list(times), list(served),
                 service_us=200_000.0, queue_us=1_000_000.0)
    w.write(tmp_path / "data.om")
    backfill(tmp_path / "data.om", tmp_path / "tsdb")
    (tmp_path / "policy.yaml").write_text(POLICY)
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        await c.controllers.stop()  # the pod is written below, as it is in Prometheus
        c.create_ready_deployment("slow", namespace="ml", kind="triton", started=end - 600,
                                  annotations={"inference-autoscaler.io/enabled": "true"})
        c.write_kubeconfig(str(tmp_path / "kubeconfig"))
        with LocalPrometheus(tmp_path / "tsdb") as prom:
            yield prom.url, end


@pytest.mark.prometheus
async def test_a_predictive_count_is_not_reported_as_limited_by_the_hpa_cores_bound(
        cluster: tuple[str, float], tmp_path: Path) -> None:
    """The HPA core, run alongside for the per-metric proposals, asks for 100 replicas and is cut to the maximum; the
    predictive algorithm's count below the maximum is what is applied, so the status names no limit. (It used to
    carry the core's `TooManyReplicas`, and `autoscaler explain` printed "limited by: TooManyReplicas" under a
    count below the maximum.)"""
    url, end = cluster
    async with tick_driven(tmp_path, url) as (ctl, api):
        await ctl.tick(now=end, query_at=end)
        last = ctl.runtime[("ml", "slow")].last
        assert last["metricReplicas"] == 100 and last["max"] == 3  # the core's own ask, over the bound
        assert last["message"].startswith("predictive") and last["desired"] < 3, last
        assert last["limitedBy"] is None
        written = (await api.get(deployment_path("ml", "slow")))["metadata"]["annotations"][STATUS_ANNOTATION]
        assert json.loads(written)["desired"] == last["desired"] and json.loads(written).get("limitedBy") is None


async def test_closing_a_tick_driven_controller_drops_its_unposted_events(
        cluster: tuple[str, float], tmp_path: Path) -> None:
    """A controller driven by `tick` (tests, benchmarks) posts the Events of a loop's last phase at the next tick
    (here FailedGetMetrics: its Prometheus is not there); closed before that, it closes them instead of leaving
    never-awaited coroutines (a RuntimeWarning that failed a test's teardown now and then)."""
    _, end = cluster
    async with tick_driven(tmp_path, "http://127.0.0.1:9") as (ctl, _):
        await ctl.tick(now=end, query_at=end)
        queued = list(ctl._pending_events)
        assert queued, "a FailedGetMetrics Event waiting for the next tick"
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in queued)  # type: ignore[arg-type]
    assert not ctl._pending_events
