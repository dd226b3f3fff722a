"""Scale to zero and back: the decision for a lease whose minimum is 0 replicas (pure: time passed in).

With no pods there is nothing to measure on the pods, so a lease at zero is woken by a signal from in front of
them: its *wake value*, the demand its gateway or ingress sees (the policy's ``scaleToZero.wakeQuery``). This layer
sits on top of the lease's algorithm (HPA rule or predictive), which never proposes fewer than one replica itself:

* at zero replicas, a wake value over the threshold asks for ``wake_replicas`` (``Wake``; one unless the lease
  says more, as Knative's activation scale), or, given the wake value one replica serves (``wake_target``) or the
  replicas the lease's own model sizes the wake value with (``wake_need``: a predictive lease's service time and
  slots, when the wake value is a request rate), for as many replicas as the demand waiting needs, up to the
  lease's maximum: a model woken by a burst gets its fleet in one start-up instead of two; until its first pod is
  Ready, the wake value (its rate window still filling) keeps sizing it (``Waking``); the algorithm takes over once
  the pods report; else the lease stays at zero (``Idle``);
* with replicas, the lease goes to zero once its wake value has stayed at or under the threshold for the idle
  period (``ScaleToZero``), unless its pods' own metrics are missing then (``ScaleToZeroHeld``: the controller
  never scales down blind); until then the algorithm decides, floored at one replica;
* a missing wake value (the query failed, or found no series) is never taken for idleness: at zero the lease
  stays (``WakeSignalMissing``), with replicas it keeps the algorithm's decision and the idle period starts again.

The first observation starts the idle period; the controller may then move its start back (``IdleState.active_at``)
to when its wake query last showed demand in Prometheus's history, so that a restart does not cost a whole period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class IdleReason(StrEnum):
    WAKE = "Wake"
    IDLE = "Idle"
    SCALE_TO_ZERO = "ScaleToZero"
    WAKE_SIGNAL_MISSING = "WakeSignalMissing"
    HELD = "ScaleToZeroHeld"
    WAKING = "Waking"


@dataclass(frozen=True)
class IdleState:
    active_at: float | None = None
    """When demand was last seen (or the lease first observed, or its wake value last missing)."""
    waking: bool = False
    """Woken from zero and no pod Ready yet: the pods cannot report, so the wake value sizes the lease."""


@dataclass(frozen=True)
class IdleDecision:
    desired: int
    reason: IdleReason | None
    """None: the algorithm's decision stands (floored at one replica)."""
    state: IdleState
    idle_for_s: float


def decide_idle(current: int, desired: int, wake: float | None, now: float, state: IdleState, *,
                idle_s: float, threshold: float = 0.0, wake_replicas: int = 1, wake_target: float | None = None,
                max_replicas: int | None = None, ready: int = 0, blind: bool = False,
                wake_need: int | None = None) -> IdleDecision:
    """The replicas of a lease whose minimum is 0, given the algorithm's ``desired`` and the ``wake`` value;
    ``wake_target``: the wake value one replica serves (None: woken to ``wake_replicas`` whatever the demand);
    ``wake_need``: instead, the replicas the wake value needs by the lease's own model (a predictive lease's, from
    its service time and slots: ``predictive.wake_replicas_needed``); ``ready``: the lease's Ready pods; ``blind``:
    the pods' own metrics are missing or failing."""
    active = wake is None or wake > threshold or state.active_at is None
    active_at = now if active else state.active_at
    assert active_at is not None
    idle_for = now - active_at
    if current <= 0:
        if wake is None:
            return IdleDecision(0, IdleReason.WAKE_SIGNAL_MISSING, IdleState(active_at), idle_for)
        if wake > threshold:
            return IdleDecision(woken_replicas(wake, wake_replicas, wake_target, max_replicas, wake_need),
                                IdleReason.WAKE, IdleState(active_at, waking=True), idle_for)
        return IdleDecision(0, IdleReason.IDLE, IdleState(active_at), idle_for)
    new = IdleState(active_at, waking=state.waking and ready <= 0)
    if idle_for >= idle_s:
        if blind:
            return IdleDecision(max(1, desired, current), IdleReason.HELD, new, idle_for)
        return IdleDecision(0, IdleReason.SCALE_TO_ZERO, new, idle_for)
    if new.waking and (wake_target is not None or wake_need is not None) and wake is not None and wake > threshold:
        n = woken_replicas(wake, wake_replicas, wake_target, max_replicas, wake_need)
        if n > max(1, desired):
            return IdleDecision(n, IdleReason.WAKING, new, idle_for)
    return IdleDecision(max(1, desired), None, new, idle_for)


def woken_replicas(wake: float, wake_replicas: int, wake_target: float | None, max_replicas: int | None,
                   need: int | None = None) -> int:
    """The replicas a lease at zero is woken to by demand ``wake``: ``wake_replicas``, or as many as the demand
    needs if more (``need``, by the lease's own model; else by ``wake_target``, the wake value one replica
    serves), at most ``max_replicas``."""
    n = max(1, wake_replicas)
    if need is not None:
        n = max(n, need)
    elif wake_target is not None and wake_target > 0 and math.isfinite(wake):
        n = max(n, math.ceil(wake / wake_target - 1e-9))
    return n if max_replicas is None else max(1, min(n, max_replicas))


def idle_message(d: IdleDecision, wake: float | None, idle_s: float, threshold: float,
                 wake_target: float | None = None, sized_by: str = "") -> str:
    """What a person reads in the Event or the status: why the lease is at, leaves or goes to zero; ``sized_by``:
    how the lease's own model sized the wake value (with ``wake_need``), e.g. its service time and slots."""
    per = f" / {wake_target:g} per replica" if wake_target else ""
    if d.reason == IdleReason.WAKE:
        n = d.desired
        sized = f" ({sized_by})" if sized_by else f" ({wake:.3g}{per})" if per else ""
        return (f"wake value {wake:.3g} above {threshold:g}: scaling from zero to {n} replica{'s' if n > 1 else ''}"
                f"{sized}")
    if d.reason == IdleReason.WAKING:
        return (f"woken, no pod Ready yet: wake value {wake:.3g}{per if not sized_by else f' ({sized_by})'} needs "
                f"{d.desired} replicas")
    if d.reason == IdleReason.IDLE:
        return f"idle: wake value {wake:.3g} at or under {threshold:g}; staying at zero replicas"
    if d.reason == IdleReason.SCALE_TO_ZERO:
        return (f"no demand for {d.idle_for_s:.0f} s (wake value at or under {threshold:g} for idleSeconds="
                f"{idle_s:g}): scaling to zero replicas")
    if d.reason == IdleReason.HELD:
        return (f"no demand for {d.idle_for_s:.0f} s, but the pods' metrics are missing: not scaling to zero until "
                "they are back")
    if d.reason == IdleReason.WAKE_SIGNAL_MISSING:
        return "the scale-to-zero wake query returned no value: staying at zero replicas until it does"
    return ""


__all__ = ["IdleDecision", "IdleReason", "IdleState", "decide_idle", "idle_message", "woken_replicas"]
