"""The predictive policy for GPU inference servers: capacity targets from queueing, ahead of start-up.

Why: the HPA scales proportionally on a queue time that stays near zero until a replica is almost
saturated and then explodes, and it ignores that a GPU pod takes minutes to become Ready. An inference
server tells us more: its request rate and its service time per request (Triton's success and
compute-duration counters). From these the replicas needed at the SLO follow directly from queueing
theory, and they can be provisioned for the load expected when new pods will be Ready.

The decision, in order (each step is a parameter of :class:`PredictiveParams`):

1. **Demand** ``lam``: the lease's served request rate (short window) plus the growth of its backlog
   over ``growth_window_s``: saturated pods serve only what they can, so under overload the served
   rate alone hides the unserved part of the demand. With a backlog (``pending`` requests) the fleet
   must also drain it within ``drain_s``: ``lam += pending / drain_s`` (``Backlog``), where a pod's backlog counts
   only as far as that pod can serve it in ``drain_s`` (:func:`stuck_backlog`: new replicas do not take it over).
2. **Burst envelope**: the largest offered load (demand x service time, in busy slots) seen over the last
   ``burst_window_s``, as a rate at the current service time (``BurstEnvelope``): a bursty lease keeps the
   capacity its bursts needed instead of chasing each one. Load, not rate: an LLM server's service time
   follows its requests' token counts, which change from minute to minute as much as the rate does, and a
   minute of long requests needs the capacity a minute of many requests does. On a sustained fall (a line fits
   the trend window, R² at least ``envelope_trend_fit``, and the rate falls in both of its halves), each past load
   counts at the level the fall brings it to now: a steady decline sheds its earlier level instead of holding it
   for the window; a step down, bursts and noise keep the envelope. After a fall (the load under
   ``recurrence_share`` of the envelope) while the load has not been seen to come back from one within
   ``recurrence_memory_s``, the envelope spans ``one_off_hold_startups`` start-up delays instead of the window
   (ski rental: idling longer than a start-up delay costs more than starting again would): a flash crowd that
   ends releases its capacity; load that recurs keeps the whole window.
3. **Forecast** over the horizon ``startup_s + lag_s`` (what a pod created now will meet): a damped
   linear trend of the recent rate (``Trend``) and, once a full period of history exists, the
   lease's own daily shape (a few FFT harmonics, as Crane's predictive HPA) as a multiplicative
   change from now to the horizon (``Seasonal``); once two whole periods of a recurring pattern are in the lease's
   recent load history (:func:`find_period`: a batch job every hour), the load both of the last two periods had
   from now to the horizon (``Cycle``), and after a burst the envelope spans ``one_off_hold_startups`` start-up
   delays where neither period had load coming back that soon. Forecasts only *raise* the target: the measured
   rate is the floor.
4. **Capacity target**: the fewest replicas whose per-replica queue (``slots`` servers, Allen-Cunneen
   G/G/c, :func:`autoscaler.serving.erlang_c`) keeps ``P(queue time > target) <= violation_target``
   at that rate (``Capacity``). **Calibration**: where more than ``calibration_grow_share`` of the lease's
   queue-time readings (smoothed over ``calibration_window_s``) exceed the target, the model underestimates its
   queueing (arrivals burstier than it assumes); the rate is scaled by a learnt headroom, x1.5 per window up to
   ``calibration_max``, relaxed four times slower once under ``calibration_relax_share`` (``QueueCalibration``).
   Readings taken while fewer replicas are Ready than the target are not counted: that queue is explained.
5. **Reactive rules** on the measured queue time: above ``reactive_queue_factor`` x the target, never
   scale down (``ReactiveQueueTime``). When it has stayed above ``reactive_floor_factor`` x the target for
   the whole ``reactive_floor_window_s``, the HPA's rule ``ceil(ready x measured / target)`` on the
   window's smallest queue time and Ready count (at most ``reactive_floor_max_growth`` x ready) is a
   floor, held like a capacity target (``ReactiveFloor``): the model's blind spot (arrivals burstier
   than it assumes) shows as a chronic queue. Not in the first burst window after a (re)start, when the
   queue still holds the backlog of the fleet the controller found. **Panic**: while it exceeds
   ``panic_queue_factor`` times the target (a severe overload the model did not foresee: a cold start, a
   burst far above the envelope), grow the replica count by ``panic_growth`` per decision, as the HPA's
   default scale-up policy allows, even while pods start (``Panic``); only while requests are pending where
   the server reports them (over an empty queue, a windowed queue time that high is the tail of a backlog
   just drained). It overshoots on purpose: traffic that overloaded the fleet this much tends to come back
   within a start-up delay, and the envelope and held scale-down bring it down.
6. **Start-up aware**: the target is a *total*: pods still starting count as coming capacity, so
   nothing is added for load they will absorb (``StartupAware`` when they cover the target).
7. **Asymmetric scale-down**: up at once; down only to the largest target of the last
   ``scale_down_window_s`` and by at most ``scale_down_max_fraction`` per decision (``ScaleDownHeld``).
   **Spike hold**: while the arrivals are *rough* (:func:`roughness` of the rate history over ``spike_roughness``:
   spikes that come and go within a minute, again and again, as a code assistant's requests do), not below
   ``spike_hold_fraction`` x the largest target of the last ``spike_hold_s`` (``SpikeHold``). Such a lease's
   queue comes from per-second spikes, which the rate smooths away and a pod created after one arrives too late
   for; a fleet that drops to the capacity target between spikes meets every next one short. A step, a ramp or
   a flash crowd is smooth by this measure (one large move in a window), and Poisson arrivals are (the moves are
   a few per cent of the rate).
8. Bounds ``[min, max]`` (``TooFewReplicas`` / ``TooManyReplicas``); missing rate data holds the
   current count (``MissingData``), never scales down; nor does a rate some Ready pods are missing from
   (``PartialData``: it counts only the others).

Pure: numpy only, time and state come in as arguments, state goes out as a frozen value.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from itertools import repeat
from operator import itemgetter, mul, sub
from typing import Any

import numpy as np

from autoscaler.policy.types import Pod, PodPhase
from autoscaler.serving import RHO_MAX, erlang_c


class PredictiveReason(StrEnum):
    """Which part of the policy drove the decision (for logs, Events and ``explain``)."""

    CAPACITY = "Capacity"
    BACKLOG = "Backlog"
    BURST_ENVELOPE = "BurstEnvelope"
    TREND = "Trend"
    SEASONAL = "Seasonal"
    CYCLE = "Cycle"
    REACTIVE_QUEUE_TIME = "ReactiveQueueTime"
    PANIC = "Panic"
    REACTIVE_FLOOR = "ReactiveFloor"
    CALIBRATED = "QueueCalibration"
    STARTUP_AWARE = "StartupAware"
    SCALE_DOWN_HELD = "ScaleDownHeld"
    SPIKE_HOLD = "SpikeHold"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    MISSING_DATA = "MissingData"
    PARTIAL_DATA = "PartialData"


@dataclass(frozen=True)
class PredictiveParams:
    """Every choice of the policy, with its safe default (units in the names)."""

    target_queue_time_us: float = 10000.0
    violation_target: float = 0.04
    """Allowed probability that a request queues longer than the target, at the forecast rate."""
    arrival_cv2: float = 1.0
    """Squared CV of inter-arrival times (1 = Poisson) for the queueing formula."""
    service_time_cv: float = 0.0
    """CV of service times for the queueing formula (0 = constant)."""
    burst_window_s: float = 600.0
    """Keep the capacity the largest offered load (rate x service time) of this window needed (0 = off)."""
    trend_window_s: float = 300.0
    """Fit the rate's linear trend over this window (0 = no trend)."""
    trend_damping: float = 0.5
    """Fraction of the fitted trend extrapolated over the horizon (0-1)."""
    lag_s: float = 30.0
    """Metric delay added to the start-up horizon (rate window / 2)."""
    seasonal: bool = True
    """Use the lease's daily shape once a full period of history exists."""
    season_period_s: float = 86400.0
    season_bucket_s: float = 600.0
    season_harmonics: int = 4
    season_history_periods: int = 7
    cycle_correlation: float = 0.6
    """Recurring load: when the lease's recent load history (the largest load per ``cycle_bucket_s``) repeats
    with a period, detrended autocorrelation at least this at its peak, the load the last two periods saw at the
    horizon is a forecast (``Cycle``; 0 = off)."""
    cycle_bucket_s: float = 60.0
    """Resolution of the recurring-load history."""
    cycle_history_s: float = 21600.0
    """Recurring-load history kept (periods up to half of it are found)."""
    cycle_min_period_s: float = 600.0
    """Shortest period looked for (shorter recurrences are the burst envelope's)."""
    cycle_tolerance_s: float = 60.0
    """How far a recurrence may drift from the period (each past period is searched this much either side)."""
    drain_s: float = 60.0
    """Backlog (pending requests) is drained within this time (0 = ignore the backlog)."""
    scale_down_window_s: float = 120.0
    """Scale down only to the largest target of this window."""
    scale_down_max_fraction: float = 0.5
    """At most this fraction of the replicas is removed per decision."""
    reactive_queue_factor: float = 1.0
    """No scale-down while the measured queue time exceeds this multiple of the target (0 = off)."""
    growth_window_s: float = 30.0
    """Demand = served rate + growth of the backlog over this window (0 = served rate only)."""
    panic_queue_factor: float = 100.0
    """Panic while the measured queue time exceeds this multiple of the target and requests are pending (0 = never)."""
    panic_growth: float = 2.0
    """In panic, at least this factor times the current replicas per decision (up to max)."""
    reactive_floor_factor: float = 1.1
    """While the queue time, over the whole floor window, exceeds this multiple of the target, the HPA's
    proportional rule on it is a floor (0 = off)."""
    reactive_floor_max_growth: float = 4.0
    """The reactive floor asks for at most this factor times the Ready replicas."""
    reactive_floor_window_s: float = 60.0
    """The reactive floor uses the smallest queue time and Ready count of this window: only a sustained excess
    raises it, sized on the fleet that produced it (0 = the current values)."""
    calibration_window_s: float = 1200.0
    """Time constant of the share of queue-time readings above the target; while more than
    ``calibration_grow_share`` of them are, the capacity model underestimates this lease's queueing and its demand
    is scaled up (0 = off)."""
    calibration_max: float = 4.0
    """Largest factor the calibration scales the demand by."""
    calibration_grow_share: float = 0.35
    """The headroom grows while the smoothed share of queue-time readings over the target is above this..."""
    calibration_relax_share: float = 0.2
    """...and relaxes towards 1 while it is below this (lower than ``calibration_grow_share``); in between it
    holds."""
    rate_window_s: float = 30.0
    """The request rate's ``rate()`` window: a one-second spike stays in the readings this long."""
    spike_roughness: float = 0.75
    """The arrivals are rough (spikes that come and go) when :func:`roughness` of the rate history exceeds this
    (1 = every reading's change is a spike entering or leaving the rate window; Poisson arrivals, steps and ramps
    stay under 0.15)."""
    spike_hold_s: float = 1800.0
    """While the arrivals are rough, scale down no lower than ``spike_hold_fraction`` x the largest target of
    this window (0 = off)."""
    spike_hold_fraction: float = 0.7
    """Fraction of that largest target the spike hold keeps."""
    envelope_trend_fit: float = 0.5
    """On a falling trend whose linear fit explains at least this share of the rate's variance over the trend window
    (R²), the burst envelope counts each past load at the level the fitted fall brings it to now: a lease in steady
    decline sheds the capacity of its earlier, higher level instead of holding it for the burst window. Bursty
    arrivals fit a line poorly and keep their envelope (0 = off)."""
    envelope_trend_half_share: float = 0.3
    """...and only where the fall is sustained: the rate's slope over each half of the trend window is at least this
    share of the whole window's. A step down fits a line for a while as it crosses the window, but its earlier
    half is flat: lowering the envelope there would scale the fleet down and, once the step has left the window and
    the line no longer fits, up again with the load unchanged."""
    one_off_hold_startups: float = 1.0
    """After a fall of the load that has not been seen to come back (within ``recurrence_memory_s``), the burst
    envelope spans only this many start-up delays instead of the whole burst window. Ski rental: holding idle
    replicas longer than a start-up delay costs more than starting them again would if the load came back, so a
    one-off shift (a flash crowd that ends, a step down) releases its capacity after one; load that has been seen to
    come back keeps the whole window (0 = always the whole window)."""
    recurrence_memory_s: float = 3600.0
    """How long a return of the load to a level it fell from marks the lease's bursts as recurring."""
    recurrence_share: float = 0.5
    """A fall: the offered load under this share of the burst envelope; a return: the load back over this share of
    the envelope it fell from (bursts whose peaks differ still count as coming back)."""


