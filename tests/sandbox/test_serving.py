"""The pure serving model: exact per-request replica, vectorised fleet, and their agreement."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.serving import FleetState, Replica, ServingConfig, erlang_c, split_evenly

CFG = ServingConfig(concurrency=4, service_time_ms=40)  # 100 req/s per replica


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "slots", "service_s"),
    [
        ("", 4, 0.040),
        ('{"concurrency": 4, "serviceTimeMs": 40}', 4, 0.040),
        ('{"instances": 2, "maxBatchSize": 8, "serviceTimeMs": 100}', 16, 0.100),
        ('{"concurrency": 16, "maxBatchSize": 8}', 16, 0.040),
        ('{"concurrency": 8, "baseMs": 10, "prefillMsPerToken": 0.01, "decodeMsPerToken": 1}', 8, 0.010 + 0.00512 + 0.128),
    ],
    ids=["defaults", "concurrency", "instances-x-batch", "concurrency-with-batch", "tokens"],
)
def test_config_from_annotation(annotation: str, slots: int, service_s: float) -> None:
    """The serving annotation sets the slots and the service time (default tokens 512 + 128)."""
    cfg = ServingConfig.from_annotation(annotation)
    assert cfg.slots == slots
    assert cfg.service_seconds() == pytest.approx(service_s)


@pytest.mark.parametrize(
    "annotation",
    ['{"concurrency": 0}', '{"serviceTimeMs": -1}', '{"bogus": 1}', "[1, 2]", '{"maxQueue": -3}'],
    ids=["zero-concurrency", "negative-service", "unknown-key", "not-an-object", "negative-queue"],
)
def test_config_rejects_bad_annotation(annotation: str) -> None:
    """A bad serving annotation is a ValueError that names the problem."""
    with pytest.raises(ValueError, match="serving"):
        ServingConfig.from_annotation(annotation)


# -- the exact replica -----------------------------------------------------------------------------


def test_replica_fifo_by_hand() -> None:
    """Two slots, 1 s service: arrivals at 0, 0, 0, 0.5 start at 0, 0, 1, 1 and finish at 1, 1, 2, 2."""
    r = Replica(ServingConfig(concurrency=2, service_time_ms=1000))
    adm = [r.arrive(t) for t in (0.0, 0.0, 0.0, 0.5)]
    assert [a.start for a in adm] == [0.0, 0.0, 1.0, 1.0]
    assert [a.finish for a in adm] == [1.0, 1.0, 2.0, 2.0]
    assert [a.queue_seconds for a in adm] == [0.0, 0.0, 1.0, 0.5]
    assert (r.pending, r.running) == (2, 2)
    r.advance_to(1.5)
    assert (r.pending, r.running, r.counters.success) == (0, 2, 2)
    r.advance_to(2.0)
    assert r.idle and r.counters.success == 4
    assert r.counters.queue_us == pytest.approx(1.5e6)
    assert r.counters.compute_infer_us == pytest.approx(4e6)
    assert r.counters.request_us == pytest.approx(5.5e6)
    assert r.busy_slot_seconds == pytest.approx(4.0)


def test_replica_kv_cache_limits_the_batch_first_come_first_served() -> None:
    """With a KV cache of 4,000 tokens, 8 slots run only four 1,000-token requests at once (the batch a vLLM pod
    runs when its cache fills before --max-num-seqs); a long request at the head of the queue waits for room and
    the short one behind it waits too (first come, first served); without the cache set the slots decide."""
    cfg = ServingConfig(concurrency=8, service_time_ms=1000, kv_cache_tokens=4000)
    r = Replica(cfg)
    adm = [r.arrive(0.0, prompt_tokens=900, output_tokens=100) for _ in range(10)]
    assert [a.start for a in adm] == [0.0] * 4 + [1.0] * 4 + [2.0] * 2
    assert (r.running, r.pending, r.kv_usage) == (4, 6, 1.0)
    r.advance_to(3.0)
    assert r.idle and r.counters.success == 10
    r = Replica(cfg, start_time=10.0)
    first = [r.arrive(10.0, prompt_tokens=900, output_tokens=100) for _ in range(2)]  # 2,000 tokens running
    long = r.arrive(10.5, prompt_tokens=2900, output_tokens=100)  # 3,000: room only once both finish
    short = r.arrive(10.6, prompt_tokens=50, output_tokens=50)  # would fit at once, but comes after the long one
    assert [a.finish for a in first] == [11.0, 11.0] and (long.start, short.start) == (11.0, 11.0)
    unlimited = Replica(ServingConfig(concurrency=8, service_time_ms=1000))
    assert [unlimited.arrive(0.0, 900, 100).start for _ in range(10)] == [0.0] * 8 + [1.0] * 2


def test_replica_batches_count_executions() -> None:
    """Requests that start together on one instance form one execution (count / exec = batch size)."""
    r = Replica(ServingConfig(instances=1, max_batch_size=4, service_time_ms=100))
    for _ in range(8):
        r.arrive(0.0)  # 4 start at 0 together, 4 at 0.1 together
    r.advance_to(1.0)
    assert r.counters.inference_count == 8
    assert r.counters.exec_count == 2


def test_replica_drain_rejects_new_and_finishes_old() -> None:
    """A draining replica rejects arrivals and still completes what it holds."""
    r = Replica(CFG)
    for _ in range(10):
        r.arrive(0.0)
    r.drain()
    assert not r.arrive(0.01).accepted
    assert r.counters.failure_rejected == 1
    assert not r.idle
    r.advance_to(r.drained_at)
    assert r.idle and r.counters.success == 10


def test_replica_max_queue_rejects() -> None:
    """With maxQueue, arrivals beyond the queue bound are rejected (Triton's REJECTED)."""
    r = Replica(ServingConfig(concurrency=1, service_time_ms=1000, max_queue=2))
    results = [r.arrive(0.0).accepted for _ in range(5)]
    assert results == [True, True, True, False, False]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=300), st.integers(1, 8), st.floats(0.001, 0.5))
