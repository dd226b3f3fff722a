"""Many HPA decisions at once: the scalar core (:func:`decide`) vectorised with numpy, bit for bit.

Why it exists: the controller decides every lease on every loop. The scalar core costs ~25 µs of
CPU per decision (Python loops over pods, samples and ~60 stabilisation recommendations), i.e.
~250 ms for 10,000 leases. Here the same arithmetic runs over flat arrays for all leases at once:

* pods, per-(metric, pod) samples, metrics and leases are flat arrays with an owner index; per-lease
  and per-metric sums are segment sums (``cumsum`` differences over sorted segments, exact in int64);
* the stabilisation state is padded 2-D arrays (recommendations: timestamps / replicas; scale
  events: timestamps / signed changes), grown by one column when a lease's row is full;
* leases sharing one :class:`Behavior` form a group; rate-limit policies loop per group and per
  policy, never per lease (in the controller every lease shares the cluster behaviour).

The arithmetic is the scalar code's, restated on arrays: int64 milli-values, floor division ``//``
where the scalar uses Python ``//``, float64 ratios, ``ceil`` capped at int32 max, ``trunc`` for
Go ``int32(float)``, strict time comparisons. ``tests/policy/test_batch.py`` checks equality of
whole :class:`Decision` values (state included) against :func:`decide` on random snapshots.

Two levels of API:

* :func:`decide_many` ``(snapshots, states, now) -> list[Decision]``: a drop-in for a loop over
  :func:`decide`, returning equal ``Decision`` objects;
* :func:`build_batch` -> :class:`BatchInput`, :func:`decide_batch` -> :class:`BatchOutput`, for
  callers that keep their leases as arrays (then only ``decide_batch`` runs per loop).

Falls back to the scalar :func:`decide` (per lease, inside :func:`decide_many`) for:

* duplicate pod names in one lease, or a pod-based metric with a value for a pod not in the lease's
  pod list (the scalar dict semantics of those cases are not worth vectorising);
* magnitudes that could break exact int64/float64 arithmetic: any replica count, state value,
  target or Object/External value with ``|x| >= 2**50``, or a metric whose per-lease sum of
  ``|value|`` or ``|request|`` reaches ``2**50`` milli-units;
* and, for the whole call, any integer that does not fit in int64 at all.

Everything else (all metric types and target types, errors, the legacy path, Disabled / Min / Max,
current 0 / out of bounds) is computed on arrays. The extra :class:`Decision` fields
(``conditions``, ``metric_name``, ``limited_by``...) are rebuilt from reason codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.policy.hpa import _metric_label, decide
from autoscaler.policy.replicas import MetricError, _positive, _requests, _whole_value
from autoscaler.policy.types import (
    FAILED_REASON,
    Behavior,
    Condition,
    Decision,
    DecisionState,
    MetricInput,
    MetricResult,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    PolicyType,
    Reason,
    Recommendation,
    ScaleEvent,
    ScalingRules,
    SelectPolicy,
    Snapshot,
    TargetType,
)

F8 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
_BOUND = 2**50  # magnitudes at or above this fall back to the scalar path (see module docstring)
_BIG = np.int64(2**62)

# Metric kinds.
K_ERROR = 0  # static error (message in BatchInput.errors)
K_UTIL = 1  # Resource / ContainerResource, Utilization
K_PLAIN = 2  # Resource AverageValue, Pods AverageValue
K_VALUE = 3  # Object / External, Value
K_AVERAGE = 4  # Object / External, AverageValue

# Error codes per metric row.
E_NONE = 0
E_STATIC = 1  # message in BatchInput.errors[row]
E_NO_METRICS = 2
E_NO_MATCH = 3
E_READY_PODS = 4
E_DEFERRED = 5  # request error of a Utilization metric, raised only once metrics exist: BatchInput.errors[row]
ERROR_MESSAGES = {
    E_NO_METRICS: "did not receive metrics for targeted pods (pods might be unready)",
    E_NO_MATCH: "no metrics returned matched known pods",
    E_READY_PODS: "unable to calculate ready pods: no pods returned by selector while calculating replica count",
}

# Decision paths per lease.
P_NORMAL = 0
P_DISABLED = 1
P_TOO_MANY = 2
P_TOO_FEW = 3
P_INVALID = 4

# Reason codes (index into REASONS).
REASONS: tuple[Reason, ...] = (
    Reason.DESIRED_WITHIN_RANGE, Reason.SCALE_UP_LIMIT, Reason.SCALE_DOWN_LIMIT, Reason.TOO_MANY_REPLICAS,
    Reason.TOO_FEW_REPLICAS, Reason.SCALE_UP_STABILIZED, Reason.SCALE_DOWN_STABILIZED, Reason.READY_FOR_NEW_SCALE,
)
R_DWR, R_SUL, R_SDL, R_TMR, R_TFR, R_SUS, R_SDS, R_READY = range(8)
_MESSAGES = {
    R_DWR: "the desired count is within the acceptable range",
    R_SUL: "the desired replica count is increasing faster than the maximum scale rate",
    R_SDL: "the desired replica count is decreasing faster than the maximum scale rate",
    R_TMR: "the desired replica count is more than the maximum replica count",
    R_TFR: "the desired replica count is less than the minimum replica count",
    R_SUS: "recent recommendations were lower than current one, applying the lowest recent recommendation",
    R_SDS: "recent recommendations were higher than current one, applying the highest recent recommendation",
    R_READY: "recommended size matches current size",
}


# ------------------------------------------------------------------------------------------- arrays


@dataclass(slots=True)
class BatchInput:
    """All leases of one decision round as flat arrays (L leases, P pods, M metrics, S samples).

    Pods, metrics and samples are sorted by their owner (lease, resp. metric row). ``samples`` hold
    one entry per (pod-based metric, pod of its lease), in pod order. The recommendation arrays must
    already hold the HPA's initial recommendation ``(now, current)`` for never-decided leases.
    """

    behaviors: tuple[Behavior, ...]
    group: I8  # [L] index into behaviors
    now: F8  # [L]
    current: I8  # [L]
    status: I8  # [L]
    min_replicas: I8  # [L]
    max_replicas: I8  # [L]
    pod_lease: I8  # [P]
    pod_ignored: B1  # [P] deleting or Failed
    pod_pending: B1  # [P]
    pod_running_ready: B1  # [P] Running and Ready=True
    pod_start: F8  # [P] NaN = no start time
    pod_ready: npt.NDArray[np.int8]  # [P] -1 no Ready condition, 0 / 1
    pod_transition: F8  # [P] last readiness transition (0.0 when unknown)
    metric_lease: I8  # [M]
    metric_pos: I8  # [M] position in the lease's metric list
    metric_kind: npt.NDArray[np.int8]  # [M] K_*
    metric_cpu: B1  # [M] the CPU readiness rules apply
    metric_target: I8  # [M] milli (percent for Utilization)
    metric_value: I8  # [M] Object / External value, milli
    metric_error: npt.NDArray[np.int8]  # [M] E_STATIC / E_DEFERRED when errors[row] is set, else E_NONE
    sample_offsets: I8  # [M + 1] segment of samples per metric row
    sample_pod: I8  # [S] global pod index
    sample_value: I8  # [S] milli
    sample_present: B1  # [S]
    sample_time: F8  # [S] NaN = no timestamp (then "now")
    sample_window: F8  # [S]
    sample_request: I8  # [S] the pod's request, Utilization metrics
    rec_time: F8  # [L, C]
    rec_replicas: I8  # [L, C]
    rec_count: I8  # [L]
    event_time: F8  # [L, E]
    event_change: I8  # [L, E]
    event_count: I8  # [L]
    errors: dict[int, str] = field(default_factory=dict)  # metric row -> static / deferred message


@dataclass(slots=True)
class BatchOutput:
    """Results of :func:`decide_batch`; per-lease arrays [L], per-metric arrays [M]."""

    desired: I8
    path: npt.NDArray[np.int8]  # P_*
    reason: npt.NDArray[np.int8]  # R_* (P_NORMAL)
    stabilize_reason: npt.NDArray[np.int8]
    limit_reason: npt.NDArray[np.int8]
    metric_replicas: I8  # max over metric proposals, clamped at 0 (P_NORMAL)
    raw_replicas: I8  # the same before the clamp (P_INVALID message)
    stabilized: I8
    name_pos: I8  # metric position that set metric_replicas, -1 if none
    invalid: I8  # count of failed metrics
    first_error_pos: I8  # position of the first failed metric, -1 if none
    proposed: I8  # [M]
    metric_ok: B1  # [M]
    metric_error: npt.NDArray[np.int8]  # [M] E_*
    usage: F8  # [M] natural units
    utilization: I8  # [M] percent (Utilization metrics)
    rec_time: F8  # [L, C'] new state
    rec_replicas: I8
    rec_count: I8
    rec_slot: I8  # [L] column written (P_NORMAL), -1 if none
    event_time: F8
    event_change: I8
    event_count: I8
    event_slot: I8  # [L] column written, -1 if no scale event


# --------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class _Group:
    legacy: bool
    up: ScalingRules | None
    down: ScalingRules | None
    params: tuple[float, ...]  # see _GROUP_FIELDS


_GROUP_FIELDS = ("legacy", "up_window", "down_window", "tol_up", "tol_down", "cpu_init", "delay", "legacy_window",
                 "longest_up", "longest_down")


def _group_params(b: Behavior) -> tuple[float, ...]:
    up, down = b.scale_up, b.scale_down
    return (
        float(b.legacy),
        float(up.stabilization_window_s) if up else 0.0,
        float(down.stabilization_window_s) if down else 0.0,
        b.tolerances.scale_up, b.tolerances.scale_down,
        b.cpu_initialization_period_s, b.initial_readiness_delay_s, float(b.legacy_downscale_window_s),
        float(max((p.period_s for p in up.policies), default=0)) if up else 0.0,
        float(max((p.period_s for p in down.policies), default=0)) if down else 0.0,
    )


def _seg_sum(x: I8, offsets: I8) -> I8:
    """Exact per-segment sums of int64 values (segments may be empty)."""
    cs = np.zeros(x.size + 1, dtype=np.int64)
    np.cumsum(x, out=cs[1:])
    out: I8 = cs[offsets[1:]] - cs[offsets[:-1]]
    return out


def _ceil_i32(x: F8) -> I8:
    out: I8 = np.where(x > INT32_MAX, float(INT32_MAX), np.ceil(x)).astype(np.int64)
    return out


def _last_true(mask: B1) -> I8:
    """Index of the last True per row, -1 if none."""
    if mask.shape[1] == 0:
        return np.full(mask.shape[0], -1, dtype=np.int64)
    rev = mask[:, ::-1]
    idx = mask.shape[1] - 1 - np.argmax(rev, axis=1)
    out: I8 = np.where(rev.any(axis=1), idx, -1).astype(np.int64)
    return out


def _write(times: F8, values: I8, count: I8, slot: I8, rows: B1, now: F8, new: I8) -> tuple[F8, I8, I8, I8]:
    """Upstream bookkeeping: overwrite ``slot`` when >= 0, else append; grows the arrays when full."""
    L, C = times.shape
    append = rows & (slot < 0)
    need = int((count[append] + 1).max()) if append.any() else 0
    if need > C:
        grow = need - C
        times = np.concatenate([times, np.zeros((L, grow))], axis=1)
        values = np.concatenate([values, np.zeros((L, grow), dtype=np.int64)], axis=1)
    else:
        times = times.copy()
        values = values.copy()
    col = np.where(slot >= 0, slot, count)
    r = np.flatnonzero(rows)
    times[r, col[r]] = now[r]
    values[r, col[r]] = new[r]
    count = count + append
    written: I8 = np.where(rows, col, -1)
    return times, values, count, written


def _policy_limits(rules: ScalingRules, up: bool, cur: I8, now: F8, et: F8, ec: I8, ev: B1) -> I8:
    """``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithScalingRules`` on rows."""
    if rules.select_policy == SelectPolicy.DISABLED:
        return cur
    use_min = rules.select_policy == SelectPolicy.MIN
    if up:
        result = np.full(cur.shape, INT32_MAX if use_min else INT32_MIN, dtype=np.int64)
    else:
        result = np.full(cur.shape, INT32_MIN if use_min else INT32_MAX, dtype=np.int64)
    starts: dict[int, I8] = {}
    for p in rules.policies:
        start = starts.get(p.period_s)
        if start is None:
            inside = ev & (et > (now - p.period_s)[:, None])
            ups = np.where(inside & (ec > 0), ec, 0).sum(axis=1)
            downs = np.where(inside & (ec < 0), -ec, 0).sum(axis=1)
            start = starts[p.period_s] = cur - ups + downs
        if p.type == PolicyType.PODS:
            proposed = start + p.value if up else start - p.value
        elif up:
            proposed = np.ceil(start.astype(np.float64) * (1 + float(p.value) / 100)).astype(np.int64)
        else:
            proposed = np.trunc(start.astype(np.float64) * (1 - float(p.value) / 100)).astype(np.int64)
        if up:
            result = np.minimum(result, proposed) if use_min else np.maximum(result, proposed)
        else:
            result = np.maximum(result, proposed) if use_min else np.minimum(result, proposed)
    return result


# ----------------------------------------------------------------------------------------- compute


def decide_batch(inp: BatchInput) -> BatchOutput:
    """One HPA reconcile for every lease of ``inp``; same arithmetic as :func:`decide`."""
    with np.errstate(all="ignore"):  # garbage lanes (masked out below) may divide by zero or overflow
        return _decide_batch(inp)


def _decide_batch(inp: BatchInput) -> BatchOutput:
    L = inp.now.size
    groups = [_Group(b.legacy, b.scale_up, b.scale_down, _group_params(b)) for b in inp.behaviors]
    gp = np.array([g.params for g in groups], dtype=np.float64).reshape(len(groups), len(_GROUP_FIELDS))
    per = {name: gp[inp.group, i] if L else np.zeros(0) for i, name in enumerate(_GROUP_FIELDS)}
    legacy = per["legacy"] > 0
    now, cur, st, mn, mx = inp.now, inp.current, inp.status, inp.min_replicas, inp.max_replicas
    tol_lo = 1.0 - per["tol_down"]
    tol_hi = 1.0 + per["tol_up"]

    disabled = (cur == 0) & (mn != 0)
    too_many = ~disabled & (cur > mx)
    too_few = ~disabled & ~too_many & (cur < mn)
    active = ~(disabled | too_many | too_few)

    # ---- per (metric, pod) samples: the grouping of replica_calculator.groupPods
    ml = inp.metric_lease
    M = ml.size
    off = inp.sample_offsets
    seg_len = np.diff(off)
    sm = np.repeat(np.arange(M), seg_len)
    sp = inp.sample_pod
    sl = ml[sm]
    ignored = inp.pod_ignored[sp]
    pending = inp.pod_pending[sp] & ~ignored
    candidate = ~ignored & ~pending
    missing = candidate & ~inp.sample_present
    have = candidate & inp.sample_present
    start = inp.pod_start[sp]
    ready = inp.pod_ready[sp]
    transition = inp.pod_transition[sp]
    now_s = now[sl]
    no_info = (ready < 0) | np.isnan(start)
    initialising = start + per["cpu_init"][sl] > now_s
    ts = np.where(np.isnan(inp.sample_time), now_s, inp.sample_time)
    unready_init = (ready != 1) | (ts < transition + inp.sample_window)
    unready_late = (ready == 0) & (start + per["delay"][sl] > transition)
    cpu_unready = have & inp.metric_cpu[sm] & (no_info | np.where(initialising, unready_init, unready_late))
    ready_s = have & ~cpu_unready
    unready_s = pending | (have & cpu_unready)

    val, req = inp.sample_value, inp.sample_request
    tgt = inp.metric_target
    n_ready = _seg_sum(ready_s.astype(np.int64), off)
    n_missing = _seg_sum(missing.astype(np.int64), off)
    n_unready = _seg_sum(unready_s.astype(np.int64), off)
    total = _seg_sum(np.where(ready_s, val, 0), off)
    req_total = _seg_sum(np.where(ready_s, req, 0), off)
    fallback = np.maximum(100, tgt)[sm]
    missing_fill = _seg_sum(np.where(missing, req * fallback // 100, 0), off)
    missing_req = _seg_sum(np.where(missing, req, 0), off)
    unready_req = _seg_sum(np.where(unready_s, req, 0), off)

    # ---- per metric row
    kind = inp.metric_kind
    m_cur = cur[ml]
    m_lo, m_hi = tol_lo[ml], tol_hi[ml]
    util_k = kind == K_UTIL
    pod_k = util_k | (kind == K_PLAIN)
    err = inp.metric_error.copy()  # E_NONE / E_STATIC / E_DEFERRED so far
    deferred = err == E_DEFERRED
    err[deferred] = E_NONE
    live = active[ml] & (err == E_NONE)  # the lease computes metrics and this one has no static error
    plive = live & pod_k
    err[plive & (n_ready == 0)] = E_NO_METRICS
    err[plive & (n_ready > 0) & deferred] = E_DEFERRED
    err[(err == E_NONE) & plive & util_k & (req_total == 0)] = E_NO_MATCH

    n = np.maximum(n_ready, 1)
    ftgt = tgt.astype(np.float64)
    avg = np.where(total < 0, np.trunc(total / n), total // n).astype(np.int64)
    utilization = (total * 100) // np.where(req_total == 0, 1, req_total)
    ratio = np.where(util_k, utilization / ftgt, avg / ftgt)
    usage = np.where(util_k, (total // n) / 1000.0, avg / 1000.0)

    scale_up_unready = (n_unready > 0) & (ratio > 1.0)
    has_missing = n_missing > 0
    simple = ~scale_up_unready & ~has_missing
    within = (m_lo <= ratio) & (ratio <= m_hi)
    prop_simple = np.where(within, m_cur, _ceil_i32(ratio * n_ready))
    add_missing = has_missing & (ratio != 1.0)
    fill_low = has_missing & (ratio < 1.0)
    new_n = n_ready + np.where(add_missing, n_missing, 0) + np.where(scale_up_unready, n_unready, 0)
    new_total = total + np.where(fill_low, n_missing * tgt, 0)
    new_avg = np.where(new_total < 0, np.trunc(new_total / new_n), new_total // np.maximum(new_n, 1))
    new_total_u = total + np.where(fill_low, missing_fill, 0)
    new_req = req_total + np.where(add_missing, missing_req, 0) + np.where(scale_up_unready, unready_req, 0)
    new_util = (new_total_u * 100) // np.where(new_req == 0, 1, new_req)
    err[(err == E_NONE) & util_k & plive & ~simple & (new_req == 0)] = E_NO_MATCH
    new_ratio = np.where(util_k, new_util / ftgt, new_avg.astype(np.int64) / ftgt)
    keep = ((m_lo <= new_ratio) & (new_ratio <= m_hi)) | ((ratio < 1.0) & (new_ratio > 1.0)) \
        | ((ratio > 1.0) & (new_ratio < 1.0))
    n2 = _ceil_i32(new_ratio * new_n)
    guard = ((new_ratio < 1.0) & (n2 > m_cur)) | ((new_ratio > 1.0) & (n2 < m_cur))
    proposed = np.where(simple, prop_simple, np.where(keep | guard, m_cur, n2))

    # Object / External
    value = inp.metric_value
    fvalue = value.astype(np.float64)
    v_ratio = value / ftgt
    v_within = (m_lo <= v_ratio) & (v_ratio <= m_hi)
    n_pods = np.bincount(inp.pod_lease, minlength=L).astype(np.int64)
    ready_pods = np.bincount(inp.pod_lease, weights=inp.pod_running_ready, minlength=L).astype(np.int64)
    value_k = kind == K_VALUE
    err[live & value_k & (m_cur != 0) & ~v_within & (n_pods[ml] == 0)] = E_READY_PODS
    prop_value = np.where(m_cur != 0, np.where(v_within, m_cur, _ceil_i32(v_ratio * ready_pods[ml])),
                          _ceil_i32(v_ratio))
    m_st = st[ml]
    denom = ftgt * m_st.astype(np.float64)
    a_ratio = np.where(denom != 0, fvalue / np.where(denom != 0, denom, 1.0), np.inf)
    a_within = (m_lo <= a_ratio) & (a_ratio <= m_hi)
    prop_avg = np.where(a_within, m_st, _ceil_i32(v_ratio))
    per_pod = np.where(m_st != 0, np.ceil(value / np.where(m_st != 0, m_st, 1)), fvalue)
    proposed = np.select([value_k, kind == K_AVERAGE], [prop_value, prop_avg], proposed)
    usage = np.select([value_k, kind == K_AVERAGE], [fvalue / 1000.0, per_pod / 1000.0], usage)
    ok = live & (err == E_NONE)

    # ---- per lease: computeReplicasForMetrics
    K = int(inp.metric_pos.max()) + 1 if M else 1
    prop2 = np.zeros((L, K), dtype=np.int64)
    ok2 = np.zeros((L, K), dtype=bool)
    bad2 = np.zeros((L, K), dtype=bool)
    prop2[ml, inp.metric_pos] = proposed
    ok2[ml, inp.metric_pos] = ok
    bad2[ml, inp.metric_pos] = ~ok
    replicas = np.zeros(L, dtype=np.int64)
    name_pos = np.full(L, -1, dtype=np.int64)
    for k in range(K):
        take = ok2[:, k] & ((replicas == 0) | (prop2[:, k] > replicas))
        replicas = np.where(take, prop2[:, k], replicas)
        name_pos = np.where(take, k, name_pos)
    invalid = bad2.sum(axis=1).astype(np.int64)
    first_error = np.where(bad2.any(axis=1), np.argmax(bad2, axis=1), -1).astype(np.int64)
    n_metrics = np.bincount(ml, minlength=L).astype(np.int64)
    failed = active & ((n_metrics == 0) | (invalid >= n_metrics) | ((invalid > 0) & (replicas < cur)))
    normal = active & ~failed
    desired = np.where(replicas > 0, replicas, 0)

    # ---- stabilisation (behaviour and legacy)
    rt, rr, rc = inp.rec_time, inp.rec_replicas, inp.rec_count
    C = rt.shape[1]
    rvalid = np.arange(C)[None, :] < rc[:, None]
    up_cut = (now - per["up_window"])[:, None]
    down_cut = (now - per["down_window"])[:, None]
    up_rec = np.minimum(desired, np.where(rvalid & (rt > up_cut), rr, _BIG).min(axis=1, initial=_BIG))
    down_rec = np.maximum(desired, np.where(rvalid & (rt > down_cut), rr, -_BIG).max(axis=1, initial=-_BIG))
    stab_b = np.minimum(np.maximum(cur, up_rec), down_rec)
    leg_cut = (now - per["legacy_window"])[:, None]
    old_l = rvalid & (rt < leg_cut)
    stab_l = np.maximum(desired, np.where(rvalid & ~old_l, rr, -_BIG).max(axis=1, initial=-_BIG))
    old = np.where(legacy[:, None], old_l, rvalid & (rt < up_cut) & (rt < down_cut))
    stabilized = np.where(legacy, stab_l, stab_b)
    moved = stabilized != desired
    s_reason = np.where(moved, np.where(~legacy & (desired >= cur), R_SUS, R_SDS), R_READY).astype(np.int8)

    # ---- rate limits (behaviour): per group, per policy
    et, ec, ecount = inp.event_time, inp.event_change, inp.event_count
    evalid = np.arange(et.shape[1])[None, :] < ecount[:, None]
    up_limit = cur.copy()
    down_limit = cur.copy()
    for gi, g in enumerate(groups):
        if g.legacy or g.up is None or g.down is None:
            continue
        rows = np.flatnonzero((inp.group == gi) & normal & (stabilized != cur))
        if rows.size == 0:
            continue
        args = (cur[rows], now[rows], et[rows], ec[rows], evalid[rows])
        up_limit[rows] = _policy_limits(g.up, True, *args)
        down_limit[rows] = _policy_limits(g.down, False, *args)
    final = stabilized.copy()
    l_reason = np.full(L, R_DWR, dtype=np.int8)
    # behaviour path
    lim_up = np.maximum(up_limit, cur)
    allowed_up = np.where(mx > lim_up, lim_up, mx)
    reason_up = np.where(mx > lim_up, R_SUL, R_TMR)
    lim_down = np.minimum(down_limit, cur)
    allowed_down = np.where(mn < lim_down, lim_down, mn)
    reason_down = np.where(mn < lim_down, R_SDL, R_TFR)
    cut_up = ~legacy & (stabilized > cur) & (stabilized > allowed_up)
    cut_down = ~legacy & (stabilized < cur) & (stabilized < allowed_down)
    final = np.where(cut_up, allowed_up, np.where(cut_down, allowed_down, final))
    l_reason = np.where(cut_up, reason_up, np.where(cut_down, reason_down, l_reason)).astype(np.int8)
    # legacy path
    leg_up = np.trunc(np.maximum(2.0 * cur.astype(np.float64), 4.0)).astype(np.int64)
    leg_allowed = np.where(mx > leg_up, leg_up, mx)
    leg_reason = np.where(mx > leg_up, R_SUL, R_TMR)
    low = legacy & (stabilized < mn)
    high = legacy & ~low & (stabilized > leg_allowed)
    final = np.where(low, mn, np.where(high, leg_allowed, final))
    l_reason = np.where(low, R_TFR, np.where(high, leg_reason, l_reason)).astype(np.int8)
    reason = np.where(final != stabilized, l_reason, np.where(moved, s_reason, l_reason)).astype(np.int8)

    out_desired = np.select([disabled, too_many, too_few, failed], [0, mx, mn, cur], final).astype(np.int64)
    path = np.select([disabled, too_many, too_few, failed], [P_DISABLED, P_TOO_MANY, P_TOO_FEW, P_INVALID],
                     P_NORMAL).astype(np.int8)

    # ---- new state
    old_idx = _last_true(old)
    new_rt, new_rr, new_rc, rec_slot = _write(rt, rr, rc, old_idx, normal, now, desired)
    rescale = ~legacy & (out_desired != cur)
    up_dir = out_desired > cur
    longest = np.where(up_dir, per["longest_up"], per["longest_down"])
    same_dir = (ec > 0) == up_dir[:, None]
    ev_old = _last_true(evalid & same_dir & (et < (now - longest)[:, None]))
    new_et, new_ec, new_ecount, ev_slot = _write(et, ec, ecount, ev_old, rescale, now, out_desired - cur)

    return BatchOutput(
        desired=out_desired, path=path, reason=reason, stabilize_reason=s_reason, limit_reason=l_reason,
        metric_replicas=desired, raw_replicas=replicas, stabilized=stabilized, name_pos=name_pos, invalid=invalid,
        first_error_pos=first_error, proposed=proposed.astype(np.int64), metric_ok=ok, metric_error=err,
        usage=usage, utilization=utilization.astype(np.int64), rec_time=new_rt, rec_replicas=new_rr,
        rec_count=new_rc, rec_slot=rec_slot, event_time=new_et, event_change=new_ec, event_count=new_ecount,
        event_slot=ev_slot,
    )


# ------------------------------------------------------------------------------------------- build


def _classify(m: MetricInput, pods: tuple[Pod, ...]) -> tuple[int, int, str | None]:
    """(kind, target, static error) in the order ``compute_metric`` checks things."""
    if m.error is not None:
        return K_ERROR, 0, m.error
    t = m.target
    try:
        if m.type in (MetricType.RESOURCE, MetricType.CONTAINER_RESOURCE):
            if t.type == TargetType.UTILIZATION:
                if t.average_utilization is None or t.average_utilization <= 0:
                    raise MetricError("target averageUtilization must be a positive integer")
                kind, target = K_UTIL, t.average_utilization
            elif t.type == TargetType.AVERAGE_VALUE:
                kind, target = K_PLAIN, _positive(t.average_value_milli, "averageValue")
            else:
                raise MetricError(f"invalid target type {t.type} for a {m.type} metric")
        elif m.type == MetricType.PODS:
            if t.type != TargetType.AVERAGE_VALUE:
                raise MetricError(f"invalid target type {t.type} for a Pods metric")
            kind, target = K_PLAIN, _positive(t.average_value_milli, "averageValue")
        elif m.type in (MetricType.OBJECT, MetricType.EXTERNAL):
            _whole_value(m)
            if t.type == TargetType.VALUE:
                return K_VALUE, _positive(t.value_milli, "value"), None
            if t.type == TargetType.AVERAGE_VALUE:
                return K_AVERAGE, _positive(t.average_value_milli, "averageValue"), None
            raise MetricError(f"invalid target type {t.type} for an {m.type} metric")
        else:
            raise MetricError(f"unknown metric source type {m.type}")
        if not pods:
            raise MetricError("no pods returned by selector while calculating replica count")
        return kind, target, None
    except MetricError as exc:
        return K_ERROR, 0, str(exc)


def _resource_values(m: MetricInput) -> tuple[dict[str, int], dict[str, PodSample]]:
    """``replicas._pod_metrics`` for Resource / ContainerResource metrics, with fewer Python calls."""
    values: dict[str, int] = {}
    by_pod: dict[str, PodSample] = {}
    container = m.container
    for s in m.samples:
        by_pod[s.pod] = s
        conts = s.containers_milli
        if conts is not None:
            if container:
                v = conts.get(container)
                if v is not None:
                    values[s.pod] = v
            elif conts and None not in conts.values():
                values[s.pod] = sum(conts.values())  # type: ignore[arg-type]
        elif s.value_milli is not None:
            values[s.pod] = s.value_milli
    return values, by_pod


def _fast_requests(pods: tuple[Pod, ...], resource: str) -> list[int] | None:
    """Per-pod requests summed over all containers; None when some is missing (then ``_requests`` says why)."""
    out: list[int] = []
    for pod in pods:
        reqs = pod.requests_milli.get(resource, {})
        total = 0
        for c in pod.containers:
            v = reqs.get(c)
            if v is None:
                return None
            total += v
        out.append(total)
    return out


def _fits(*xs: int) -> bool:
    return all(-_BOUND < x < _BOUND for x in xs)


_PHASE_CODES = {PodPhase.RUNNING: 1, PodPhase.PENDING: 2, PodPhase.FAILED: 3}
_TS = attrgetter("timestamp")
_REPLICAS = attrgetter("replicas")
_CHANGE = attrgetter("change")
_NAME = attrgetter("name")


def _padded(counts: list[int], items: Sequence[tuple[Any, ...]], t_get: Any, v_get: Any,
            extra: int) -> tuple[F8, I8, I8]:
    L = len(counts)
    cnt = np.array(counts, dtype=np.int64)
    C = (int(cnt.max()) if L else 0) + extra
    times = np.zeros((L, C))
    values = np.zeros((L, C), dtype=np.int64)
    rows = np.repeat(np.arange(L), cnt)
    starts = np.cumsum(cnt) - cnt
    cols = np.arange(rows.size) - np.repeat(starts, cnt)
    n = rows.size
    times[rows, cols] = np.fromiter(map(t_get, chain.from_iterable(items)), dtype=np.float64, count=n)
    values[rows, cols] = np.fromiter(map(v_get, chain.from_iterable(items)), dtype=np.int64, count=n)
    return times, values, cnt


@dataclass(frozen=True, slots=True)
class StateArrays:
    """The stabilisation state of L leases as padded arrays (see :class:`BatchInput`)."""

    rec_time: F8
    rec_replicas: I8
    rec_count: I8
    event_time: F8
    event_change: I8
    event_count: I8

    @classmethod
    def of(cls, out: BatchOutput) -> StateArrays:
        """The new state of a batch, to feed into the next round's :func:`build_batch` (same leases, same order)."""
        return cls(out.rec_time, out.rec_replicas, out.rec_count, out.event_time, out.event_change, out.event_count)