@dataclass(frozen=True)
class PredictiveObservation:
    """One lease at one instant, as the replay or the controller measures it from Prometheus."""

    now: float
    current_replicas: int
    """The scale's spec (ready + starting)."""
    ready_replicas: int
    starting_replicas: int
    min_replicas: int
    max_replicas: int
    request_rate_rps: float | None
    """Lease arrivals per second (success + failure counters, short ``rate()`` window); None = no data."""
    service_time_s: float | None
    """Mean compute time per request (compute-duration / success counters); None = unknown."""
    slots_per_replica: int
    """Requests a replica executes at once (instances x max batch size)."""
    startup_s: float
    """Measured pod creation-to-Ready delay."""
    queue_time_us: float | None = None
    """Lease mean queue time per request (queue-duration / success counters)."""
    pending_requests: float | None = None
    """Requests waiting in the lease's queues (sum of ``nv_inference_pending_request_count``)."""
    drainable_pending: float | None = None
    """The part of ``pending_requests`` the fleet can drain within ``drain_s`` (:func:`stuck_backlog`); None = all."""
    unmeasured_ready: int = 0
    """Ready pods without a request rate although Ready long enough to have one (:func:`unmeasured_ready`): the rate
    leaves their traffic out, so no scale-down is decided on it."""
    stagger: float = 0.0
    """How far into a cycle bucket, as a fraction in [0, 1), this lease looks for its load's period after the bucket
    closes: a controller gives its leases different ones, so that their searches (whose buckets all close at once)
    spread over the bucket's loops instead of all falling in one. 0: at the close."""


