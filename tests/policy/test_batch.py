"""The vectorised batch decider (policy/batch.py) against the scalar ``decide()``: equal Decisions, state included.

Property-based: random fleets of leases with pods in every phase / readiness / timing, missing samples,
several metrics of every type (some failing), random behaviours (Max / Min / Disabled, legacy), random
states with recommendations and scale events of both signs, out-of-bounds and zero replica counts.
Times are drawn from a 15 s grid so that samples often sit exactly on a window or period boundary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.policy import (
    Behavior,
    DecisionState,
    MetricInput,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    Recommendation,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    Snapshot,
    Target,
    TargetType,
    Tolerances,
    decide,
)
from autoscaler.policy.batch import build_batch, decide_batch, decide_many
from autoscaler.policy.types import PolicyType, SelectPolicy

NOW = 1_700_000_000.0
ago = st.integers(0, 48).map(lambda k: NOW - 15.0 * k)
maybe_ago = st.integers(0, 7).flatmap(lambda k: st.none() if k == 0 else ago)


@st.composite
def pods(draw: Any) -> tuple[Pod, ...]:
    n = draw(st.integers(0, 6)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 6))
    out = []
    for i in range(n):
        conts = draw(st.sampled_from([("a",), ("a", "b")]))
        reqs = {c: draw(st.integers(0, 2000)) for c in conts if draw(st.integers(0, 15)) > 0}
        out.append(Pod(
            name=f"p{i}", phase=draw(st.sampled_from(list(PodPhase))) if draw(st.integers(0, 3)) == 0 else PodPhase.RUNNING,
            deleting=draw(st.integers(0, 9)) == 0, start_time=draw(maybe_ago),
            ready=draw(st.sampled_from([True] * 5 + [False, None])), ready_transition_time=draw(maybe_ago),
            requests_milli={"cpu": reqs, "memory": reqs}, containers=conts,
        ))
    return tuple(out)


def sample_value(draw: Any) -> int | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    value: int = draw(st.one_of(st.integers(0, 3000), st.integers(900, 1100)))
    return value


@st.composite
def metric(draw: Any, pod_list: tuple[Pod, ...]) -> MetricInput:
    kind = draw(st.sampled_from(["cpu"] * 4 + ["memory"] + ["pods"] * 4 + ["object", "external"] * 2 + ["error", "bad"]))
    names = [p.name for p in pod_list if draw(st.integers(0, 7)) > 0]
    if kind == "error":
        return MetricInput(MetricType.PODS, Target(TargetType.AVERAGE_VALUE, average_value_milli=1000), name="q",
                           error="unable to fetch metrics from Prometheus")
    if kind == "bad":
        return MetricInput(draw(st.sampled_from(list(MetricType))), Target(TargetType.VALUE, value_milli=0), name="b")
    if kind in ("cpu", "memory"):
        container = draw(st.sampled_from([None] * 6 + ["a"] * 3 + ["z"]))
        samples = tuple(
            PodSample(n, containers_milli=None if draw(st.integers(0, 12)) == 0 else
                      {c: sample_value(draw) for c in ("a", "b")[:draw(st.integers(1, 2))]},
                      timestamp=draw(maybe_ago), window_s=draw(st.sampled_from([0.0, 15.0, 30.0, 60.0])))
            for n in names)
        if kind == "cpu" and draw(st.booleans()):
            target = Target(TargetType.UTILIZATION, average_utilization=draw(st.sampled_from([50, 30, 50, 80, 100, 150, 0])))
        else:
            target = Target(TargetType.AVERAGE_VALUE, average_value_milli=draw(st.sampled_from([1000, 500, 1000, 2000, 0])))
        mtype = MetricType.CONTAINER_RESOURCE if container is not None else MetricType.RESOURCE
        return MetricInput(mtype, target, resource=kind, container=container, samples=samples)
    if kind == "pods":
        samples = tuple(PodSample(n, value_milli=sample_value(draw)) for n in names)
        return MetricInput(MetricType.PODS, Target(TargetType.AVERAGE_VALUE,
                                                   average_value_milli=draw(st.sampled_from([1000, 300, 1000, 1000, 2500, 0]))),
                           name="queueTime", samples=samples)
    mtype = MetricType.OBJECT if kind == "object" else MetricType.EXTERNAL
    value = None if draw(st.integers(0, 9)) == 0 else draw(st.integers(0, 20_000))
    if draw(st.booleans()):
        target = Target(TargetType.VALUE, value_milli=draw(st.sampled_from([3000, 1000, 3000, 0])))
    else:
        target = Target(TargetType.AVERAGE_VALUE, average_value_milli=draw(st.sampled_from([3000, 1000, 3000, 0])))
    return MetricInput(mtype, target, name="x", value_milli=value)


@st.composite
def rules(draw: Any) -> ScalingRules:
    policies = tuple(
        ScalingPolicy(draw(st.sampled_from(list(PolicyType))), draw(st.sampled_from([1, 2, 3, 5, 10, 50, 100, 150])),
                      draw(st.sampled_from([15, 30, 60, 300])))
        for _ in range(draw(st.integers(0, 3))))
    select = draw(st.sampled_from([SelectPolicy.MAX, SelectPolicy.MAX, SelectPolicy.MIN, SelectPolicy.DISABLED]))
    return ScalingRules(draw(st.sampled_from([0, 0, 15, 60, 300])), select, policies)


@st.composite
def behavior(draw: Any) -> Behavior:
    tol = Tolerances(draw(st.sampled_from([0.1, 0.0, 0.05])), draw(st.sampled_from([0.1, 0.0, 0.2])))
    common = dict(tolerances=tol, cpu_initialization_period_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
                  initial_readiness_delay_s=draw(st.sampled_from([0.0, 30.0])))
    choice = draw(st.sampled_from(["default", "legacy", "random"]))
    if choice == "legacy":
        return Behavior(scale_up=None, scale_down=None, legacy_downscale_window_s=draw(st.sampled_from([0, 60, 300])),
                        **common)
    if choice == "default":
        return Behavior(**common)
    return Behavior(scale_up=draw(rules()), scale_down=draw(rules()), **common)


@st.composite
def state(draw: Any) -> DecisionState:
    recs = None if draw(st.integers(0, 4)) == 0 else tuple(
        Recommendation(draw(ago), draw(st.integers(0, 15))) for _ in range(draw(st.integers(0, 10))))
    events = tuple(ScaleEvent(draw(ago), draw(st.integers(-6, 6))) for _ in range(draw(st.integers(0, 5))))
    return DecisionState(recs, events)


@st.composite
def lease(draw: Any, behaviors: list[Behavior]) -> tuple[Snapshot, DecisionState]:
    pod_list = draw(pods())
    metrics = tuple(draw(metric(pod_list)) for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]))))
    n = len(pod_list)
    min_r = draw(st.integers(0, 4))
    max_r = draw(st.integers(1, 15)) if draw(st.integers(0, 7)) == 0 else draw(st.integers(max(min_r, 1), 15))
    if draw(st.integers(0, 5)) == 0:
        current = draw(st.integers(0, 16))  # zero or out of bounds now and then
    else:
        current = min(max(n, min_r), max_r) if draw(st.booleans()) else draw(st.integers(min(min_r, max_r), max_r))
    snap = Snapshot(
        now=NOW, current_replicas=current, status_replicas=draw(st.one_of(st.just(current), st.integers(0, 12))),
        min_replicas=min_r, max_replicas=max_r,
        behavior=draw(st.sampled_from(behaviors)), pods=pod_list, metrics=metrics)
    return snap, draw(state())


@st.composite
def fleets(draw: Any) -> list[tuple[Snapshot, DecisionState]]:
    behaviors = [draw(behavior()) for _ in range(draw(st.integers(1, 3)))]
    return [draw(lease(behaviors)) for _ in range(draw(st.integers(1, 6)))]


@st.composite
def steered(draw: Any, behaviors: list[Behavior]) -> tuple[Snapshot, DecisionState]:
    """A healthy lease whose one Pods metric asks for a drawn replica count: exercises the behaviour."""
    current = draw(st.integers(1, 10))
    wanted = draw(st.integers(0, 25))
    pod_list = tuple(Pod(f"p{i}", start_time=NOW - 3600, ready_transition_time=NOW - 3500) for i in range(current))
    metric = MetricInput(MetricType.PODS, Target(TargetType.AVERAGE_VALUE, average_value_milli=1000), name="q",
                         samples=tuple(PodSample(p.name, value_milli=1000 * wanted // current) for p in pod_list))
    min_r = draw(st.integers(0, 5))
    snap = Snapshot(NOW, current, current, min_r, draw(st.integers(max(min_r, 1), 20)),
                    draw(st.sampled_from(behaviors)), pod_list, (metric,))
    return snap, draw(state())


@st.composite
def steered_fleets(draw: Any) -> list[tuple[Snapshot, DecisionState]]:
    behaviors = [draw(behavior()) for _ in range(draw(st.integers(1, 3)))]
    return [draw(steered(behaviors)) for _ in range(draw(st.integers(1, 6)))]


def assert_same(leases: list[tuple[Snapshot, DecisionState]], now: float | None = None) -> None:
    snaps = [s for s, _ in leases]
    states = [x for _, x in leases]
    expected = [decide(s, x, now) for s, x in leases]
    got = decide_many(snaps, states, now)
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"lease {i}:\n{snaps[i]}\n{states[i]}\nexpected {e}\ngot      {g}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleets())
def test_batch_equals_scalar(leases: list[tuple[Snapshot, DecisionState]]) -> None:
    """decide_many returns exactly the scalar decide() Decision (reason, metrics, state) for every lease."""
    assert_same(leases)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steered_fleets())
def test_batch_equals_scalar_on_behaviour(leases: list[tuple[Snapshot, DecisionState]]) -> None:
    """Stabilisation, rate limits, clamps and their reasons match the scalar path for healthy leases."""
    assert_same(leases)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleets(), st.integers(-40, 40))
def test_batch_equals_scalar_with_explicit_now(leases: list[tuple[Snapshot, DecisionState]], shift: int) -> None:
    """An explicit ``now`` overrides every snapshot's time on both paths alike."""
    assert_same(leases, NOW + 15.0 * shift)