def build_batch(snapshots: Sequence[Snapshot], states: Sequence[DecisionState] | None,
                now: float | None = None, carried: StateArrays | None = None) -> tuple[BatchInput, B1]:
    """Flatten snapshots and states into a :class:`BatchInput`; also returns the fallback mask [L].

    A caller that keeps the state as arrays between rounds passes ``carried`` (e.g.
    ``StateArrays.of(previous_output)``) and ``states=None``; the state objects are then not read.

    Leases flagged in the mask are present in the arrays but must be decided by :func:`decide`
    (see the module docstring). Raises ``OverflowError`` if some integer does not fit in int64.
    """
    L = len(snapshots)
    group_of: dict[int, int] = {}
    by_value: dict[Behavior, int] = {}
    behaviors: list[Behavior] = []
    group = np.empty(L, dtype=np.int64)
    nows = np.empty(L)
    ints = np.empty((L, 4), dtype=np.int64)
    fallback = np.zeros(L, dtype=bool)
    pod_lease: list[int] = []
    pods_flat: list[Pod] = []
    m_lease: list[int] = []
    m_pos: list[int] = []
    m_kind: list[int] = []
    m_cpu: list[bool] = []
    m_target: list[int] = []
    m_value: list[int] = []
    m_err: list[int] = []
    errors: dict[int, str] = {}
    seg: list[int] = [0]
    s_pod: list[int] = []
    s_val: list[int | None] = []
    s_time: list[float] = []
    s_win: list[float] = []
    s_req: list[int] = []
    rec_counts: list[int] = []
    rec_lists: list[tuple[Recommendation, ...]] = []
    ev_lists: list[tuple[ScaleEvent, ...]] = []
    nan = math.nan
    n_samples = 0
    if carried is None and states is None:
        raise ValueError("build_batch needs states or carried state arrays")
    no_state = DecisionState(())
    for i, snap in enumerate(snapshots):
        state = no_state if states is None else states[i]
        t = snap.now if now is None else now
        nows[i] = t
        b = snap.behavior
        gi = group_of.get(id(b))
        if gi is None:
            gi = by_value.get(b)
            if gi is None:
                gi = by_value[b] = len(behaviors)
                behaviors.append(b)
            group_of[id(b)] = gi
        group[i] = gi
        cur = snap.current_replicas
        ints[i] = (cur, snap.status_replicas, snap.min_replicas, snap.max_replicas)
        if not _fits(cur, snap.status_replicas, snap.min_replicas, snap.max_replicas):
            fallback[i] = True
        if carried is None:
            recs = state.recommendations
            if recs is None:
                recs = (Recommendation(t, cur),)
            rec_lists.append(recs)
            rec_counts.append(len(recs))
            ev_lists.append(state.scale_events)
        pods = snap.pods
        first_pod = len(pods_flat)
        pods_flat.extend(pods)
        pod_lease.extend([i] * len(pods))
        names: list[str] | None = None
        name_set: set[str] = set()
        for pos, m in enumerate(snap.metrics):
            kind, target, error = _classify(m, pods)
            row = len(m_lease)
            m_lease.append(i)
            m_pos.append(pos)
            m_target.append(target)
            cpu = False
            value = 0
            code = E_NONE
            if error is not None:
                errors[row] = error
                code = E_STATIC
            elif kind == K_VALUE or kind == K_AVERAGE:
                value = m.value_milli or 0
            else:
                cpu = m.resource == "cpu" and m.type != MetricType.PODS
                if m.type == MetricType.PODS:  # what _pod_metrics does for non-resource metrics
                    values = {x.pod: x.value_milli for x in m.samples if x.value_milli is not None}
                    by_pod: dict[str, PodSample] = {}
                else:
                    values, by_pod = _resource_values(m)
                if names is None:
                    names = list(map(_NAME, pods))
                    name_set = set(names)
                    if len(name_set) != len(names):
                        fallback[i] = True
                vals = [values.get(n) for n in names]
                if not name_set.issuperset(values):
                    fallback[i] = True  # a value for a pod the lease does not know
                s_val.extend(vals)
                s_pod.extend(range(first_pod, first_pod + len(pods)))
                if cpu:
                    for n in names:
                        s = by_pod.get(n)
                        if s is None:
                            s_time.append(nan)
                            s_win.append(0.0)
                        else:
                            s_time.append(nan if s.timestamp is None else s.timestamp)
                            s_win.append(s.window_s)
                else:
                    s_time.extend([nan] * len(pods))
                    s_win.extend([0.0] * len(pods))
                if kind == K_UTIL:
                    try:
                        fast = _fast_requests(pods, m.resource) if m.container is None else None
                        if fast is not None:
                            s_req.extend(fast)
                        else:
                            reqs = _requests(pods, m.resource, m.container)
                            s_req.extend([reqs[n] for n in names])
                    except MetricError as exc:
                        errors[row] = str(exc)
                        code = E_DEFERRED
                        s_req.extend([0] * len(pods))
                else:
                    s_req.extend([0] * len(pods))
                n_samples += len(pods)
            seg.append(n_samples)
            m_kind.append(kind)
            m_cpu.append(cpu)
            m_value.append(value)
            m_err.append(code)

    codes = _PHASE_CODES
    pod_phase = np.fromiter((codes.get(p.phase, 0) for p in pods_flat), dtype=np.int8, count=len(pods_flat))
    pod_deleting = np.array([p.deleting for p in pods_flat], dtype=bool)
    ready_raw = [p.ready for p in pods_flat]
    pod_ready = np.array([-1 if r is None else int(r) for r in ready_raw], dtype=np.int8)
    present = np.array([v is not None for v in s_val], dtype=bool)
    if carried is None:
        rec_time, rec_replicas, rec_count = _padded(rec_counts, rec_lists, _TS, _REPLICAS, 1)
        event_time, event_change, event_count = _padded([len(e) for e in ev_lists], ev_lists, _TS, _CHANGE, 1)
    else:
        rec_time, rec_replicas, rec_count = carried.rec_time, carried.rec_replicas, carried.rec_count
        event_time, event_change, event_count = carried.event_time, carried.event_change, carried.event_count
    inp = BatchInput(
        behaviors=tuple(behaviors), group=group, now=nows,
        current=ints[:, 0].copy(), status=ints[:, 1].copy(), min_replicas=ints[:, 2].copy(),
        max_replicas=ints[:, 3].copy(),
        pod_lease=np.array(pod_lease, dtype=np.int64),
        pod_ignored=pod_deleting | (pod_phase == _PHASE_CODES[PodPhase.FAILED]),
        pod_pending=pod_phase == _PHASE_CODES[PodPhase.PENDING],
        pod_running_ready=(pod_phase == _PHASE_CODES[PodPhase.RUNNING]) & (pod_ready == 1),
        pod_start=np.array([nan if p.start_time is None else p.start_time for p in pods_flat], dtype=np.float64),
        pod_ready=pod_ready,
        pod_transition=np.array([0.0 if p.ready_transition_time is None else p.ready_transition_time
                                 for p in pods_flat], dtype=np.float64),
        metric_lease=np.array(m_lease, dtype=np.int64), metric_pos=np.array(m_pos, dtype=np.int64),
        metric_kind=np.array(m_kind, dtype=np.int8), metric_cpu=np.array(m_cpu, dtype=bool),
        metric_target=np.array(m_target, dtype=np.int64), metric_value=np.array(m_value, dtype=np.int64),
        metric_error=np.array(m_err, dtype=np.int8), sample_offsets=np.array(seg, dtype=np.int64),
        sample_pod=np.array(s_pod, dtype=np.int64),
        sample_value=np.array([0 if v is None else v for v in s_val], dtype=np.int64), sample_present=present,
        sample_time=np.array(s_time, dtype=np.float64), sample_window=np.array(s_win, dtype=np.float64),
        sample_request=np.array(s_req, dtype=np.int64),
        rec_time=rec_time, rec_replicas=rec_replicas, rec_count=rec_count,
        event_time=event_time, event_change=event_change, event_count=event_count, errors=errors,
    )
    fallback |= _out_of_bounds(inp)
    return inp, fallback


