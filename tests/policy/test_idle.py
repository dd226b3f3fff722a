"""Scale to zero and back (autoscaler.policy.idle): pure decisions, time passed in."""

from __future__ import annotations

import math

from autoscaler.metrics import InstantVector, QueryError, Sample
from autoscaler.metrics.wake import wake_value
from autoscaler.policy.idle import IdleReason, IdleState, decide_idle, idle_message
from autoscaler.policy.predictive import PredictiveParams, PredictiveState, replicas_needed, wake_replicas_needed

IDLE_S = 60.0


def run(steps: list[tuple[float, int, int, float | None]]) -> list[tuple[int, IdleReason | None]]:
    """(now, current, algorithm's desired, wake) per loop -> (desired, reason) per loop, state carried."""
    state, out = IdleState(), []
    for now, current, desired, wake in steps:
        d = decide_idle(current, desired, wake, now, state, idle_s=IDLE_S, threshold=0.5)
        state = d.state
        out.append((d.desired, d.reason))
    return out


def test_at_zero_only_demand_over_the_threshold_wakes_and_a_missing_signal_never_does() -> None:
    assert run([(0, 0, 1, 0.0)]) == [(0, IdleReason.IDLE)]
    assert run([(0, 0, 1, 0.5)]) == [(0, IdleReason.IDLE)]  # at the threshold: no demand
    assert run([(0, 0, 3, 2.0)]) == [(1, IdleReason.WAKE)]  # one replica; the algorithm sizes it once it reports
    assert run([(0, 0, 1, None)]) == [(0, IdleReason.WAKE_SIGNAL_MISSING)]


def test_a_lease_is_woken_to_its_wake_replicas() -> None:
    d = decide_idle(0, 1, 4.0, 0.0, IdleState(), idle_s=IDLE_S, wake_replicas=3)
    assert (d.desired, d.reason) == (3, IdleReason.WAKE)
    assert "scaling from zero to 3 replicas" in idle_message(d, 4.0, IDLE_S, 0.0)


def test_given_what_one_replica_serves_a_lease_is_woken_to_what_the_demand_needs() -> None:
    """A burst that wakes a lease gets its fleet in one start-up: ceil(demand / per-replica target), at least the
    wake replicas, at most the maximum; without a target the demand does not size the wake-up."""
    def woken(wake: float, **kw: float | int | None) -> int:
        return decide_idle(0, 1, wake, 0.0, IdleState(), idle_s=IDLE_S, **kw).desired  # type: ignore[arg-type]
    assert woken(30.0, wake_target=8.0, max_replicas=10) == 4
    assert woken(32.0, wake_target=8.0, max_replicas=10) == 4  # exactly four replicas' worth
    assert woken(0.5, wake_target=8.0, wake_replicas=2, max_replicas=10) == 2  # never fewer than the wake replicas
    assert woken(500.0, wake_target=8.0, max_replicas=6) == 6  # never more than the maximum
    assert woken(30.0, max_replicas=10) == 1
    d = decide_idle(0, 1, 30.0, 0.0, IdleState(), idle_s=IDLE_S, wake_target=8.0, max_replicas=10)
    assert "scaling from zero to 4 replicas (30 / 8 per replica)" in idle_message(d, 30.0, IDLE_S, 0.0, 8.0)
    # with replicas, the wake value sizes nothing: the algorithm decides, floored at one
    assert decide_idle(1, 1, 30.0, 0.0, IdleState(), idle_s=IDLE_S, wake_target=8.0).desired == 1


def test_until_a_woken_pod_is_ready_the_wake_value_keeps_sizing_the_lease() -> None:
    """The first reading after a burst is low (its rate window is still filling): while no woken pod is Ready, the
    wake value sizes the lease as it grows; once one is Ready the algorithm decides, as before the wake."""
    kw = {"idle_s": IDLE_S, "wake_target": 8.0, "max_replicas": 10}
    d = decide_idle(0, 1, 5.0, 0.0, IdleState(), **kw)  # type: ignore[arg-type]
    assert (d.desired, d.reason, d.state.waking) == (1, IdleReason.WAKE, True)
    d = decide_idle(1, 1, 30.0, 1.0, d.state, ready=0, **kw)  # type: ignore[arg-type]
    assert (d.desired, d.reason) == (4, IdleReason.WAKING)
    assert "no pod Ready yet: wake value 30 / 8 per replica needs 4 replicas" in idle_message(d, 30.0, IDLE_S, 0.0, 8.0)
    assert decide_idle(4, 6, 30.0, 2.0, d.state, ready=0, **kw).desired == 6  # the algorithm may ask for more
    d = decide_idle(4, 1, 30.0, 3.0, d.state, ready=1, **kw)  # type: ignore[arg-type]
    assert (d.desired, d.reason, d.state.waking) == (1, None, False)  # a pod reports: the algorithm's again
    assert decide_idle(1, 1, 30.0, 4.0, d.state, ready=0, **kw).desired == 1  # type: ignore[arg-type]


