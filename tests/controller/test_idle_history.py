"""A controller that meets a scale-to-zero lease with replicas and no demand (a restart, an upgrade) reads how long it
has been idle from its wake query's history in Prometheus, instead of waiting a whole idle period again: the
sandbox API server and a real Prometheus serving 9 backfilled hours of a gateway's request counter."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.metrics.wake import IDLE_HISTORY_STEPS
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import DEPLOYMENTS
from tests.controller.conftest import tick_driven

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 4}, limits: {maximum: 4, minimum: {lowerBound: 0, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 60}
  algorithm: hpa
  scaleToZero:
    wakeQuery: 'sum(rate(gw_requests_total{namespace="{{namespace}}",service="{{name}}"}[1m]))'
    idleSeconds: 300
"""
HOURS = 9
LAST_REQUEST = {"quiet": 600.0, "recent": 100.0, "new": 1800.0, "fresh": 1800.0,  # seconds before the data's end
                "dormant": HOURS * 3600.0, "short": 200.0}
IDLE_SECONDS = {"short": "60"}  # its own idle period (the annotation), shorter than the policy's 300 s
SERIES_FROM = {"new": 120.0}  # a gateway series Prometheus has for the last two minutes only


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[SandboxCluster, str, float]]:
    """Five leases with one Ready pod each, idle (Triton counters flat) for the last half hour; their gateway saw
    requests until 600 s ("quiet") and 100 s ("recent") before the end of the data, a whole minute before now, and
    none in the two minutes Prometheus has of the third ("new"), in the half hour of the fourth ("fresh"), a
    Deployment created a minute before the end, or in the 9 hours of the fifth ("dormant")."""
    end = float(math.floor(time.time() / 60) * 60)
    times = end - HOURS * 3600 + 15.0 * np.arange(HOURS * 240 + 1)
    w = OpenMetricsWriter()
    for name, last in LAST_REQUEST.items():
        w.add("gw_requests_total", {"namespace": "ml", "service": name},  # 10 req/s until `last`
              [(t, 10.0 * max(0.0, min(t, end - last) - (end - 1800))) for t in times
               if t >= end - SERIES_FROM.get(name, HOURS * 3600)])
        w.add_triton({"namespace": "ml", "pod": f"{name}-5d8f7c9b4-p0000", "model": "m", "version": "1"},
                     list(times), [500.0] * times.size, service_us=1e5, queue_us=0.0)
    w.write(tmp_path / "data.om")
    backfill(tmp_path / "data.om", tmp_path / "tsdb")
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        await c.controllers.stop()
        created = {"quiet": end - 3600, "recent": end - 3600, "new": end - 3600, "fresh": end - 60,
                   "dormant": end - 86400, "short": end - 3600}

        for name, at in created.items():
            def born(obj: dict[str, object], at: float = at) -> None:
                obj["metadata"]["creationTimestamp"] = time.strftime(  # type: ignore[index]
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
            idle = {"inference-autoscaler.io/idle-seconds": IDLE_SECONDS[name]} if name in IDLE_SECONDS else {}
            c.create_ready_deployment(name, namespace="ml", kind="triton", started=at, grow=born, annotations={
                "inference-autoscaler.io/enabled": "true", "inference-autoscaler.io/min-replicas": "0", **idle})
        c.write_kubeconfig(str(tmp_path / "kubeconfig"))
        with LocalPrometheus(tmp_path / "tsdb") as prom:
            yield c, prom.url, end


@pytest.mark.prometheus
async def test_a_restarted_controller_reads_how_long_a_lease_has_been_idle(
        cluster: tuple[SandboxCluster, str, float], tmp_path: Path) -> None:
    """Idle for 600 s by the history, over the 300-s idle period: zero replicas at the second loop. Idle for 100 s:
    the rest of the period to go (200 s), not a whole one. A history shorter than the period proves nothing: the
    period starts at the first loop. Nor does the history from before the Deployment was created: a new model gets
    a whole idle period from its creation. A period longer than the ~8 h read back (12 h): idle through all of it,
    the rest of the period to go. A lease's own idle period (idle-seconds: 60) is read back and kept instead."""
    c, url, end = cluster
    (tmp_path / "policy.yaml").write_text(POLICY.replace("idleSeconds: 300", "idleSeconds: 43200"))
    async with tick_driven(tmp_path, url) as (ctl, _):
        await ctl.tick(now=end, query_at=end)
        await ctl.histories_read()
        assert ctl.runtime[("ml", "dormant")].idle.active_at == end - IDLE_HISTORY_STEPS * 15
        assert ctl.runtime[("ml", "new")].idle.active_at == end
    (tmp_path / "policy.yaml").write_text(POLICY)
    async with tick_driven(tmp_path, url) as (ctl, _):
        await ctl.tick(now=end, query_at=end)
        await ctl.histories_read()
        quiet, recent, new, fresh, dormant, short = (ctl.runtime[("ml", n)] for n in LAST_REQUEST)
        # no demand at any step of the last idle period: idle for (at least) all of it
        assert quiet.idle.active_at == end - 300
        # the last step with demand: at most a step (5 s) and the rate window (60 s) after the last request
        assert recent.idle.active_at is not None and end - 100 <= recent.idle.active_at <= end - 100 + 65
        assert new.idle.active_at == end
        assert fresh.idle.active_at == end - 60
        assert dormant.idle.active_at == end - 300
        # its own 60-s period, read back over 60 s at 1-s steps: no demand in them (its last request 200 s ago, well
        # inside the policy's 300 s)
        assert short.idle.active_at == end - 60
        await ctl.tick(now=end + 5, query_at=end)
        replicas = {n: c.store.get(DEPLOYMENTS.storage_key, "ml", n)["spec"]["replicas"] for n in LAST_REQUEST}
        assert replicas == {"quiet": 0, "recent": 1, "new": 1, "fresh": 1, "dormant": 0, "short": 0}, (
            replicas, quiet.last)
        assert quiet.last is not None and quiet.last["reason"] == "ScaleToZero"
