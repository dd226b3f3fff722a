"""A new predictive state reads its history from Prometheus (a restart, a failover, a lease first seen): the
sandbox API server and a real Prometheus serving a day and a half of backfilled Triton counters."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from autoscaler.controller import SEED_CONCURRENCY, Controller
from autoscaler.kube.workloads import deployment_path
from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.sandbox.cluster import SandboxCluster
from tests.controller.conftest import tick_driven

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 10}, limits: {maximum: 10, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
  algorithm: predictive
  predictive: {slotsPerReplica: 4, cycleCorrelation: %s, seasonal: %s}
"""
PERIOD = 1200.0  # a five-minute burst every 20 minutes
SERVICE_S = 0.2
NOW_POD, OLD_POD = "batch-5d8f7c9b4-p0000", "batch-7c6b5a4d3-q0000"  # the pod of now (create_ready_deployment's); one gone
DAY_POD = "batch-6a5b4c3d2-r0000"  # the day before, scraped every minute


def _rate(t: float) -> float:
    return 20.0 if t % PERIOD < 300 else 2.0


def _counters(w: OpenMetricsWriter, pod: str, times: np.ndarray, rate=_rate) -> None:  # type: ignore[no-untyped-def]
    """Triton's counters for one pod over ``times``, integrated from ``rate``."""
    step = float(times[1] - times[0])
    served = np.cumsum([rate(float(t)) * step for t in times])
    w.add_triton({"namespace": "ml", "pod": pod, "model": "llm", "version": "1"}, list(times), list(served),
                 service_us=SERVICE_S * 1e6, queue_us=1000.0)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[SandboxCluster, str, float]]:
    """The sandbox with one predictive Deployment and its Ready pod, and Prometheus holding 90 minutes of its
    load (the first 40 served by a pod that is gone now), ending at a whole minute shortly before now, and before
    that a day and a half of a daily cycle, served by another pod gone since, scraped every minute."""
    end = float(math.floor(time.time() / 60) * 60)
    w = OpenMetricsWriter()
    def daily(t: float) -> float:  # 2..18 req/s, its phase fixed to the data's end (the same test at any hour)
        return 10.0 + 8.0 * math.sin(2 * math.pi * (t - end) / 86400)

    _counters(w, DAY_POD, end - 129600 + 60.0 * np.arange(1801), daily)  # a day and a half, until end - 21600
    _counters(w, OLD_POD, end - 5400 + 15.0 * np.arange(161))  # until end - 3000
    _counters(w, NOW_POD, end - 3000 + 15.0 * np.arange(201))  # until end
    w.write(tmp_path / "data.om")
    backfill(tmp_path / "data.om", tmp_path / "tsdb")
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        await c.controllers.stop()  # the pods are written below, as they are in Prometheus
        c.create_ready_deployment("batch", namespace="ml", kind="triton", started=end - 3000,
                                  annotations={"inference-autoscaler.io/enabled": "true"})
        c.write_kubeconfig(str(tmp_path / "kubeconfig"))
        with LocalPrometheus(tmp_path / "tsdb") as prom:
            yield c, prom.url, end


@contextlib.asynccontextmanager
async def _controller(tmp_path: Path, url: str, correlation: float,
                      seasonal: bool = True) -> AsyncIterator[Controller]:
    (tmp_path / "policy.yaml").write_text(POLICY % (correlation, str(seasonal).lower()))
    async with tick_driven(tmp_path, url) as (ctl, _):
        yield ctl


