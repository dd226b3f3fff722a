"""Stabilisation windows, rate-limit policies and the min/max clamp (``spec.behavior``).

A re-statement of the normalisation half of upstream ``horizontal.go``:
``stabilizeRecommendationWithBehaviors`` (up/down windows over the recommendation history, with
its "replace the last outdated sample, else append" bookkeeping), ``convertDesiredReplicasWithBehaviorRate``
(Pods / Percent policies over their periods, ``selectPolicy`` Max / Min / Disabled, scale events of
both directions), the legacy no-behaviour path (``normalizeDesiredReplicas``: 5-minute downscale
window, scale-up limited to max(2x, 4)) and ``storeScaleEvent``.

Upstream compares ``time.Time`` values with ``After`` / ``Before`` (strict); so do we with floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.policy.types import (
    Behavior,
    DecisionState,
    PolicyType,
    Reason,
    Recommendation,
    ScaleEvent,
    ScalingRules,
    SelectPolicy,
)

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Normalized:
    stabilized: int
    desired: int
    stabilize_reason: str  # ScaleUpStabilized | ScaleDownStabilized | ReadyForNewScale
    stabilize_message: str
    limit_reason: str  # DesiredWithinRange | ScaleUpLimit | ... (the ScalingLimited condition)
    limit_message: str
    recommendations: tuple[Recommendation, ...]


def _change_in_period(period_s: int, events: list[ScaleEvent], now: float) -> int:
    cutoff = now - period_s
    return sum(e.change for e in events if e.timestamp > cutoff)


def _period_start(current: int, period_s: int, ups: list[ScaleEvent], downs: list[ScaleEvent], now: float) -> int:
    """The replica count at the start of a policy period: undo the changes made inside it."""
    return current - _change_in_period(period_s, ups, now) + _change_in_period(period_s, downs, now)


def _split(events: tuple[ScaleEvent, ...]) -> tuple[list[ScaleEvent], list[ScaleEvent]]:
    """Signed events -> (scale-up events, scale-down events) with positive magnitudes."""
    ups = [e for e in events if e.change > 0]
    downs = [ScaleEvent(e.timestamp, -e.change) for e in events if e.change < 0]
    return ups, downs


def scale_up_limit(current: int, ups: list[ScaleEvent], downs: list[ScaleEvent], rules: ScalingRules,
                   now: float) -> int:
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    use_min = rules.select_policy == SelectPolicy.MIN
    result = INT32_MAX if use_min else INT32_MIN
    for p in rules.policies:
        start = _period_start(current, p.period_s, ups, downs, now)
        if p.type == PolicyType.PODS:
            proposed = start + p.value
        else:
            proposed = math.ceil(float(start) * (1 + float(p.value) / 100))
        result = min(result, proposed) if use_min else max(result, proposed)
    return result


def scale_down_limit(current: int, ups: list[ScaleEvent], downs: list[ScaleEvent], rules: ScalingRules,
                     now: float) -> int:
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    use_min_change = rules.select_policy == SelectPolicy.MIN
    result = INT32_MIN if use_min_change else INT32_MAX
    for p in rules.policies:
        start = _period_start(current, p.period_s, ups, downs, now)
        if p.type == PolicyType.PODS:
            proposed = start - p.value
        else:
            proposed = int(float(start) * (1 - float(p.value) / 100))  # Go int32() truncates
        result = max(result, proposed) if use_min_change else min(result, proposed)
    return result


def _record(recs: list[Recommendation], old_index: int | None, rec: Recommendation) -> tuple[Recommendation, ...]:
    if old_index is not None:
        recs[old_index] = rec
    else:
        recs.append(rec)
    return tuple(recs)


def compact_recommendations(recs: tuple[Recommendation, ...]) -> tuple[Recommendation, ...]:
    """The recommendations that a future stabilisation can still use, oldest first.

    Stabilisation takes the minimum (scale-up window) and the maximum (scale-down window) of the
    recommendations newer than a cutoff that only moves forward. A recommendation is dominated when a
    recommendation at least as new is at least as high (it never sets the maximum) and one at least
    as new is at least as low (it never sets the minimum); dropping those changes no decision, for any
    window lengths. What is left is a pair of monotone runs, 1-2 entries for a steady lease instead of
    one per loop over the window (the HPA keeps them all), which keeps a long-running controller's
    per-loop cost flat. The newest recommendation is always kept, so a non-empty input stays non-empty.
    """
    if len(recs) <= 1:
        return recs
    kept: list[Recommendation] = []
    hi = lo = None
    for r in sorted(recs, key=lambda r: r.timestamp, reverse=True):
        if hi is None or lo is None or r.replicas > hi or r.replicas < lo:
            kept.append(r)
        hi = r.replicas if hi is None else max(hi, r.replicas)
        lo = r.replicas if lo is None else min(lo, r.replicas)
    kept.reverse()
    return tuple(kept)


def compact_state(state: DecisionState) -> DecisionState:
    """``state`` with :func:`compact_recommendations` applied (the controller keeps states this way)."""
    recs = state.recommendations
    if recs is None or len(recs) <= 2:
        return state
    return DecisionState(compact_recommendations(recs), state.scale_events)


def normalize_with_behavior(
    behavior: Behavior, current: int, desired: int, min_replicas: int, max_replicas: int,
    recommendations: tuple[Recommendation, ...], events: tuple[ScaleEvent, ...], now: float,
) -> Normalized:
    up_rules = behavior.scale_up
    down_rules = behavior.scale_down
    assert up_rules is not None and down_rules is not None
    up_cutoff = now - up_rules.stabilization_window_s
    down_cutoff = now - down_rules.stabilization_window_s
    up_rec = desired
    down_rec = desired
    old_index: int | None = None
    for i, r in enumerate(recommendations):
        if r.timestamp > up_cutoff:
            up_rec = min(r.replicas, up_rec)
        if r.timestamp > down_cutoff:
            down_rec = max(r.replicas, down_rec)
        if r.timestamp < up_cutoff and r.timestamp < down_cutoff:
            old_index = i
    stabilized = current
    if stabilized < up_rec:
        stabilized = up_rec
    if stabilized > down_rec:
        stabilized = down_rec
    new_recs = _record(list(recommendations), old_index, Recommendation(now, desired))
    if stabilized != desired:
        if desired >= current:
            s_reason, s_msg = (Reason.SCALE_UP_STABILIZED,
                               "recent recommendations were lower than current one, applying the lowest recent recommendation")
        else:
            s_reason, s_msg = (Reason.SCALE_DOWN_STABILIZED,
                               "recent recommendations were higher than current one, applying the highest recent recommendation")
    else:
        s_reason, s_msg = Reason.READY_FOR_NEW_SCALE, "recommended size matches current size"

    ups, downs = _split(events)
    final = stabilized
    l_reason, l_msg = Reason.DESIRED_WITHIN_RANGE, "the desired count is within the acceptable range"
    if stabilized > current:
        limit = max(scale_up_limit(current, ups, downs, up_rules, now), current)
        if max_replicas > limit:
            allowed, reason, msg = (limit, Reason.SCALE_UP_LIMIT,
                                    "the desired replica count is increasing faster than the maximum scale rate")
        else:
            allowed, reason, msg = (max_replicas, Reason.TOO_MANY_REPLICAS,
                                    "the desired replica count is more than the maximum replica count")
        if stabilized > allowed:
            final, l_reason, l_msg = allowed, reason, msg
    elif stabilized < current:
        limit = min(scale_down_limit(current, ups, downs, down_rules, now), current)
        if min_replicas < limit:
            allowed, reason, msg = (limit, Reason.SCALE_DOWN_LIMIT,
                                    "the desired replica count is decreasing faster than the maximum scale rate")
        else:
            allowed, reason, msg = (min_replicas, Reason.TOO_FEW_REPLICAS,
                                    "the desired replica count is less than the minimum replica count")
        if stabilized < allowed:
            final, l_reason, l_msg = allowed, reason, msg
    return Normalized(stabilized, final, s_reason, s_msg, l_reason, l_msg, new_recs)


def normalize_legacy(
    window_s: int, current: int, desired: int, min_replicas: int, max_replicas: int,
    recommendations: tuple[Recommendation, ...], now: float,
) -> Normalized:
    cutoff = now - window_s
    stabilized = desired
    old_index: int | None = None
    for i, r in enumerate(recommendations):
        if r.timestamp < cutoff:
            old_index = i
        elif r.replicas > stabilized:
            stabilized = r.replicas
    new_recs = _record(list(recommendations), old_index, Recommendation(now, desired))
    if stabilized != desired:
        s_reason, s_msg = (Reason.SCALE_DOWN_STABILIZED,
                           "recent recommendations were higher than current one, applying the highest recent recommendation")
    else:
        s_reason, s_msg = Reason.READY_FOR_NEW_SCALE, "recommended size matches current size"
    up_limit = int(max(2.0 * float(current), 4.0))
    if max_replicas > up_limit:
        max_allowed, reason, msg = (up_limit, Reason.SCALE_UP_LIMIT,
                                    "the desired replica count is increasing faster than the maximum scale rate")
    else:
        max_allowed, reason, msg = (max_replicas, Reason.TOO_MANY_REPLICAS,
                                    "the desired replica count is more than the maximum replica count")
    if stabilized < min_replicas:
        final, l_reason, l_msg = (min_replicas, Reason.TOO_FEW_REPLICAS,
                                  "the desired replica count is less than the minimum replica count")
    elif stabilized > max_allowed:
        final, l_reason, l_msg = max_allowed, reason, msg
    else:
        final, l_reason, l_msg = (stabilized, Reason.DESIRED_WITHIN_RANGE,
                                  "the desired count is within the acceptable range")
    return Normalized(stabilized, final, s_reason, s_msg, l_reason, l_msg, new_recs)


def _longest_period(rules: ScalingRules) -> int:
    return max((p.period_s for p in rules.policies), default=0)


def record_scale_event(behavior: Behavior, events: tuple[ScaleEvent, ...], previous: int, new: int,
                       now: float) -> tuple[ScaleEvent, ...]:
    """``storeScaleEvent``: append the rescale, reusing the last slot older than the longest period.

    The legacy path keeps no events. Scale-up and scale-down events live in separate lists
    upstream; here they share one signed list, and "the last outdated event" is looked up among
    the events of the same direction only.
    """
    if behavior.legacy or new == previous:
        return events
    up = new > previous
    rules = behavior.scale_up if up else behavior.scale_down
    assert rules is not None
    cutoff = now - _longest_period(rules)
    change = new - previous
    out = list(events)
    last_old: int | None = None
    for i, e in enumerate(out):
        if (e.change > 0) == up and e.timestamp < cutoff:
            last_old = i
    if last_old is not None:
        out[last_old] = ScaleEvent(now, change)
    else:
        out.append(ScaleEvent(now, change))
    return tuple(out)
