"""``oracle``: the cheapest replica schedule for its SLO level, knowing the future and the start-up delay.

Why: a table of policies says which is better, not how much better is possible. The oracle is the
bound: a schedule of Ready replicas ``n_t`` chosen with the whole trace in hand, paying for each pod
from its creation (``startup_s`` before it is Ready), judged by the same serving model.

How (exact for the problem it solves, a lower bound for the replay's; see docs/replay.md):

1. ``V[t, n]``: expected SLO violations in step ``t`` with ``n`` Ready replicas, from
   :class:`autoscaler.serving.FleetState` run with ``n`` replicas all along (each column is one
   replica of an ``n``-fleet receiving ``a_t / n``: a perfectly even, fluid split);
2. minimise ``sum_t (n_t + kappa V[t, n_t]) + startup_s * sum_t max(0, n_t - n_{t-1})`` exactly by
   dynamic programming over ``n`` in ``[min, max]`` (O(T * N) with prefix minima for the creation
   cost): ``n_t`` pod-seconds of Ready time plus ``startup_s`` per pod created. Scale-down is free
   and immediate (no draining);
3. ``kappa`` (GPU-seconds per violating request) is set so that the schedule without creation costs
   meets the SLO budget (``slo_budget``, default 1 % of requests over the target), by bisection.

Because the schedule minimises ``cost + kappa * violations`` over every schedule, no schedule has
both a lower cost and no more violations (else it would have a lower objective). A policy in the
replay is a schedule plus frictions the oracle does not pay (draining, uneven integer routing,
backlog carried across a change of ``n``), so a policy that beats the oracle on both numbers would
mean a bug; ``tests/replay`` checks it. The carried-backlog point is the one approximation:
``V[t, n]`` assumes the backlog of a fleet that always had ``n`` replicas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoscaler.replay.policies import ReplaySettings
from autoscaler.replay.sim import PolicyRun
from autoscaler.replay.workload import Workload
from autoscaler.serving import FleetState

FloatArray = npt.NDArray[np.float64]
CHUNK = 8192


def replica_range(settings: ReplaySettings) -> FloatArray:
    """The fleet sizes the oracle chooses from: the columns of :func:`violation_table`."""
    return np.arange(max(1, settings.min_replicas), settings.max_replicas + 1, dtype=np.float64)


def violation_table(workload: Workload, settings: ReplaySettings) -> tuple[npt.NDArray[np.float32],
                                                                           npt.NDArray[np.float32]]:
    """``V[t, j]`` violations and ``W[t, j]`` summed queue time (µs) of step t with ``n = min + j`` replicas."""
    ns = replica_range(settings)
    T, N = workload.steps, len(ns)
    V = np.empty((T, N), dtype=np.float32)
    W = np.empty((T, N), dtype=np.float32)
    fleet = FleetState(settings.serving, replicas=N, slo_target_us=settings.target_queue_time_us)
    for t0 in range(0, T, CHUNK):
        t1 = min(T, t0 + CHUNK)
        a = workload.counts[t0:t1, None] / ns[None, :]
        p = None if workload.prompt_per_request is None else a * workload.prompt_per_request[t0:t1, None]
        o = None if workload.output_per_request is None else a * workload.output_per_request[t0:t1, None]
        res = fleet.run(a, 1.0, p, o)
        V[t0:t1] = res.slo_violations * ns[None, :]
        W[t0:t1] = res.arrived * res.mean_queue_time_us * ns[None, :]
    return V, W


def _kappa_for_budget(V: npt.NDArray[np.float32], ns: FloatArray, budget: float) -> float:
    """Smallest kappa whose per-step optimum (no creation cost) meets the budget."""
    def viol(kappa: float) -> float:
        j = np.argmin(ns[None, :] + kappa * V, axis=1)
        return float(V[np.arange(V.shape[0]), j].sum())

    lo, hi = 1e-6, 1.0
    while viol(hi) > budget and hi < 1e12:
        hi *= 4
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if viol(mid) > budget:
            lo = mid
        else:
            hi = mid
    return hi


def schedule(V: npt.NDArray[np.float32], ns: FloatArray, kappa: float, startup_s: float,
             progress: Callable[[float], None] | None = None) -> npt.NDArray[np.int64]:
    """Exact DP: the column index per step minimising Ready pod-seconds + creations + kappa * violations.

    One step is a handful of in-place numpy operations on ``N`` values (no allocation): the loop over time
    is the cost, ~6 µs a step, 20 s for a week of seconds.
    """
    T, N = V.shape
    S = float(startup_s)
    idx = np.arange(N, dtype=np.float64)
    s_idx = S * idx
    D = np.empty((T, N), dtype=np.float64)
    D[0] = ns + kappa * V[0]
    cur = D[0].copy()
    up, down = np.empty(N), np.empty(N)
    every = max(1, T // 50)
    for c0 in range(1, T, CHUNK):
        kv = kappa * V[c0:min(T, c0 + CHUNK)]
        for k in range(kv.shape[0]):
            np.subtract(cur, s_idx, out=up)  # came from below: pay S per pod created
            np.minimum.accumulate(up, out=up)
            up += s_idx
            np.minimum.accumulate(cur[::-1], out=down[::-1])  # came from above: free
            np.minimum(up, down, out=cur)
            cur += ns
            cur += kv[k]
            D[c0 + k] = cur
            if progress is not None and (c0 + k) % every == 0:
                progress(0.5 * (c0 + k) / T)
    path = np.empty(T, dtype=np.int64)
    j = int(np.argmin(D[-1]))
    path[-1] = j
    create = S * np.maximum(0.0, idx[:, None] - idx[None, :])  # create[j, i]: from i Ready to j
    for t in range(T - 1, 0, -1):
        j = int(np.argmin(D[t - 1] + create[j]))
        path[t - 1] = j
        if progress is not None and t % every == 0:
            progress(0.5 + 0.5 * (T - t) / T)
    return path


@dataclass(frozen=True)
class FrontierBound:
    """The cheapest schedule's cost at a violation budget, bracketed with the exact DP (in the oracle's model).

    Every schedule with at most ``violation_fraction`` of the requests violating costs at least
    ``gpu_seconds_lower`` (a Lagrangian bound: for any kappa the DP's optimum ``g_k + kappa v_k`` is at most
    ``g + kappa v``, so ``g >= g_k + kappa (v_k - budget)``); the best schedule the DP found within the
    budget costs ``gpu_seconds_upper`` (inf: even the largest fleet exceeds the budget).
    """

    violation_fraction: float
    gpu_seconds_lower: float
    gpu_seconds_upper: float

    def verdict(self, gpu_seconds_limit: float) -> bool | None:
        """True: some schedule meets both limits; False: none does; None: the bracket straddles the limit."""
        if self.gpu_seconds_upper <= gpu_seconds_limit:
            return True
        return False if self.gpu_seconds_lower > gpu_seconds_limit else None


def cheapest_within(V: npt.NDArray[np.float32], ns: FloatArray, startup_s: float, total_requests: float,
                    violation_fraction: float, rel_tol: float = 0.01, max_schedules: int = 12,
                    known: tuple[float, float, float] | None = None,
                    progress: Callable[[float], None] | None = None) -> FrontierBound:
    """:class:`FrontierBound` at ``violation_fraction``: kappa bracketed by factors of 8, then bisected.

    ``known``: ``(kappa, violations, GPU-seconds)`` of a DP schedule already computed (the oracle's own), used
    as the first point instead of running it again. Each further point is one DP over the whole trace
    (seconds for an hour, ~20 s for a week), so the bracket stops at ``rel_tol``.
    """
    budget = violation_fraction * total_requests
    rows = np.arange(V.shape[0])
    lower, upper = 0.0, math.inf
    lo = hi = None  # kappas with violations over / within the budget

    def point(kappa: float, viol: float, gpu: float) -> bool:
        nonlocal lower, upper
        lower = max(lower, gpu + kappa * (viol - budget))
        if viol <= budget:
            upper = min(upper, gpu)
        return viol <= budget

    done = 0

    def evaluate(kappa: float) -> bool:
        nonlocal done
        path = schedule(V, ns, kappa, startup_s, None if progress is None else
                        (lambda f: progress(min(1.0, (done + f) / max_schedules))))
        done += 1
        n = ns[path]
        gpu = float(n.sum() + startup_s * np.maximum(0.0, np.diff(n, prepend=n[0])).sum())
        return point(kappa, float(V[rows, path].astype(np.float64).sum()), gpu)

    kappa = 1.0 if known is None else known[0]
    step = 8.0  # while one side of the bracket is missing, each step is the square of the last (8, 64, 4096...):
    # the oracle's own kappa may sit at its cap (no fleet meets its budget), decades from the checks' level
    for i in range(max_schedules):
        if upper < math.inf and upper - lower <= rel_tol * upper:
            break
        if lo is not None and hi is not None:
            kappa = math.sqrt(lo * hi)
        ok = point(*known) if (i == 0 and known is not None) else evaluate(kappa)
        if ok:
            hi = kappa
            if lo is None:
                if kappa < 1e-6:
                    break
                kappa, step = max(kappa / step, 1e-7), min(step * step, 1e6)
        else:
            lo = kappa
            if hi is None:
                if kappa > 1e12:
                    break
                kappa, step = min(kappa * step, 2e12), min(step * step, 1e6)
    return FrontierBound(violation_fraction, lower, upper)


def run_oracle(workload: Workload, settings: ReplaySettings, slo_budget: float = 0.01,
               progress: Callable[[float], None] | None = None,
               table: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None) -> PolicyRun:
    """The oracle's schedule and outcome, in the same shape as a policy's (``table``: a precomputed
    :func:`violation_table`)."""
    V, W = violation_table(workload, settings) if table is None else table
    ns = replica_range(settings)
    total = float(workload.counts.sum())
    kappa = _kappa_for_budget(V, ns, slo_budget * total)
    path = schedule(V, ns, kappa, settings.startup_s, progress)
    T = workload.steps
    rows = np.arange(T)
    n = ns[path]
    created = np.maximum(0.0, np.diff(n, prepend=n[0])).sum()
    viol = V[rows, path].astype(np.float64)
    return PolicyRun(
        policy="oracle", arrived=workload.counts.astype(np.float64), served=workload.counts.astype(np.float64),
        dropped=np.zeros(T), violations=viol, queue_wait_sum_us=W[rows, path].astype(np.float64),
        spec_replicas=n, ready_replicas=n, gpu_seconds=float(n.sum() + settings.startup_s * created),
        scale_events=int(np.count_nonzero(np.diff(n))), queued_end=0.0, end_s=float(T),
        extra={"kappa": kappa, "sloBudget": slo_budget})
