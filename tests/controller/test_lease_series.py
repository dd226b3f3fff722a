"""The per-lease series on /metrics are read from the leases at each scrape: what they show is each lease's last
decision, and what is gone from the leases is gone from /metrics."""

from __future__ import annotations

import math
from dataclasses import replace

from prometheus_client import generate_latest

from autoscaler.telemetry import LeaseSeries, Telemetry

A = {"namespace": "ml", "lease": "a"}
B = {"namespace": "ml", "lease": "b"}


def test_lease_series_follow_the_leases_at_each_scrape() -> None:
    """Replicas, metric values and targets, the predictive period, rates and slots per lease; a metric without a value has
    no value series; a lease gone, or a mode left, has no series at the next scrape."""
    a = LeaseSeries("ml", "a", "enforce", 2, 3, (("queueTime", 12000.0, 10000.0), ("gpuUtilization", None, 70.0)),
                    cycle_period_s=1200.0, rates=(10.0, 14.5), slots=(8, "learnt"))
    b = LeaseSeries("ml", "b", "shadow", 1, 4, (("queueTime", 500.0, 10000.0),), rates=(math.nan, math.nan))
    rows = [a, b]
    t = Telemetry()
    t.watch_leases(lambda: rows)
    get = t.registry.get_sample_value
    assert get("autoscaler_lease_current_replicas", A) == 2
    assert get("autoscaler_lease_desired_replicas", {**A, "mode": "enforce"}) == 3
    assert get("autoscaler_lease_desired_replicas", {**B, "mode": "shadow"}) == 4
    assert get("autoscaler_lease_metric_value", {**A, "metric": "queueTime"}) == 12000.0
    assert get("autoscaler_lease_metric_target", {**A, "metric": "gpuUtilization"}) == 70.0
    assert get("autoscaler_lease_metric_value", {**A, "metric": "gpuUtilization"}) is None
    assert get("autoscaler_lease_cycle_period_seconds", A) == 1200.0
    assert get("autoscaler_lease_cycle_period_seconds", B) is None  # not predictive
    assert get("autoscaler_lease_request_rate_rps", {**A, "kind": "demand"}) == 10.0
    assert get("autoscaler_lease_request_rate_rps", {**A, "kind": "sized"}) == 14.5
    assert math.isnan(get("autoscaler_lease_request_rate_rps", {**B, "kind": "sized"}) or 0.0)
    assert b'autoscaler_lease_request_rate_rps{kind="sized",lease="b",namespace="ml"} NaN' in generate_latest(t.registry)
    assert get("autoscaler_lease_slots_per_replica", {**A, "source": "learnt"}) == 8
    assert get("autoscaler_lease_slots_per_replica", {**B, "source": "learnt"}) is None
    assert get("autoscaler_lease_idle_seconds", A) is None  # not a scale-to-zero lease

    rows = [replace(a, mode="shadow", metrics=a.metrics[:1])]  # b deleted; a in shadow mode, reading one metric
    assert get("autoscaler_lease_current_replicas", B) is None
    assert get("autoscaler_lease_desired_replicas", {**A, "mode": "enforce"}) is None
    assert get("autoscaler_lease_desired_replicas", {**A, "mode": "shadow"}) == 3
    assert get("autoscaler_lease_metric_target", {**A, "metric": "gpuUtilization"}) is None


async def test_a_scrape_leaves_the_registry_reading_the_leases() -> None:
    """A scrape renders the series it read; the registry read afterwards in the same context reads the leases again,
    not that scrape's copy."""
    a = LeaseSeries("ml", "a", "enforce", 2, 3, ())
    rows = [a]
    t = Telemetry()
    t.watch_leases(lambda: rows)
    assert b'autoscaler_lease_desired_replicas{lease="a",mode="enforce",namespace="ml"} 3.0' in await t.exposition()
    rows = [replace(a, desired=5)]
    assert t.registry.get_sample_value("autoscaler_lease_desired_replicas", {**A, "mode": "enforce"}) == 5


async def test_a_scrape_writes_every_series_as_generate_latest_would() -> None:
    """/metrics writes the leases' series itself (faster than a sample object per series); prometheus_client reads
    that text back (the registry's series) and writes it again with generate_latest line for line the same:
    escaping, NaN and infinities, large and small values, series left out."""
    rows = [
        LeaseSeries("ml", "a", "enforce", 2, 3, (("queueTime", 12000.0, 10000.0), ("gpuUtilization", None, 70.0)),
                    cycle_period_s=1200.0, rates=(10.0, 14.5)),
        LeaseSeries("ml", "b", "shadow", 1, 4, (("queueTime", 0.1, 1e16),), cycle_period_s=0.0,
                    rates=(math.nan, math.inf)),
        LeaseSeries('we"ird\\ns', "c\nd", "paused", 0, 0, (('custom"x', -math.inf, 2.5e-7),)),
        LeaseSeries("ml", "idle", "enforce", 1, 1, ()),
        LeaseSeries("ml", "zero", "enforce", 0, 0, (), zero=(math.nan, 1234.5)),
    ]
    t = Telemetry()
    t.watch_api_calls(lambda: {"GET": 3, "PATCH": 1})
    t.watch_leases(lambda: rows)
    t.decisions.labels("Capacity", "enforce").inc()
    t.loop_seconds.observe(0.3)
    text = await t.exposition()
    assert sorted(text.splitlines()) == sorted(generate_latest(t.registry).splitlines())
    assert b'autoscaler_lease_metric_target{lease="c\\nd",metric="custom\\"x",namespace="we\\"ird\\\\ns"} 2.5e-07' \
        in text
    assert b"autoscaler_kube_api_requests_total" in text and b"autoscaler_decisions_total" in text
