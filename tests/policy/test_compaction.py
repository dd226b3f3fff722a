"""Compacting the stabilisation history changes no decision (the controller keeps states compacted)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.policy.behavior import compact_recommendations, normalize_legacy, normalize_with_behavior
from autoscaler.policy.types import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, Behavior, Recommendation

steps = st.lists(st.tuples(st.integers(1, 30), st.integers(1, 40)), min_size=1, max_size=80)  # (dt, desired)


@settings(max_examples=300, deadline=None)
@given(steps=steps, up_window=st.integers(0, 200), down_window=st.integers(0, 400), legacy=st.booleans())
def test_a_compacted_history_stabilises_exactly_like_the_full_one(
        steps: list[tuple[int, int]], up_window: int, down_window: int, legacy: bool) -> None:
    """Decision after decision, the full HPA history and the compacted one give the same result."""
    behavior = Behavior(scale_up=replace(DEFAULT_SCALE_UP, stabilization_window_s=up_window),
                        scale_down=replace(DEFAULT_SCALE_DOWN, stabilization_window_s=down_window))
    full: tuple[Recommendation, ...] = ()
    small: tuple[Recommendation, ...] = ()
    now, current = 0.0, 10
    for dt, desired in steps:
        now += dt
        if legacy:
            a = normalize_legacy(down_window, current, desired, 1, 40, full, now)
            b = normalize_legacy(down_window, current, desired, 1, 40, small, now)
        else:
            a = normalize_with_behavior(behavior, current, desired, 1, 40, full, (), now)
            b = normalize_with_behavior(behavior, current, desired, 1, 40, small, (), now)
        assert (a.stabilized, a.desired, a.stabilize_reason, a.limit_reason) == (
            b.stabilized, b.desired, b.stabilize_reason, b.limit_reason)
        full, small = a.recommendations, compact_recommendations(b.recommendations)
        assert small[-1].timestamp == now and len(small) <= len(full)
        current = a.desired


def test_a_steady_lease_keeps_one_recommendation() -> None:
    """Sixty equal recommendations compact to the newest one."""
    recs = tuple(Recommendation(5.0 * i, 4) for i in range(60))
    assert compact_recommendations(recs) == (Recommendation(295.0, 4),)


def test_compaction_keeps_the_runs_that_can_still_set_a_bound() -> None:
    """An older high value survives newer lower ones (it may still be the window's maximum), and so on."""
    recs = (Recommendation(0, 9), Recommendation(10, 5), Recommendation(20, 7), Recommendation(30, 6))
    assert compact_recommendations(recs) == (Recommendation(0, 9), Recommendation(10, 5), Recommendation(20, 7),
                                             Recommendation(30, 6))
    recs = (Recommendation(0, 5), Recommendation(10, 6), Recommendation(20, 7), Recommendation(30, 7))
    assert compact_recommendations(recs) == (Recommendation(0, 5), Recommendation(10, 6), Recommendation(30, 7))