@dataclass(frozen=True)
class PredictiveState:
    """What the policy carries between decisions (persist it to survive restarts)."""

    rates: tuple[tuple[float, float, float], ...] = ()
    """(time, demand, offered load = demand x service time in busy slots) over the longest of the burst and trend
    windows."""
    pending: tuple[tuple[float, float], ...] = ()
    """(time, pending requests) samples over the growth window."""
    targets: tuple[tuple[float, int], ...] = ()
    """(time, capacity target or reactive floor) over the longer of the scale-down and spike-hold windows, only
    those larger than every later one (:func:`_push_max`): a window's largest is the first entry inside it."""
    service_time_s: float | None = None
    """Last known service time (kept through gaps in the counters)."""
    season: bytes = b""
    """Mean rate per completed season bucket, oldest first, ending at ``season_bucket_end``: float64 values as bytes
    (as ``cycle``: a week of 10-minute buckets is 8 KB, where a tuple of floats took 32 KB)."""
    season_bucket_end: float | None = None
    bucket_sum: float = 0.0
    bucket_n: int = 0
    season_fit: tuple[float, ...] = ()
    """The fitted daily shape, one value per bucket of a period (empty: not enough history)."""
    queue_times: tuple[tuple[float, float, float], ...] = ()
    """(time, measured queue time µs, Ready replicas) over the reactive floor's window."""
    since: float | None = None
    """Time of the first decision with data (the start of this state's memory, e.g. after a restart)."""
    over_share: float = 0.0
    """Smoothed share of queue-time readings above the target (time constant ``calibration_window_s``)."""
    headroom: float = 1.0
    """Factor the capacity model's demand is scaled by (>= 1), learnt from that share."""
    calibrated_at: float | None = None
    """Time of the last queue-time reading the calibration used."""
    fall_peak: float | None = None
    """The burst envelope's load when the offered load last fell under ``recurrence_share`` of it, until the load
    comes back (None: no fall open)."""
    recurred_at: float | None = None
    """When the offered load last came back over ``recurrence_share`` of a level it had fallen from."""
    cycle: bytes = b""
    """Largest offered load (busy slots) per completed ``cycle_bucket_s``, oldest first, ending at ``cycle_end``:
    float64 values as bytes (immutable, 8 bytes a bucket where a tuple of floats would take 32)."""
    cycle_end: float | None = None
    cycle_open: float = 0.0
    """Largest load of the open bucket so far."""
    cycle_period_s: float | None = None
    """The period found in ``cycle`` at the last search (None: none)."""
    cycle_search_at: float | None = None
    """When the period is looked for in the closed buckets (the observation's ``stagger`` after the last close;
    None: done)."""


_STATE_FIELDS = frozenset(f.name for f in fields(PredictiveState))