def test_replica_conserves_requests(gaps: list[float], slots: int, horizon: float) -> None:
    """Arrived = served + running + waiting at any time."""
    r = Replica(ServingConfig(concurrency=slots, service_time_ms=30, service_time_cv=0.5), seed=3)
    t = 0.0
    for g in gaps:
        t += g
        r.arrive(t)
    r.advance_to(t + horizon)
    assert r.counters.success + r.running + r.pending == len(gaps)


def test_replica_enough_capacity_no_queue() -> None:
    """Evenly spaced arrivals below capacity never wait."""
    r = Replica(CFG)
    waits = [r.arrive(i * 0.011).queue_seconds for i in range(2000)]  # 91 req/s, spaced > 40 ms / 4
    assert max(waits) == 0.0


def test_replica_deterministic_given_seed() -> None:
    """Service-time jitter comes from the seeded generator."""
    def run(seed: int) -> list[float]:
        r = Replica(ServingConfig(concurrency=2, service_time_ms=50, service_time_cv=1.0), seed=seed)
        return [r.arrive(i * 0.01).finish for i in range(50)]

    assert run(7) == run(7)
    assert run(7) != run(8)


# -- the fleet -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 400), min_size=3, max_size=3), min_size=1, max_size=60),
       st.one_of(st.none(), st.integers(0, 50)))
def test_fleet_conserves_requests(arrivals: list[list[int]], max_queue: int | None) -> None:
    """Arrived = served + queued + dropped, cumulatively, with and without a queue bound."""
    f = FleetState(ServingConfig(concurrency=4, service_time_ms=40, max_queue=max_queue), 3, slo_target_us=10000)
    a = np.asarray(arrivals, dtype=np.float64)
    res = f.run(a)
    assert np.allclose(a.sum(0), res.served.sum(0) + f.queue + res.dropped.sum(0))
    assert np.all(res.served >= -1e-9) and np.all(f.queue >= 0)
    assert np.allclose(f.counters["success"], res.served.sum(0))
    assert np.all((res.slo_violations >= -1e-9) & (res.slo_violations <= a + 1e-9))


def test_fleet_constant_load_enough_replicas_empty_queue() -> None:
    """A constant load well inside capacity leaves the backlog empty and the queue time small."""
    f = FleetState(CFG, 5, slo_target_us=10000)
    a = np.full((600, 5), 50.0)  # 50 % utilisation each
    res = f.run(a)
    assert np.all(res.queued == 0.0)
    assert np.all(f.idle)
    assert np.allclose(res.served, 50.0)
    assert np.allclose(res.busy, 0.5)
    assert res.mean_queue_time_us[-1].max() < 5000  # M/D/4 at 0.5: ~2 ms
    assert res.slo_violations.sum() / a.sum() < 0.1


def test_fleet_overload_builds_and_drains() -> None:
    """Above capacity the backlog grows by the excess each step; with no arrivals it drains at capacity."""
    f = FleetState(CFG, 1)
    res = f.run(np.full((10, 1), 150.0))
    assert res.queued[:, 0] == pytest.approx(np.arange(1, 11) * 50.0)
    assert np.allclose(res.busy, 1.0)
    res = f.run(np.zeros((10, 1)))
    assert res.queued[:, 0] == pytest.approx([400, 300, 200, 100, 0, 0, 0, 0, 0, 0])
    assert f.idle.all()


