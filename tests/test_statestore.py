"""Persisted stabilisation state: compact, conservative, and silent when nothing matters changed."""

from __future__ import annotations

from autoscaler.policy import Behavior, DecisionState, Recommendation, ScaleEvent, decide
from autoscaler.statestore import EMPTY, needs_write, parse, restore, significant

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