@pytest.mark.prometheus
async def test_a_new_predictive_state_reads_its_recurring_load_from_prometheus(
        cluster: tuple[SandboxCluster, str, float], tmp_path: Path) -> None:
    """A controller meeting the lease for the first time finds its 20-minute period at its second decision, from the
    90 minutes Prometheus holds (the gone pod's load included), instead of 40 minutes later, and has its daily shape
    from the day and a half before instead of a day later; with both switched off it reads nothing."""
    _, url, end = cluster
    async with _controller(tmp_path, url, 0.6) as ctl:
        await ctl.tick(now=end, query_at=end)
        rt = ctl.runtime[("ml", "batch")]
        assert rt.predictive is not None and rt.predictive.cycle_period_s is None  # one decision of its own
        await ctl.histories_read()
        assert rt.cycle_seed is not None and len(rt.cycle_seed) >= 85  # ~90 one-minute buckets
        await ctl.tick(now=end + 5, query_at=end)
        state = rt.predictive
        assert state is not None and rt.cycle_seed is None
        assert state.cycle_period_s == PERIOD
        loads = np.frombuffer(state.cycle, dtype=np.float64)
        assert loads.size >= 85
        # the gone pod's bursts are in it: the first 40 minutes hold two bursts at 20 req/s x 0.2 s = 4 busy slots
        assert np.count_nonzero(loads[:40] > 3.0) >= 8
        # the daily shape: 10-minute means of the day and a half before (the gap since filled), fitted at once
        assert len(state.season) >= 8 * 180 and len(state.season_fit) == 144  # 8 bytes a bucket
        # (four harmonics fitted to a day and a half whose last six hours hold the last mean: near the cycle's
        # 2..18 req/s, not on it)
        assert 14.0 < max(state.season_fit) < 22.0 and -4.0 < min(state.season_fit) < 6.0
        assert not rt.history_due and not ctl._seeds and rt.season_seed is None  # read once
        assert ctl.telemetry.registry.get_sample_value("autoscaler_lease_cycle_period_seconds",
                                                       {"namespace": "ml", "lease": "batch"}) == PERIOD
        await ctl.tick(now=end + 10, query_at=end)  # posts the Events of the loop before
        events = (await ctl.api.get("/api/v1/namespaces/ml/events"))["items"]
        found = [e for e in events if e["reason"] == "RecurringLoad"]
        assert len(found) == 1 and "the load recurs every 1200s" in found[0]["message"], events
    async with _controller(tmp_path, url, 0.0, seasonal=False) as off:
        await off.tick(now=end, query_at=end)
        assert not off._seeds
        await off.tick(now=end + 5, query_at=end)
        state = off.runtime[("ml", "batch")].predictive
        assert state is not None and state.cycle == b"" and state.cycle_period_s is None and state.season == b""


@pytest.mark.prometheus
async def test_closing_a_controller_stops_its_history_reads(cluster: tuple[SandboxCluster, str, float],
                                                           tmp_path: Path) -> None:
    """A controller closed while its first loop's history reads are still running cancels them: none of them
    fails later on the closed Prometheus client as a task error nobody retrieves."""
    _, url, end = cluster
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with _controller(tmp_path, url, 0.6) as ctl:
            for _ in range(SEED_CONCURRENCY):  # every read waits for a slot, as at 10,000 leases met at once
                await ctl._seed_slots.acquire()
            await ctl.tick(now=end, query_at=end)
            assert ctl._seeds  # the reads of a lease met for the first time, in the background
        assert not ctl._seeds
        await asyncio.sleep(0.5)  # what a read left running would need to fail
        gc.collect()  # a failed task's error is reported when the task is collected
        assert not errors, errors
    finally:
        loop.set_exception_handler(before)


@pytest.mark.prometheus
async def test_a_lease_leaving_the_predictive_algorithm_drops_its_state(cluster: tuple[SandboxCluster, str, float],
                                                                        tmp_path: Path) -> None:
    """Annotated `algorithm: hpa` after predictive decisions, the lease loses its predictive state and its predictive
    series on /metrics (and the state annotation), so that coming back starts afresh as after a restart."""
    _, url, end = cluster
    key, lease = ("ml", "batch"), {"namespace": "ml", "lease": "batch"}
    async with _controller(tmp_path, url, 0.6) as ctl:
        get = ctl.telemetry.registry.get_sample_value
        await ctl.tick(now=end, query_at=end)
        await ctl.histories_read()
        await ctl.tick(now=end + 5, query_at=end)
        assert ctl.runtime[key].predictive is not None
        assert get("autoscaler_lease_cycle_period_seconds", lease) == PERIOD
        assert get("autoscaler_lease_request_rate_rps", {**lease, "kind": "sized"}) is not None
        assert get("autoscaler_lease_slots_per_replica", {**lease, "source": "policy"}) == 4
        await ctl.api.patch(deployment_path("ml", "batch"),
                            {"metadata": {"annotations": {"inference-autoscaler.io/algorithm": "hpa"}}})
        await ctl.deployments.relist()
        await ctl.tick(now=end + 10, query_at=end)
        rt = ctl.runtime[key]
        assert rt.predictive is None and rt.rates is None and rt.slots is None
        assert get("autoscaler_lease_cycle_period_seconds", lease) is None
        assert get("autoscaler_lease_slots_per_replica", {**lease, "source": "policy"}) is None
        assert get("autoscaler_lease_request_rate_rps", {**lease, "kind": "sized"}) is None
        assert get("autoscaler_lease_desired_replicas", {**lease, "mode": "enforce"}) is not None