def test_the_lease_model_sizes_the_wake_instead_of_a_per_replica_target() -> None:
    """``wake_need`` (a predictive lease's sizing of its wake value, ``wake-target: auto``): woken to it, at least
    the wake replicas, at most the maximum, also while no woken pod is Ready; it stands for the target; the message
    says how it was sized; with none, the wake replicas."""
    kw = {"idle_s": IDLE_S, "max_replicas": 10}
    d = decide_idle(0, 1, 12.0, 0.0, IdleState(), wake_need=5, wake_target=100.0, **kw)  # type: ignore[arg-type]
    assert (d.desired, d.reason) == (5, IdleReason.WAKE)
    assert idle_message(d, 12.0, IDLE_S, 0.0, None, "12 req/s at 0.5 s") == (
        "wake value 12 above 0: scaling from zero to 5 replicas (12 req/s at 0.5 s)")
    assert decide_idle(0, 1, 12.0, 0.0, IdleState(), wake_need=1, wake_replicas=2, **kw).desired == 2  # type: ignore[arg-type]
    assert decide_idle(0, 1, 12.0, 0.0, IdleState(), wake_need=40, **kw).desired == 10  # type: ignore[arg-type]
    assert decide_idle(0, 1, 12.0, 0.0, IdleState(), wake_need=None, **kw).desired == 1  # type: ignore[arg-type]
    d = decide_idle(1, 1, 30.0, 1.0, d.state, ready=0, wake_need=8, **kw)  # type: ignore[arg-type]
    assert (d.desired, d.reason) == (8, IdleReason.WAKING)
    assert "wake value 30 (by its model) needs 8 replicas" in idle_message(d, 30.0, IDLE_S, 0.0, None, "by its model")


def test_a_predictive_lease_sizes_its_wake_from_its_last_service_time_and_slots() -> None:
    """As the algorithm sizes a lease (the rate scaled by the learnt headroom); None when it was never measured or
    its slots are unknown."""
    params = PredictiveParams(target_queue_time_us=500_000.0)
    measured = PredictiveState(service_time_s=0.5)
    assert wake_replicas_needed(12.0, measured, 2, params, 20) == replicas_needed(12.0, 0.5, 2, params, 20) > 3
    learnt = PredictiveState(service_time_s=0.5, headroom=2.0)
    assert wake_replicas_needed(12.0, learnt, 2, params, 20) == replicas_needed(24.0, 0.5, 2, params, 20)
    assert wake_replicas_needed(12.0, PredictiveState(), 2, params, 20) is None
    assert wake_replicas_needed(12.0, measured, None, params, 20) is None


def test_replicas_go_to_zero_after_a_whole_idle_period_counted_from_the_last_demand() -> None:
    out = run([(0, 2, 2, 0.0),  # first observation: the period starts here, not at some unknown past
               (30, 2, 0, 0.0),  # the algorithm's 0 is floored at one replica inside the period
               (59, 1, 1, 0.0),
               (60, 1, 1, 0.0)])
    assert out == [(2, None), (1, None), (1, None), (0, IdleReason.SCALE_TO_ZERO)]
    out = run([(0, 1, 1, 0.0), (50, 1, 1, 3.0), (100, 1, 1, 0.0), (110, 1, 1, 0.0)])
    assert out[-1] == (0, IdleReason.SCALE_TO_ZERO) and out[-2] == (1, None)  # 60 s after the demand at 50


def test_a_missing_wake_value_is_never_taken_for_idleness() -> None:
    out = run([(0, 1, 1, 0.0), (55, 1, 1, None), (100, 1, 1, 0.0), (115, 1, 1, 0.0)])
    assert out == [(1, None), (1, None), (1, None), (0, IdleReason.SCALE_TO_ZERO)]  # restarted at 55


def test_wake_value_is_one_finite_number_or_none_with_why() -> None:
    """The wake query's answer: one finite value, else None and the reason an Event and the doctor give."""
    def vec(*values: float) -> InstantVector:
        return InstantVector(tuple(Sample({"service": f"s{i}"}, 0.0, v) for i, v in enumerate(values)), 0.0, 0.01)
    assert wake_value(vec(2.5))[:2] == (2.5, "")
    assert wake_value(vec())[0] is None and "no series" in wake_value(vec())[1]
    assert wake_value(vec(1.0, 2.0))[0] is None and "2 series" in wake_value(vec(1.0, 2.0))[1]
    assert wake_value(vec(math.nan))[0] is None and "nan" in wake_value(vec(math.nan))[1]
    failed = wake_value(QueryError("parse error at char 5", "prometheus", 400))
    assert failed[0] is None and "parse error" in failed[1]


def test_no_scale_to_zero_while_the_pods_metrics_are_missing() -> None:
    """Idle long enough, but blind on the pods: held (never a scale-down blind), and zero once they are back."""
    d = decide_idle(2, 1, 0.0, 100.0, IdleState(0.0), idle_s=IDLE_S, blind=True)
    assert (d.desired, d.reason) == (2, IdleReason.HELD)
    assert "not scaling to zero" in idle_message(d, 0.0, IDLE_S, 0.0)
    d = decide_idle(2, 1, 0.0, 105.0, d.state, idle_s=IDLE_S)
    assert (d.desired, d.reason) == (0, IdleReason.SCALE_TO_ZERO)