def _evolve(state: PredictiveState, **changes: Any) -> PredictiveState:
    """``dataclasses.replace`` for the state, without re-running its frozen ``__init__`` (one
    ``object.__setattr__`` per field, ~20 µs a copy; a decision makes one). The state has no
    ``__post_init__``, so copying its fields and replacing some gives the same value."""
    assert changes.keys() <= _STATE_FIELDS, sorted(changes.keys() - _STATE_FIELDS)
    new = object.__new__(PredictiveState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


@dataclass(frozen=True)
class PredictiveDecision:
    desired_replicas: int
    reason: PredictiveReason
    state: PredictiveState
    details: dict[str, float] = field(default_factory=dict)
    """Intermediate figures (rate, forecast, capacity target...) for ``explain``."""


# --------------------------------------------------------------------------------------- queueing


def violation_probability(rate_rps: float, replicas: np.ndarray, service_s: float, slots: int,
                          target_s: float, k: float) -> np.ndarray:
    """``P(queue time > target)`` per replica count when ``rate_rps`` is split evenly (Allen-Cunneen)."""
    mu_c = slots / service_s
    rho = rate_rps / (replicas * mu_c)
    gap = mu_c * (1.0 - np.minimum(rho, RHO_MAX))
    p = erlang_c(slots, np.minimum(rho, RHO_MAX)) * np.exp(-gap * target_s / k)
    out: np.ndarray = np.where(rho >= RHO_MAX, 1.0, p)
    return out


def replicas_needed(rate_rps: float, service_s: float, slots: int, params: PredictiveParams, limit: int) -> int:
    """Fewest replicas (up to ``limit``) that meet ``violation_target`` at ``rate_rps``; 0 for no load.

    :func:`violation_probability` falls as replicas are added, so the search starts just below the
    saturation point (utilisation ``RHO_MAX``) and walks up, in scalars: a decision costs a few Erlang
    recursions instead of one per possible fleet size.
    """
    if rate_rps <= 0:
        return 0
    limit = max(1, limit)
    if params.violation_target >= 1.0:
        return 1
    k = max(1e-6, (params.arrival_cv2 + params.service_time_cv**2) / 2.0)
    mu_c = slots / service_s
    target_s = params.target_queue_time_us / 1e6
    for n in range(max(1, math.floor(rate_rps / (mu_c * RHO_MAX)) - 1), limit + 1):
        rho = rate_rps / (n * mu_c)
        if rho >= RHO_MAX:
            continue
        r = max(0.0, rho)
        a = r * slots  # Erlang B by the stable recursion, then Erlang C (autoscaler.serving.erlang_c)
        b = 1.0
        for i in range(1, slots + 1):
            b = a * b / (i + a * b)
        wait = b / (1.0 - r * (1.0 - b))
        if wait * math.exp(-(mu_c * (1.0 - rho)) * target_s / k) <= params.violation_target:
            return n
    return limit


def wake_replicas_needed(rate_rps: float, state: PredictiveState, slots: int | None, params: PredictiveParams,
                         limit: int) -> int | None:
    """The replicas a lease at zero needs for the request rate seen in front of it (its wake value), as this
    algorithm sizes a lease (:func:`replicas_needed`, the rate scaled by the learnt headroom): from its last service
    time and its ``slots``; None when either is unknown (never measured: the lease is woken to its wake replicas)."""
    svc = state.service_time_s
    if not slots or svc is None or not (math.isfinite(svc) and svc > 0) or not math.isfinite(rate_rps):
        return None
    headroom = min(state.headroom, params.calibration_max) if params.calibration_window_s > 0 else 1.0
    return replicas_needed(rate_rps * max(1.0, headroom), svc, slots, params, limit)


def stuck_backlog(pending_by_pod: list[float], service_s: float | None, slots: int,
                  drain_s: float) -> tuple[float, list[bool]]:
    """Which pods hold a backlog that more replicas cannot drain, and the pending requests the fleet can drain.

    Each server queues its own requests (a Service spreads them over the pods; a pod's queue is not shared), so
    new replicas do not take a pod's backlog over: it drains at that pod's speed, ``slots / service_s``. A pod is
    *stuck* when

    * its pending requests take it longer than ``drain_s`` to serve (a small fleet overrun by a surge: one pod can
      hold minutes of work); only ``slots x drain_s / service_s`` of its backlog counts as drainable; or
    * it has more than one batch (``slots``) pending while another pod has none: every pod gets the same share of
      the arrivals, so the others' empty queues say the arrivals are within a pod's capacity and this backlog is
      older than the pods that now share the load (it came before they were Ready).

    A stuck pod's queue time (its requests waited for all the work ahead of them) tells nothing about the capacity
    the fleet needs now. Returns ``(drainable pending, stuck flag per pod)``; nothing is stuck without a service
    time or with ``drain_s`` 0."""
    if not service_s or service_s <= 0 or drain_s <= 0:
        return float(sum(pending_by_pod)), [False] * len(pending_by_pod)
    cap = slots * drain_s / service_s
    old = slots if pending_by_pod and min(pending_by_pod) < 1.0 else math.inf
    stuck = [p > cap or p > old for p in pending_by_pod]
    return float(sum(min(p, cap) for p in pending_by_pod)), stuck


BUSY_SHARE = 0.75
"""A pod that served at least this share of its speed (``slots / service_s``) over the long rate window was busy for
the whole window."""


def pod_queue_times_matter(stuck: list[bool], pending: list[float]) -> bool:
    """Whether :func:`queue_time_without` can answer other than the lease's own queue time: a pod is stuck, or one of
    several pods holds nothing (it may be idle beside busy ones). Adapters read the pods' rates only then."""
    return any(stuck) or (len(pending) > 1 and min(pending) < 1.0)


def queue_time_without(stuck: list[bool], queue_us_rate: list[float], success_rate: list[float],
                       pending: list[float], lease_queue_us: float | None, pod_rps: float | None) -> float | None:
    """The queue time (µs per request) of the fleet new replicas would join, from each pod's queue-duration and
    success rates over the long window (NaN: not measured yet, skipped), its pending requests and its stuck flag
    (:func:`stuck_backlog`).

    * None, no queue at all, when some pod served nothing all window and has nothing waiting, and every other pod
      measured served at its speed (``pod_rps``, :data:`BUSY_SHARE`) all window: arrivals are spread over every
      Ready pod, so the busy ones are working off backlogs from before the window while nothing reaches the fleet.
      As for a lease without traffic, there is no queue time (its requests waited minutes, for work no new replica
      can take over). A pod with a backlog only seconds old, scraped after a burst began while its idle neighbours
      were scraped before it, has not been busy all window; a pod that holds requests it does not serve (hung) is
      not idle.
    * Otherwise the request-weighted queue time of the pods that are not stuck, or the lease's own
      ``lease_queue_us`` when they served nothing."""
    if pod_rps:
        measured = [(ok, w) for ok, w in zip(success_rate, pending, strict=True) if ok == ok]
        idle = [ok == 0.0 and w < 1.0 for ok, w in measured]
        if any(idle) and not all(idle) and all(i or ok >= BUSY_SHARE * pod_rps
                                               for i, (ok, _w) in zip(idle, measured, strict=True)):
            return None
    if not any(stuck):
        return lease_queue_us
    queued = served = 0.0
    for s, q, ok in zip(stuck, queue_us_rate, success_rate, strict=True):
        if not s and ok == ok:
            queued += q if q == q else 0.0
            served += ok
    return queued / served if served > 0 else lease_queue_us


# --------------------------------------------------------------------------------------- forecast


_TIME, _RATE, _LOAD = itemgetter(0), itemgetter(1), itemgetter(2)
_N = itemgetter(1)
"""The count of a (time, replicas) history entry."""


SETTLE_RATE_WINDOWS = 2.0
"""A pod Ready for this many rate windows has been scraped at least twice inside one: it should have a request
rate."""


def unmeasured_ready(pods: Iterable[Pod], measured: Container[str], now: float, rate_window_s: float) -> int:
    """Running, Ready, not terminating pods Ready for over ``SETTLE_RATE_WINDOWS`` rate windows whose names are not in
    ``measured`` (those Prometheus gave a request rate for): :attr:`PredictiveObservation.unmeasured_ready`. A pod
    Ready for less has no rate yet by design."""
    settled = now - SETTLE_RATE_WINDOWS * rate_window_s
    return sum(1 for p in pods if p.ready and p.phase == PodPhase.RUNNING and not p.deleting
               and p.name not in measured and p.ready_transition_time is not None
               and p.ready_transition_time < settled)


def _since(history: tuple[tuple[float, ...], ...], cut: float) -> int:
    """Index of the first entry newer than ``cut`` in a history kept in time order."""
    return bisect_right(history, cut, key=_TIME)


def _trend_fit(rates: tuple[tuple[float, float, float], ...], now: float, window_s: float) -> tuple[float, float]:
    """Least-squares slope (per second) of the rate over the window and the share of the rate's variance the line
    explains (R², 0-1); (0, 0) with under 4 points or half a window."""
    pts = rates[_since(rates, now - window_s):]
    if len(pts) < 4 or pts[-1][0] - pts[0][0] < window_s / 2:
        return 0.0, 0.0
    n = len(pts)
    ts, rs, _ = zip(*pts, strict=True)
    t_mean, r_mean = sum(ts) / n, sum(rs) / n
    ds = list(map(sub, ts, repeat(t_mean)))
    es = list(map(sub, rs, repeat(r_mean)))
    num = sum(map(mul, ds, es))  # left to right, as a loop would add them
    den = sum(map(mul, ds, ds))
    if den <= 0:
        return 0.0, 0.0
    var = sum(map(mul, es, es))
    return num / den, (num * num / (den * var) if var > 0 else 0.0)


def _sustained_fall(rates: tuple[tuple[float, float, float], ...], now: float, slope: float, fit: float,
                   params: PredictiveParams) -> bool:
    """The rate falls along a line (R² at least ``envelope_trend_fit``) in both halves of the trend window."""
    if not (slope < 0 and params.envelope_trend_fit > 0 and fit >= params.envelope_trend_fit):
        return False
    half = params.trend_window_s / 2
    late, _ = _trend_fit(rates, now, half)
    early, _ = _trend_fit(rates[:_since(rates, now - half)], now - half, half)
    return max(late, early) <= params.envelope_trend_half_share * slope


def fit_season(history: Sequence[float] | np.ndarray, per_period: int, harmonics: int) -> tuple[float, ...]:
    """The daily shape from whole periods of bucket means: the mean and the first ``harmonics``
    daily harmonics of the FFT (Crane's approach, on the period's own frequency grid)."""
    periods = len(history) // per_period
    if periods < 1:
        return ()
    x = np.array(history[-periods * per_period:], dtype=np.float64)
    spec = np.fft.rfft(x)
    keep = np.zeros_like(spec)
    keep[0] = spec[0]
    for h in range(1, harmonics + 1):
        i = h * periods
        if i < spec.size:
            keep[i] = spec[i]
    y = np.fft.irfft(keep, n=x.size)[-per_period:]
    return tuple(float(v) for v in y)


def _season_ratio(fit: tuple[float, ...], end: float | None, now: float, horizon_s: float,
                  params: PredictiveParams) -> float:
    """Expected rate change (ratio, >= 0) from now to the horizon from the fitted daily shape ``fit`` whose last
    bucket ended at ``end``."""
    if not fit or end is None:
        return 1.0
    b = params.season_bucket_s
    n = len(fit)
    # fit[-1] is the bucket that ended at season_bucket_end; index by buckets since then
    def at(t: float) -> float:
        off = (t - end) / b
        i = math.floor(off) % n
        return fit[i]
    cur, fut = at(now), max(at(now + horizon_s * f) for f in (0.5, 1.0))
    if cur <= 0:
        return 1.0
    return max(0.0, fut / cur)


def _update_season(state: PredictiveState, now: float, rate: float, params: PredictiveParams) -> dict[str, Any]:
    """The season's fields after adding this decision's rate (the changes to the state)."""
    if not params.seasonal:
        return {}
    b = params.season_bucket_s
    end = state.season_bucket_end
    if end is None:
        return {"season_bucket_end": math.floor(now / b) * b, "bucket_sum": rate, "bucket_n": 1}
    if now < end + b:
        return {"bucket_sum": state.bucket_sum + rate, "bucket_n": state.bucket_n + 1}
    per = max(1, round(params.season_period_s / b))
    mean = state.bucket_sum / state.bucket_n if state.bucket_n else rate
    gaps = min(per, int((now - end) // b) - 1)
    season = np.concatenate((unpack(state.season), np.full(1 + gaps, mean)))[-per * params.season_history_periods:]
    new_end = end + b * (1 + gaps) if gaps < per else math.floor(now / b) * b
    fit = fit_season(season, per, params.season_harmonics) if season.size >= per else ()
    return {"season": season.tobytes(), "season_bucket_end": new_end, "bucket_sum": rate, "bucket_n": 1,
            "season_fit": fit}


def unpack(packed: bytes) -> np.ndarray:
    """A packed history (:attr:`PredictiveState.season`, :attr:`PredictiveState.cycle`) as an array of its bucket
    values (read-only, no copy)."""
    return np.frombuffer(packed, dtype=np.float64)


def find_period(history: np.ndarray, min_lag: int, min_correlation: float) -> int | None:
    """The period (in buckets) with which ``history`` repeats, or None: the first peak of its autocorrelation
    (after removing a linear trend) between ``min_lag`` and half the history (two whole periods) that reaches
    ``min_correlation``, rises at least that much above the lowest value before it, and is within 0.1 of the
    highest such peak (so a multiple of the period is not taken). A trend or a slow drift decays without such a
    peak and noise stays near zero; a square wave, a spike train or a cycle peaks at its period."""
    x = np.asarray(history, dtype=np.float64)
    n = x.size
    if min_lag < 1 or n < 2 * min_lag + 2:
        return None
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2
    y = x - x.mean()
    y -= (float(t @ y) / float(t @ t)) * t  # without its least-squares line
    var = float(y @ y)
    if var <= 1e-12 * max(1.0, float(x @ x)):
        return None
    f = np.fft.rfft(y, 2 * n)
    acf = np.fft.irfft(f * np.conj(f), 2 * n)[:n // 2 + 1]
    r = acf / (n - np.arange(acf.size)) / (var / n)  # unbiased: each lag's mean product over the variance
    lags = np.arange(min_lag, r.size - 1)
    peaks = lags[(r[lags] >= r[lags - 1]) & (r[lags] >= r[lags + 1]) & (r[lags] >= min_correlation)]
    if peaks.size == 0:
        return None
    best = float(r[peaks].max())
    for lag in peaks:
        if r[lag] >= best - 0.1 and r[lag] - float(r[1:lag + 1].min()) >= min_correlation:
            return int(lag)
    return None


def _update_cycle(state: PredictiveState, now: float, load: float, params: PredictiveParams,
                  stagger: float = 0.0) -> dict[str, Any]:
    """The recurring-load fields after this decision's load (the changes to the state); the period is looked for
    at the first decision ``stagger`` (a fraction of a bucket) or more after a bucket closes."""
    if params.cycle_correlation <= 0:
        return {}
    b = params.cycle_bucket_s
    end = state.cycle_end
    if end is None:
        return {"cycle_end": math.floor(now / b) * b, "cycle_open": load}
    if now < end + b:
        ch: dict[str, Any] = {"cycle_open": load} if load > state.cycle_open else {}
        if state.cycle_search_at is not None and now >= state.cycle_search_at:
            ch.update(_search(unpack(state.cycle), params))
        return ch
    keep = max(1, round(params.cycle_history_s / b))
    gaps = int((now - end) // b) - 1
    if gaps >= keep:  # away longer than the whole history: start again
        return {"cycle": b"", "cycle_end": math.floor(now / b) * b, "cycle_open": load, "cycle_period_s": None,
                "cycle_search_at": None}
    old = unpack(state.cycle)
    hist = np.concatenate((old, np.full(1 + gaps, state.cycle_open)))[-keep:]
    closed = end + b * (1 + gaps)
    ch = {"cycle": hist.tobytes(), "cycle_end": closed, "cycle_open": load}
    search_at = closed + min(max(stagger, 0.0), 0.99) * b
    ch.update(_search(hist, params) if now >= search_at else {"cycle_search_at": search_at})
    return ch


def _search(hist: np.ndarray, params: PredictiveParams) -> dict[str, Any]:
    """The period found in the bucket history (:func:`find_period`), and no search left to do."""
    lag = find_period(hist, math.ceil(params.cycle_min_period_s / params.cycle_bucket_s), params.cycle_correlation)
    return {"cycle_period_s": None if lag is None else lag * params.cycle_bucket_s, "cycle_search_at": None}


def _older_buckets(readings: Iterable[tuple[float, float]], start: float, bucket_s: float,
                   count: int) -> list[float]:
    """Older readings (time, value) as ``count`` buckets from ``start``: the largest finite one in each (negative
    ones count as 0); buckets before the first reading are left out, later empty ones take the previous bucket's
    value (as a state's own gaps do). Empty without a reading in range."""
    got = [-math.inf] * count
    for t, v in readings:
        i = math.floor((t - start) / bucket_s + 1e-9)
        if 0 <= i < count and math.isfinite(v) and v > got[i]:
            got[i] = max(0.0, v)
    first = next((i for i, v in enumerate(got) if v > -math.inf), None)
    if first is None:
        return []
    out = got[first:]
    for i in range(1, len(out)):
        if out[i] == -math.inf:
            out[i] = out[i - 1]
    return out


def seed_cycle(state: PredictiveState, loads: Iterable[tuple[float, float]],
               params: PredictiveParams) -> PredictiveState:
    """The recurring-load history completed with older readings of the lease's offered load (time, busy slots):
    Prometheus's record of it when the state is new (a restart, a failover, a lease first seen), so that a period
    the lease already has is known at once instead of after two more periods. Readings fill the buckets before the
    state's own (which are kept), the largest per bucket, up to ``cycle_history_s`` in all (:func:`_older_buckets`).
    The period is looked for again. Needs a first decision (the bucket grid); otherwise the state is returned as is."""
    if params.cycle_correlation <= 0 or state.cycle_end is None:
        return state
    b = params.cycle_bucket_s
    own = unpack(state.cycle)
    room = max(1, round(params.cycle_history_s / b)) - own.size
    if room <= 0:
        return state
    old = _older_buckets(loads, state.cycle_end - b * (own.size + room), b, room)
    if not old:
        return state
    hist = np.concatenate((np.array(old), own))
    return _evolve(state, cycle=hist.tobytes(), **_search(hist, params))


def seed_season(state: PredictiveState, means: Iterable[tuple[float, float]],
                params: PredictiveParams) -> PredictiveState:
    """The daily season completed with older readings of the lease's mean request rate per season bucket
    ((bucket start, req/s): Prometheus's record of it when a state starts without a season of its own, a lease the
    controller has not seen before) so that its daily shape is known at once instead of after a day. Readings fill
    the buckets before the state's own (which are kept), up to ``season_history_periods`` periods in all
    (:func:`_older_buckets`); the shape is fitted again. Needs a first decision (the bucket grid); otherwise the state is returned as is."""
    if not params.seasonal or state.season_bucket_end is None:
        return state
    b = params.season_bucket_s
    per = max(1, round(params.season_period_s / b))
    own = unpack(state.season)
    room = per * params.season_history_periods - own.size
    if room <= 0:
        return state
    old = _older_buckets(means, state.season_bucket_end - b * (own.size + room), b, room)
    if not old:
        return state
    season = np.concatenate((np.array(old), own))
    fit = fit_season(season, per, params.season_harmonics) if season.size >= per else ()
    return _evolve(state, season=season.tobytes(), season_fit=fit)


def _cycle_forecast(cycle: bytes, end: float | None, period_s: float, now: float, horizon_s: float,
                    params: PredictiveParams) -> tuple[float, float] | None:
    """What the lease's recurring pattern says of the load (busy slots) up to the horizon: for each of the last two
    periods, the largest load between ``now`` and ``now + horizon`` one (two) period(s) earlier, widened by
    ``cycle_tolerance_s`` either side. Returns (the smaller: a load that came both times, the larger: no higher load
    came either time), or None without a period."""
    if end is None:
        return None
    hist = unpack(cycle)
    b = params.cycle_bucket_s
    start = end - b * hist.size  # when the oldest bucket began
    got = []
    for k in (1, 2):
        lo = now - k * period_s - params.cycle_tolerance_s
        hi = now + horizon_s - k * period_s + params.cycle_tolerance_s
        i0, i1 = math.floor((lo - start) / b), min(hist.size, math.ceil((hi - start) / b))
        if i0 < 0 or i1 <= i0:
            return None
        got.append(float(hist[i0:i1].max()))
    return min(got), max(got)


# --------------------------------------------------------------------------------------- decision


def _sustained_queue(state: PredictiveState, obs: PredictiveObservation,
                     params: PredictiveParams) -> tuple[dict[str, Any], float | None, int]:
    """The reactive floor's inputs: the smallest queue time of its window and the smallest Ready count (the fleet
    that produced it: the queue time is a 1 m average, so right after pods become Ready it still shows the smaller
    fleet's backlog). ``None`` while the floor is off or its window is not covered yet. The first item is the
    changes to the state."""
    if params.reactive_floor_factor <= 0:
        return {}, None, 0
    if params.reactive_floor_window_s <= 0:
        return {}, obs.queue_time_us, obs.ready_replicas
    now, w = obs.now, params.reactive_floor_window_s
    qt = obs.queue_time_us
    if qt is None and obs.request_rate_rps == 0 and (obs.pending_requests or 0.0) < 0.5:
        qt = 0.0  # nothing arrives and nothing waits: nobody queues (not a missing reading), so no sustained excess
    samples = state.queue_times if qt is None else (*state.queue_times, (now, qt, float(obs.ready_replicas)))
    samples = samples[bisect_left(samples, now - w, key=_TIME):]
    changes = {"queue_times": samples}
    if not samples or now - samples[0][0] < 0.75 * w:
        return changes, None, 0
    return changes, min(map(_RATE, samples)), int(min(map(_LOAD, samples)))


_CALIBRATION_GROWTH = math.log(1.5)
"""Log of the headroom's growth per calibration window while the lease queues chronically."""


def _recurrence(state: PredictiveState, now: float, whole: tuple[tuple[float, float, float], ...], load: float,
                params: PredictiveParams) -> dict[str, Any]:
    """Falls and returns of the offered load against the envelope of the whole burst window (``whole``: its rate
    history): a fall opens when the load is under ``recurrence_share`` of the envelope (which it then remembers), and
    closes as a *return* once the load is back over that share of what it fell from. The new ``fall_peak`` and
    ``recurred_at``."""
    fall_peak, recurred_at = state.fall_peak, state.recurred_at
    if fall_peak is None:
        full = max(map(_LOAD, whole))
        if load < params.recurrence_share * full:
            fall_peak = full
    elif load > params.recurrence_share * fall_peak:
        fall_peak, recurred_at = None, now
    return {"fall_peak": fall_peak, "recurred_at": recurred_at}


def _push_max(history: tuple[tuple[float, int], ...], now: float, n: int) -> tuple[tuple[float, int], ...]:
    """Append ``(now, n)`` to a history of targets, dropping the entries it makes irrelevant: an older target no
    larger than a newer one is never the largest of a window that ends now. The largest of any window is then
    the first entry inside it, and a steady lease keeps one or two entries instead of 30 minutes of decisions."""
    keep = len(history)
    while keep and history[keep - 1][1] <= n:
        keep -= 1
    return (*history[:keep], (now, n))


def roughness(rates: tuple[tuple[float, float, float], ...], rate_window_s: float) -> float:
    """How much of the demand comes and goes in spikes: the readings' absolute successive changes over their sum,
    scaled so that isolated spikes give 1. A one-second spike of ``b`` requests moves the ``rate_window_s`` rate by
    ``b / W`` twice (in and out of the window) and stays in ``k = max(1, W / interval)`` readings, so spikes alone
    give ``2 / k`` before scaling. Poisson arrivals move it by a few per cent of the rate, a step or a ramp once or
    slowly: 0.02-0.15 at 5-200 req/s. 0 without demand or with fewer than two readings."""
    if len(rates) < 2:
        return 0.0
    demand: list[float] = list(map(_RATE, rates))
    total = sum(demand)
    if total <= 0:
        return 0.0
    moved: float = sum(map(abs, map(sub, demand[1:], demand)))
    interval = (rates[-1][0] - rates[0][0]) / (len(rates) - 1)
    k = max(1.0, rate_window_s / interval) if interval > 0 else 1.0
    return moved / total * k / 2.0


def _calibrate(state: PredictiveState, obs: PredictiveObservation, params: PredictiveParams,
               target: int) -> dict[str, Any]:
    """Learn the headroom: the share of queue-time readings above the target, smoothed over the calibration window;
    while it is over ``calibration_grow_share`` (the lease queues much of the time, not in episodes) the headroom
    grows by half per window; under ``calibration_relax_share`` it relaxes towards 1 four times slower.

    Only readings the model does not already explain count: while fewer replicas are Ready than its own capacity
    ``target`` (pods still starting on a rising load, or a maximum below what it asks for) a queue is expected, and
    a headroom learnt from it would outlast the episode (a ramp, a flash crowd's onset) or the overload by hours.
    Returns the changes to the state."""
    if params.calibration_window_s <= 0 or obs.queue_time_us is None:
        return {}
    if obs.ready_replicas < target:
        return {"calibrated_at": obs.now}
    last = state.calibrated_at
    w = params.calibration_window_s
    # a reading stands for the time since the previous one, at most a twentieth of the window: after a gap in the
    # readings (no traffic overnight) one reading is not a window's worth of evidence
    dt = 0.0 if last is None else min(max(0.0, obs.now - last), w / 20)
    over = 1.0 if obs.queue_time_us > params.target_queue_time_us else 0.0
    share = state.over_share + (1.0 - math.exp(-dt / w)) * (over - state.over_share)
    head = state.headroom
    if share > params.calibration_grow_share:
        head = min(params.calibration_max, head * math.exp(dt * _CALIBRATION_GROWTH / w))
    elif share < params.calibration_relax_share:
        head = max(1.0, head * math.exp(-dt * _CALIBRATION_GROWTH / (4 * w)))
    return {"over_share": share, "headroom": head, "calibrated_at": obs.now}


def _queue_over(obs: PredictiveObservation, factor: float, params: PredictiveParams) -> bool:
    """The measured queue time exceeds ``factor`` x the target (a factor of 0 switches the check off)."""
    return (factor > 0 and obs.queue_time_us is not None
            and obs.queue_time_us > factor * params.target_queue_time_us)


def _panic(obs: PredictiveObservation, params: PredictiveParams) -> bool:
    """A queue time over ``panic_queue_factor`` x the target with requests waiting now (where the server reports
    them): over an empty queue, a windowed queue time that high is the tail of a backlog that has just drained."""
    return (_queue_over(obs, params.panic_queue_factor, params)
            and (obs.pending_requests is None or obs.pending_requests >= 1.0))


def decide_predictive(obs: PredictiveObservation, state: PredictiveState,
                      params: PredictiveParams) -> PredictiveDecision:
    """One decision: desired replicas, the part that drove it, the new state."""
    now = obs.now
    lo, hi = obs.min_replicas, max(obs.min_replicas, obs.max_replicas)
    current = obs.current_replicas
    svc = obs.service_time_s if obs.service_time_s and obs.service_time_s > 0 else state.service_time_s
    pend_hist = state.pending
    pending_now = obs.pending_requests if params.growth_window_s > 0 else None  # the backlog's growth is tracked
    if pending_now is not None:
        pend_hist = (*state.pending[bisect_left(state.pending, now - params.growth_window_s, key=_TIME):],
                     (now, pending_now))
    if obs.request_rate_rps is None or svc is None or obs.request_rate_rps != obs.request_rate_rps:
        desired = min(hi, max(lo, current))
        reason = PredictiveReason.MISSING_DATA if desired == current else (
            PredictiveReason.TOO_FEW_REPLICAS if desired > current else PredictiveReason.TOO_MANY_REPLICAS)
        # the backlog's history goes on: when the first requests of a lease that never had traffic complete (its
        # service time is known from then), their backlog's growth so far is the demand
        return PredictiveDecision(desired, reason, _evolve(state, service_time_s=svc, pending=pend_hist))

    rate = max(0.0, obs.request_rate_rps)
    growth = 0.0
    if pending_now is not None:
        t0, p0 = pend_hist[0]
        if now - t0 >= params.growth_window_s / 2:
            growth = max(0.0, (pending_now - p0) / (now - t0))
    served = rate
    rate += growth
    keep_s = max(params.burst_window_s, params.trend_window_s)
    rates = (*state.rates[_since(state.rates, now - keep_s):], (now, rate, rate * svc))
    since = now if state.since is None else state.since
    # the new state's fields that change, set as they are computed; one copy of the state at the end
    ch: dict[str, Any] = {"rates": rates, "pending": pend_hist, "service_time_s": svc, "since": since}
    ch.update(_update_season(state, now, rate, params))
    ch.update(_update_cycle(state, now, rate * svc, params, obs.stagger))

    horizon = obs.startup_s + params.lag_s
    reason = PredictiveReason.CAPACITY
    lam = rate
    details: dict[str, float] = {"rate_rps": rate, "served_rps": served, "service_s": svc, "horizon_s": horizon}
    slope, fit = _trend_fit(rates, now, params.trend_window_s) if params.trend_window_s > 0 else (0.0, 0.0)
    period = ch.get("cycle_period_s", state.cycle_period_s) if params.cycle_correlation > 0 else None
    cyc = None
    if period is not None:
        details["cycle_period_s"] = period
        cyc = _cycle_forecast(ch.get("cycle", state.cycle), ch.get("cycle_end", state.cycle_end), period, now,
                              horizon, params)
    # burst envelope: the largest recent offered load, as a rate at today's service time; on a sustained fall, each
    # load lowered by the fall since it was seen
    if params.burst_window_s > 0:
        span = params.burst_window_s
        window = rates[_since(rates, now - span):]
        hold = params.one_off_hold_startups * obs.startup_s
        if 0 < hold < span:
            ch.update(_recurrence(state, now, window, rate * svc, params))
            recurred_at = ch["recurred_at"]
            if ch["fall_peak"] is not None and (recurred_at is None
                                                or now - recurred_at > params.recurrence_memory_s):
                span = hold  # a fall, and no load came back lately: taken as one-off
            elif cyc is not None and cyc[1] < params.recurrence_share * max(map(_LOAD, window)):
                span = hold  # the load recurs with a period, and neither of the last two came back this soon
                details["envelope_cycle_quiet"] = 1.0
            if span < params.burst_window_s:
                window = rates[_since(rates, now - span):]
        details["envelope_window_s"] = span
        if _sustained_fall(rates, now, slope, fit, params):
            fall = slope * svc  # busy slots per second
            peak = max(load + fall * (now - t) for t, _r, load in window)
            details["envelope_fall_rps_per_s"] = slope
        else:
            peak = max(map(_LOAD, window))
        details["envelope_busy_slots"] = peak
        env = peak / svc
        if env > lam * 1.0001:
            lam, reason = env, PredictiveReason.BURST_ENVELOPE
    # forecast (raises only)
    if params.trend_window_s > 0:
        details["trend_rps_per_s"] = slope
        details["trend_fit"] = fit
        f = rate + params.trend_damping * max(0.0, slope) * horizon
        if f > lam * 1.0001:
            lam, reason = f, PredictiveReason.TREND
    ratio = _season_ratio(ch.get("season_fit", state.season_fit),
                          ch.get("season_bucket_end", state.season_bucket_end), now, horizon, params)
    details["season_ratio"] = ratio
    if rate * ratio > lam * 1.0001:
        lam, reason = rate * ratio, PredictiveReason.SEASONAL
    if cyc is not None:
        details["cycle_forecast_rps"] = cyc[0] / svc
        if cyc[0] / svc > lam * 1.0001:
            lam, reason = cyc[0] / svc, PredictiveReason.CYCLE
    # backlog to drain
    backlog = obs.pending_requests if obs.drainable_pending is None else obs.drainable_pending
    if params.drain_s > 0 and backlog:
        extra = backlog / params.drain_s
        if extra > 0.05 * max(lam, 1e-9):
            lam, reason = lam + extra, PredictiveReason.BACKLOG
    details["forecast_rps"] = lam
    target = max(lo, replicas_needed(lam, svc, obs.slots_per_replica, params, hi + 1))  # hi + 1: more than max
    ch.update(_calibrate(state, obs, params, target))
    # a headroom learnt before the calibration was switched off or its maximum lowered does not apply beyond them
    headroom = (min(ch.get("headroom", state.headroom), params.calibration_max) if params.calibration_window_s > 0
                else 1.0)
    if headroom > 1.0001:
        details["headroom"] = headroom
        calibrated = max(lo, replicas_needed(lam * headroom, svc, obs.slots_per_replica, params, hi + 1))
        if calibrated > target:
            target, reason = calibrated, PredictiveReason.CALIBRATED
    details["capacity_target"] = float(target)
    details["slots"] = float(obs.slots_per_replica)
    kept = state.targets[_since(state.targets, now - max(params.scale_down_window_s, params.spike_hold_s)):]
    targets = _push_max(kept, now, target)

    desired = target
    # too little history to trust a lower target, or a queue time as chronic: right after a (re)start the burst
    # envelope and the scale-down window are empty, and the queue time still shows the backlog of the fleet the
    # controller found
    warm = now - since >= max(params.scale_down_window_s, params.burst_window_s)
    queue_changes, sustained, fleet = _sustained_queue(state, obs, params)
    ch.update(queue_changes)
    if (warm and sustained is not None and fleet > 0
            and sustained > params.reactive_floor_factor * params.target_queue_time_us):
        # the HPA's rule, ceil(ready x queue time / target), on a queue time sustained over the floor's window and
        # the fleet that produced it, as a floor: it catches what the queueing model misses (arrivals far
        # burstier than Poisson, service times it underestimates); held like a capacity target
        ratio = min(sustained / params.target_queue_time_us, params.reactive_floor_max_growth)
        floor = min(hi, math.ceil(fleet * ratio))
        details["reactive_floor"] = float(floor)
        targets = _push_max(targets, now, floor)
        if floor > desired:
            desired, reason = floor, PredictiveReason.REACTIVE_FLOOR
    if _panic(obs, params):
        grown = min(hi, math.ceil(current * params.panic_growth))
        if grown > desired:
            desired, reason = grown, PredictiveReason.PANIC
    if desired < current:
        held = max(map(_N, targets[_since(targets, now - params.scale_down_window_s):])) if warm else current
        spike_floor = 0
        if warm and params.spike_hold_s > 0:
            rough = roughness(rates, params.rate_window_s)
            details["roughness"] = rough
            if rough > params.spike_roughness:
                peak = max(map(_N, targets[_since(targets, now - params.spike_hold_s):]))
                spike_floor = math.ceil(params.spike_hold_fraction * peak)
                details["spike_floor"] = float(spike_floor)
        floor_frac = math.ceil(current * (1.0 - params.scale_down_max_fraction))
        if obs.unmeasured_ready > 0:
            desired, reason = current, PredictiveReason.PARTIAL_DATA
            details["unmeasured_ready"] = float(obs.unmeasured_ready)
        elif _queue_over(obs, params.reactive_queue_factor, params):
            desired, reason = current, PredictiveReason.REACTIVE_QUEUE_TIME
        elif spike_floor > max(held, target):
            desired, reason = min(current, spike_floor), PredictiveReason.SPIKE_HOLD
        elif held > target:
            desired, reason = min(current, held), PredictiveReason.SCALE_DOWN_HELD
        if desired < floor_frac:
            desired, reason = floor_frac, PredictiveReason.SCALE_DOWN_LIMIT
    elif target == current and obs.starting_replicas > 0 and reason == PredictiveReason.CAPACITY:
        reason = PredictiveReason.STARTUP_AWARE
    if desired < lo:
        desired, reason = lo, PredictiveReason.TOO_FEW_REPLICAS
    if desired > hi:
        desired, reason = hi, PredictiveReason.TOO_MANY_REPLICAS
    ch["targets"] = targets
    return PredictiveDecision(int(desired), reason, _evolve(state, **ch), details)


__all__ = [
    "SETTLE_RATE_WINDOWS",
    "PredictiveDecision",
    "PredictiveObservation",
    "PredictiveParams",
    "PredictiveReason",
    "PredictiveState",
    "decide_predictive",
    "find_period",
    "fit_season",
    "pod_queue_times_matter",
    "queue_time_without",
    "replicas_needed",
    "roughness",
    "seed_cycle",
    "seed_season",
    "stuck_backlog",
    "unmeasured_ready",
    "violation_probability",
]