def _fleet_pods(n: int) -> tuple[Pod, ...]:
    return tuple(Pod(f"p{i}", start_time=NOW - 3600, ready_transition_time=NOW - 3500,
                     requests_milli={"cpu": {"a": 1000}}, containers=("a",)) for i in range(n))


def _queue(values: dict[str, int | None], target: int = 1000) -> MetricInput:
    return MetricInput(MetricType.PODS, Target(TargetType.AVERAGE_VALUE, average_value_milli=target), name="q",
                       samples=tuple(PodSample(p, value_milli=v) for p, v in values.items()))


def _snap(current: int, pod_list: tuple[Pod, ...], metrics: tuple[MetricInput, ...], b: Behavior | None = None,
          ) -> Snapshot:
    return Snapshot(NOW, current, current, 1, 20, b or Behavior(), pod_list, metrics)


def _cpu(usage: dict[str, int | None], *, at: float = NOW, window: float = 60.0, target: int = 50) -> MetricInput:
    return MetricInput(MetricType.RESOURCE, Target(TargetType.UTILIZATION, average_utilization=target), resource="cpu",
                       samples=tuple(PodSample(p, containers_milli={"a": v}, timestamp=at, window_s=window)
                                     for p, v in usage.items()))


EDGE_CASES: list[tuple[str, Snapshot]] = [
    ("initialising pod whose sample window ends exactly at its readiness transition counts as ready",
     _snap(2, (_fleet_pods(1)[0], Pod("p1", start_time=NOW - 60, ready_transition_time=NOW - 60,
                                     requests_milli={"cpu": {"a": 1000}}, containers=("a",))),
           (_cpu({"p0": 100, "p1": 2000}),))),
    ("ratio exactly 1.0 with a missing pod: the missing pod is not imputed",
     _snap(3, _fleet_pods(3), (_queue({"p0": 1000, "p1": 1000, "p2": None}),))),
    ("utilisation below target with a missing pod imputes 100 % of its request (target 50 %)",
     _snap(3, _fleet_pods(3), (_cpu({"p0": 100, "p1": 200, "p2": None}, target=50),))),
    ("scale-up with an unready pod counts it at zero",
     _snap(3, (*_fleet_pods(2), Pod("p2", phase=PodPhase.PENDING)), (_queue({"p0": 1600, "p1": 1600}),))),
]