def _out_of_bounds(inp: BatchInput) -> B1:
    """Leases whose magnitudes could break exact int64 / float64 arithmetic (see module docstring)."""
    L = inp.now.size
    bad = np.zeros(L, dtype=bool)
    ml = inp.metric_lease
    np.logical_or.at(bad, ml, (np.abs(inp.metric_target) >= _BOUND) | (np.abs(inp.metric_value) >= _BOUND))
    absval = _seg_sum(np.abs(inp.sample_value), inp.sample_offsets)
    absreq = _seg_sum(np.abs(inp.sample_request), inp.sample_offsets)
    np.logical_or.at(bad, ml, (absval >= _BOUND) | (absreq >= _BOUND) | (absval < 0) | (absreq < 0))
    bad |= (np.abs(inp.rec_replicas) >= _BOUND).any(axis=1) | (np.abs(inp.event_change) >= _BOUND).any(axis=1)
    return bad


# ----------------------------------------------------------------------------------------- decisions


_DISABLED = Condition("ScalingActive", False, Reason.SCALING_DISABLED,
                      "scaling is disabled since the replica count of the target is zero")
_ABOVE_MAX = "Current number of replicas above Spec.MaxReplicas"
_BELOW_MIN = "Current number of replicas below Spec.MinReplicas"
_TOO_MANY = Condition("ScalingLimited", True, Reason.TOO_MANY_REPLICAS, _ABOVE_MAX)
_TOO_FEW = Condition("ScalingLimited", True, Reason.TOO_FEW_REPLICAS, _BELOW_MIN)
_ABLE = {r: Condition("AbleToScale", True, REASONS[r], _MESSAGES[r]) for r in (R_SUS, R_SDS, R_READY)}
_LIMITED = {(s, r): Condition("ScalingLimited", s, REASONS[r], _MESSAGES[r]) for s in (False, True) for r in _MESSAGES}