def test_fleet_run_equals_steps() -> None:
    """run() over T steps gives the same as T calls of step()."""
    rng = np.random.default_rng(1)
    a = rng.poisson(90, (300, 4)).astype(float)
    a[100:130] *= 2
    cfg = ServingConfig(concurrency=4, service_time_ms=40, prefill_ms_per_token=0.01, decode_ms_per_token=0.1)
    p, o = a * 500, a * 50
    f1, f2 = FleetState(cfg, 4, slo_target_us=10000), FleetState(cfg, 4, slo_target_us=10000)
    res = f1.run(a, 1.0, p, o)
    steps = [f2.step(a[t], 1.0, p[t], o[t]) for t in range(a.shape[0])]
    for name in ("served", "queued", "queue_time_us", "slo_violations", "busy", "pending", "kv_usage"):
        assert np.allclose(getattr(res, name), np.stack([getattr(s, name) for s in steps]), rtol=1e-9, atol=1e-6), name
    for k in f1.counters:
        assert np.allclose(f1.counters[k], f2.counters[k])


def test_fleet_tokens_set_service_time() -> None:
    """With token costs, longer requests mean lower capacity and more busy time."""
    cfg = ServingConfig(concurrency=8, prefill_ms_per_token=0.0, decode_ms_per_token=1.0, service_time_ms=1)
    f = FleetState(cfg, 2)
    res = f.step([10, 10], 1.0, prompt_tokens=[0, 0], output_tokens=[10 * 100, 10 * 400])  # 0.1 s vs 0.4 s
    assert res.busy == pytest.approx([10 * 0.1 / 8, 10 * 0.4 / 8])
    assert f.capacity_rps == pytest.approx([80, 20])


def test_fleet_add_remove_rows() -> None:
    """Rows can be added and removed between steps; state moves with them."""
    f = FleetState(CFG, 2)
    f.step([300, 0])
    f.add(2)
    assert f.replicas == 4 and f.queue.tolist() == [200, 0, 0, 0]
    f.remove([1, 3])
    assert f.replicas == 2 and f.queue.tolist() == [200, 0]
    assert f.step([0, 10]).served.tolist() == [100, 10]


def test_split_evenly() -> None:
    """Integer arrivals are spread as evenly as possible, the remainder rotating."""
    out = split_evenly([10, 3, 0], 4)
    assert out.tolist() == [[3, 3, 2, 2], [0, 1, 1, 1], [0, 0, 0, 0]]
    assert out.sum(1).tolist() == [10, 3, 0]


def test_erlang_c_known_values() -> None:
    """Erlang C matches textbook values (M/M/1: rho; M/M/2 at rho=0.5: 1/3)."""
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert erlang_c(2, 0.5) == pytest.approx(1 / 3)


@pytest.mark.parametrize("rho", [0.5, 0.7, 0.85])
def test_fleet_agrees_with_exact_replica(rho: float) -> None:
    """On Poisson arrivals the fleet's mean queue time is within 30 % of the exact simulation and its
    SLO-violation fraction (10 ms target) within 0.05."""
    rng = np.random.default_rng(11)
    horizon = 2000.0
    rate = rho * 100.0
    times = np.sort(rng.uniform(0, horizon, rng.poisson(rate * horizon)))
    r = Replica(CFG)
    waits = np.array([r.arrive(t).queue_seconds for t in times])
    counts = np.histogram(times, bins=np.arange(0, horizon + 1))[0].astype(float)
    f = FleetState(CFG, 1, slo_target_us=10000)
    res = f.run(counts[:, None])
    fleet_mean = res.queue_time_us.sum() / counts.sum() / 1e6
    fleet_viol = res.slo_violations.sum() / counts.sum()
    assert fleet_mean == pytest.approx(waits.mean(), rel=0.3)
    assert fleet_viol == pytest.approx((waits > 0.01).mean(), abs=0.05)


def test_fleet_replays_a_day_quickly() -> None:
    """A day at 1 s steps for 20 replicas, in 15 s blocks (a controller's loop), takes seconds."""
    f = FleetState(CFG, 20, slo_target_us=10000)
    a = np.random.default_rng(0).poisson(60, (86400, 20)).astype(float)
    t0 = time.perf_counter()
    for lo in range(0, a.shape[0], 15):
        f.run(a[lo:lo + 15])
    assert time.perf_counter() - t0 < 20.0
    assert f.counters["success"].sum() + f.queue.sum() == pytest.approx(a.sum())