@pytest.mark.parametrize(("name", "snap"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_cases(name: str, snap: Snapshot) -> None:
    """Boundary cases of the replica calculator decide the same on both paths."""
    assert_same([(snap, DecisionState())])


def test_unsupported_leases_fall_back_to_scalar() -> None:
    """Duplicate pod names, values for unknown pods and huge magnitudes are flagged and still decided exactly."""
    dup = _snap(2, _fleet_pods(1) * 2, (_queue({"p0": 3000}),))
    unknown = _snap(2, _fleet_pods(2), (_queue({"p0": 3000, "p1": 10, "ghost": 9000}),))
    huge = _snap(2, _fleet_pods(2), (_queue({"p0": 2**60, "p1": 1}),))
    plain = _snap(2, _fleet_pods(2), (_queue({"p0": 3000, "p1": 1000}),))
    leases = [(s, DecisionState()) for s in (dup, unknown, huge, plain)]
    _, fallback = build_batch([s for s, _ in leases], [x for _, x in leases])
    assert fallback.tolist() == [True, True, True, False]
    assert_same(leases)


def test_state_arrays_grow_when_full() -> None:
    """A lease whose recommendation row is full gets a new column; an outdated slot is reused instead."""
    pods_ = _fleet_pods(2)
    fresh = DecisionState(tuple(Recommendation(NOW - 10 * k, 2) for k in range(5)), ())
    stale = DecisionState(tuple(Recommendation(NOW - 1000 - k, 2) for k in range(5)), ())
    snaps = [_snap(2, pods_, (_queue({"p0": 3000, "p1": 3000}),))] * 2
    inp, _ = build_batch(snaps, [fresh, stale])
    out = decide_batch(inp)
    assert inp.rec_time.shape[1] == 6
    assert out.rec_count.tolist() == [6, 5]
    assert out.rec_slot.tolist() == [5, 4]
    assert out.event_slot.tolist() == [0, 0]
    assert_same(list(zip(snaps, [fresh, stale], strict=True)))


def test_leases_sharing_a_behaviour_form_one_group() -> None:
    """Equal behaviours (even distinct objects) are one group, so rate policies loop per group, not per lease."""
    pods_ = _fleet_pods(3)
    snaps = [_snap(3, pods_, (_queue({"p0": v, "p1": v, "p2": v}),), Behavior()) for v in (100, 1000, 9000)]
    snaps.append(_snap(3, pods_, (_queue({"p0": 1, "p1": 1, "p2": 1}),), Behavior(scale_up=None, scale_down=None)))
    inp, _ = build_batch(snaps, [DecisionState()] * 4)
    assert len(inp.behaviors) == 2
    assert inp.group.tolist() == [0, 0, 0, 1]
    assert_same([(s, DecisionState()) for s in snaps])


def test_array_api_reports_per_metric_results() -> None:
    """decide_batch exposes proposals, usage and errors per metric row without building Decision objects."""
    pods_ = _fleet_pods(2)
    snaps = [_snap(2, pods_, (_queue({"p0": 3000, "p1": 1000}), _queue({"p0": None, "p1": None}))),
             _snap(2, (), (_queue({}),))]
    inp, _ = build_batch(snaps, [DecisionState(), DecisionState()])
    out = decide_batch(inp)
    assert out.proposed[:1].tolist() == [4]
    assert np.allclose(out.usage[:1], [2.0])
    assert out.metric_ok.tolist() == [True, False, False]
    assert out.desired.tolist() == [4, 2]


def test_empty_batch() -> None:
    """No leases, no decisions."""
    assert decide_many([], []) == []