def _replace(seq: tuple[Any, ...], slot: int, item: Any) -> tuple[Any, ...]:
    if slot >= len(seq):
        return (*seq, item)
    return (*seq[:slot], item, *seq[slot + 1:])


def decide_many(snapshots: Sequence[Snapshot], states: Sequence[DecisionState],
                now: float | None = None) -> list[Decision]:
    """``[decide(s, st, now) for s, st in zip(snapshots, states)]``, computed on arrays."""
    if not snapshots:
        return []
    try:
        inp, fallback = build_batch(snapshots, states, now)
    except OverflowError:
        return [decide(s, st, now) for s, st in zip(snapshots, states, strict=True)]
    return to_decisions(inp, decide_batch(inp), snapshots, states, fallback, now)


def to_decisions(inp: BatchInput, out: BatchOutput, snapshots: Sequence[Snapshot],
                 states: Sequence[DecisionState], fallback: B1, now: float | None = None) -> list[Decision]:
    """Rebuild the scalar :class:`Decision` values from a batch (fallback leases via :func:`decide`)."""
    desired = out.desired.tolist()
    path = out.path.tolist()
    reason = out.reason.tolist()
    s_reason = out.stabilize_reason.tolist()
    l_reason = out.limit_reason.tolist()
    metric_replicas = out.metric_replicas.tolist()
    raw = out.raw_replicas.tolist()
    stabilized = out.stabilized.tolist()
    name_pos = out.name_pos.tolist()
    invalid = out.invalid.tolist()
    first_error = out.first_error_pos.tolist()
    rec_slot = out.rec_slot.tolist()
    ev_slot = out.event_slot.tolist()
    proposed = out.proposed.tolist()
    ok = out.metric_ok.tolist()
    merr = out.metric_error.tolist()
    usage = out.usage.tolist()
    util = out.utilization.tolist()
    kind = inp.metric_kind.tolist()
    nows = inp.now.tolist()
    fb = fallback.tolist()
    errors = inp.errors
    active: dict[str, Condition] = {}
    decisions: list[Decision] = []
    row = 0
    for i, snap in enumerate(snapshots):
        n_m = len(snap.metrics)
        first_row = row
        row += n_m
        state = states[i]
        if fb[i]:
            decisions.append(decide(snap, state, now))
            continue
        t = nows[i]
        cur = snap.current_replicas
        d = desired[i]
        p = path[i]
        recs = state.recommendations
        if recs is None:
            recs = (Recommendation(t, cur),)
        events = state.scale_events
        if ev_slot[i] >= 0:
            events = _replace(events, ev_slot[i], ScaleEvent(t, d - cur))
        if p == P_DISABLED:
            decisions.append(Decision(0, _DISABLED.reason, _DISABLED.message, (), DecisionState(recs, events),
                                      (_DISABLED,), current_replicas=cur))
            continue
        if p == P_TOO_MANY or p == P_TOO_FEW:
            cond = _TOO_MANY if p == P_TOO_MANY else _TOO_FEW
            decisions.append(Decision(d, cond.reason, cond.message, (), DecisionState(recs, events), (cond,),
                                      current_replicas=cur,
                                      limited_by="maxReplicas" if p == P_TOO_MANY else "minReplicas"))
            continue
        results: list[MetricResult] = []
        for r in range(first_row, row):
            if ok[r]:
                k = kind[r]
                results.append(MetricResult(proposed[r], usage[r], util[r] if k == K_UTIL else None))
            else:
                e = merr[r]
                results.append(MetricResult(None, error=errors[r] if e == E_STATIC or e == E_DEFERRED
                                            else ERROR_MESSAGES[e]))
        res = tuple(results)
        if p == P_INVALID:
            fe = first_error[i]
            if fe >= 0:
                f_reason: str = FAILED_REASON[snap.metrics[fe].type]
                detail = f"unable to compute {_metric_label(snap, fe)}: {results[fe].error}"
            else:
                f_reason, detail = Reason.FAILED_GET_RESOURCE_METRIC, "no metrics configured"
            inv = invalid[i]
            msg = f"invalid metrics ({inv} invalid out of {n_m}), first error is: {detail}"
            if inv and raw[i] < cur and inv < n_m:
                msg += " (not scaling down while a metric is failing)"
            decisions.append(Decision(cur, f_reason, msg, res, DecisionState(recs, events),
                                      (Condition("ScalingActive", False, f_reason, msg),), metric_replicas=None,
                                      current_replicas=cur))
            continue
        m_rep = metric_replicas[i]
        recs = _replace(recs, rec_slot[i], Recommendation(t, m_rep))
        name = _metric_label(snap, name_pos[i]) if name_pos[i] >= 0 else ""
        act = active.get(name)
        if act is None:
            act = active[name] = Condition(
                "ScalingActive", True, Reason.VALID_METRIC_FOUND,
                f"the HPA was able to successfully calculate a replica count from {name}")
        stab = stabilized[i]
        lr = l_reason[i]
        rr = reason[i]
        limited_by = REASONS[rr] if d != stab or stab != m_rep else ""
        message = _MESSAGES[rr]
        if rr == R_DWR:
            if m_rep > cur:
                message = f"{name} above target"
            elif m_rep < cur:
                message = "All metrics below target"
        decisions.append(Decision(
            d, REASONS[rr], message, res, DecisionState(recs, events),
            (_ABLE[s_reason[i]], act, _LIMITED[(d != stab, lr)]), metric_replicas=m_rep, stabilized_replicas=stab,
            metric_name=name, limited_by=limited_by, current_replicas=cur))
    return decisions

