"""Persisted stabilisation state: compact, conservative, and silent when nothing matters changed."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from autoscaler.policy import Behavior, DecisionState, Recommendation, ScaleEvent, decide
from autoscaler.policy.predictive import (
    PredictiveObservation,
    PredictiveParams,
    PredictiveState,
    decide_predictive,
    unpack,
)
from autoscaler.statestore import (
    EMPTY,
    PredictivePersisted,
    needs_write,
    parse,
    parse_predictive,
    predictive_needs_write,
    predictive_significant,
    restore,
    restore_predictive,
    significant,
)

B = Behavior()  # HPA defaults: 0 s up window, 300 s down window, 15 s policy periods
NOW = 10_000.0


def state(*recs: tuple[float, int], events: tuple[tuple[float, int], ...] = ()) -> DecisionState:
    return DecisionState(tuple(Recommendation(NOW - ago, r) for ago, r in recs),
                         tuple(ScaleEvent(NOW - ago, c) for ago, c in events))


def test_steady_lease_persists_nothing() -> None:
    """All recommendations equal to the current count: nothing to write, ever."""
    sig = significant(state((10, 4), (5, 4), (0, 4)), 4, B, NOW)
    assert sig == EMPTY and not needs_write(sig, EMPTY, 30)


def test_keeps_highest_above_with_newest_timestamp() -> None:
    """Above the current count: the highest value, stamped with the newest timestamp on that side."""
    sig = significant(state((200, 9), (50, 6), (10, 4)), 4, B, NOW)
    assert sig.recommendations == ((9, NOW - 50),)


def test_expired_recommendations_and_events_dropped() -> None:
    """Recommendations older than the window and events older than every period are not kept."""
    sig = significant(state((400, 9), events=((20, 2), (5, 1))), 4, B, NOW)
    assert sig.recommendations == () and sig.events == ((NOW - 5, 1),)


def test_write_only_when_timestamps_move_by_the_granularity() -> None:
    """The same value seen again writes only after the granularity has passed."""
    a = significant(state((10, 9)), 4, B, NOW)
    b = significant(state((1, 9)), 4, B, NOW)
    c = significant(state((1, 9)), 4, B, NOW + 40)
    assert not needs_write(b, a, 30)
    assert needs_write(significant(state((0, 9)), 4, B, NOW + 31), significant(state((40, 9)), 4, B, NOW + 31), 30)
    assert needs_write(c, EMPTY, 30)


def test_annotation_round_trip_and_garbage() -> None:
    """The annotation parses back; unreadable or foreign text means 'no state'."""
    sig = significant(state((10, 9), events=((5, 2),)), 4, B, NOW)
    assert parse(sig.to_annotation()) == sig
    for bad in ("", "{", "[]", '{"v": 99}', '{"v":1,"r":[["x",1]]}'):
        assert parse(bad) is None


def test_restore_never_allows_an_earlier_scale_down() -> None:
    """A restarted controller holds a scale-down at least as long as the one that never stopped."""
    from autoscaler.policy import MetricInput, MetricType, Pod, PodSample, Snapshot, Target, TargetType

    def snap(now: float) -> Snapshot:
        pods = tuple(Pod(f"p{i}") for i in range(6))
        m = MetricInput(MetricType.PODS, Target(TargetType.AVERAGE_VALUE, average_value_milli=1000), name="q",
                        samples=tuple(PodSample(p.name, value_milli=100) for p in pods))
        return Snapshot(now, 6, 6, 1, 10, B, pods, (m,))

    # Uninterrupted: high recommendation 8 at t=0, then low load; released after 300 s.
    st = DecisionState((Recommendation(0.0, 8),), ())
    t = 0.0
    released_live = None
    live = st
    while t < 400:
        t += 5
        d = decide(snap(t), live)
        live = d.state
        if d.desired_replicas < 6 and released_live is None:
            released_live = t
    # Restarted at t=100 from the persisted form written at t=0.
    persisted = significant(DecisionState((Recommendation(0.0, 8),), ()), 6, B, 0.0)
    restored = restore(parse(persisted.to_annotation()) or EMPTY, 6, 100.0, 30.0)
    t, released_restored = 100.0, None
    cur = restored
    while t < 500:
        t += 5
        d = decide(snap(t), cur)
        cur = d.state
        if d.desired_replicas < 6 and released_restored is None:
            released_restored = t
    assert released_live is not None and released_restored is not None
    assert released_restored >= released_live


# ------------------------------------------------------------------------------ the predictive season

EMPTY_P = PredictivePersisted(b"", 0.0, 600.0, (0.0, 0), None)


def _diurnal_run(days: float, step: float = 60.0) -> tuple[list[object], PredictiveParams]:
    """Decide every ``step`` s on a daily sinusoid; returns the state after each decision."""
    params = PredictiveParams(target_queue_time_us=10_000)
    st, states = PredictiveState(), []
    for t in np.arange(0.0, days * 86_400, step):
        rate = 100.0 + 60.0 * math.sin(2 * math.pi * t / 86_400)
        o = PredictiveObservation(now=float(t), current_replicas=10, ready_replicas=10, starting_replicas=0,
                                  min_replicas=1, max_replicas=100, request_rate_rps=rate, service_time_s=0.08,
                                  slots_per_replica=4, startup_s=120.0)
        st = decide_predictive(o, st, params).state
        states.append(st)
    return states, params


def test_predictive_season_survives_a_restart() -> None:
    """Two days learned, then a restart: the restored season forecasts what the running one does (within
    the annotation's three significant digits), while the envelope starts empty (cold-start hold)."""
    states, params = _diurnal_run(2.0)
    last = states[-1]
    assert isinstance(last, PredictiveState) and last.season_fit
    text = predictive_significant(last, params)
    assert text is not None
    restored = restore_predictive(parse_predictive(text.to_annotation()) or EMPTY_P, params)
    assert len(restored.season_fit) == len(last.season_fit)
    assert np.allclose(restored.season_fit, last.season_fit, rtol=5e-3)
    assert restored.season_bucket_end == last.season_bucket_end and restored.bucket_n == last.bucket_n
    assert restored.rates == () and restored.since is None and restored.service_time_s == pytest.approx(0.08)


def test_predictive_calibration_headroom_survives_a_restart() -> None:
    """The headroom the queue-time calibration learnt is written with the season and restored, its share of
    queued readings between the thresholds so that it is held until fresh readings move it; none learnt, none
    written."""
    states, params = _diurnal_run(0.1)
    last = states[-1]
    assert isinstance(last, PredictiveState)
    plain = predictive_significant(last, params)
    assert plain is not None and '"h"' not in plain.to_annotation()
    assert restore_predictive(plain, params).headroom == 1.0
    learnt = predictive_significant(replace(last, headroom=2.3456, over_share=0.9), params)
    assert learnt is not None
    restored = restore_predictive(parse_predictive(learnt.to_annotation()) or EMPTY_P, params)
    assert restored.headroom == 2.35
    assert restored.over_share == pytest.approx((params.calibration_grow_share + params.calibration_relax_share) / 2)
    # held through calm and queued readings alike for a while: neither threshold is crossed at once
    o = PredictiveObservation(now=1e6, current_replicas=10, ready_replicas=10, starting_replicas=0, min_replicas=1,
                              max_replicas=100, request_rate_rps=100.0, service_time_s=0.08, slots_per_replica=4,
                              startup_s=120.0, queue_time_us=0.0)
    st = restored
    for k in range(12):
        st = decide_predictive(replace(o, now=1e6 + 5 * k), st, params).state
    assert st.headroom == 2.35


def test_predictive_state_written_once_per_closed_bucket() -> None:
    """Every decision may change the state; the annotation changes only when a season bucket closes."""
    states, params = _diurnal_run(2 / 24, step=5.0)  # two hours of 5-s decisions, 10-min buckets
    written, writes = None, 0
    for st in states:
        assert isinstance(st, PredictiveState)
        sig = predictive_significant(st, params)
        if predictive_needs_write(sig, written):
            written, writes = sig, writes + 1
    assert writes == 1 + 11  # the first decision, then the buckets that closed at 600, 1200, ..., 6600 s


def test_predictive_annotation_garbage_and_changed_bucket_size() -> None:
    """Unreadable or negative content is no state; a season kept with other bucket sizes is dropped."""
    for bad in ("", "{", "[]", '{"v": 99}', '{"v":1,"b":600,"end":0,"m":["x"]}', '{"v":1,"b":600,"end":0,"m":[-1]}',
                '{"v":1,"b":0,"end":0,"m":[]}', '{"v":1,"b":600,"end":0,"m":[NaN]}',
                '{"v":1,"b":600,"end":0,"m":[],"svc":-1}', '{"v":1,"b":600,"end":0,"m":[],"open":7}',
                '{"v":1,"b":600,"end":0,"m":[],"h":0.5}', '{"v":1,"b":600,"end":0,"m":[],"h":"x"}',
                '{"v":1,"b":600,"end":0,"m":[],"h":Infinity}'):
        assert parse_predictive(bad) is None, bad
    states, params = _diurnal_run(1.2)
    last = states[-1]
    assert isinstance(last, PredictiveState)
    sig = predictive_significant(last, params)
    assert sig is not None
    other = PredictiveParams(target_queue_time_us=10_000, season_bucket_s=300)
    assert restore_predictive(sig, other).season == b""
    assert np.allclose(unpack(restore_predictive(sig, params).season), unpack(last.season), rtol=5e-3)
