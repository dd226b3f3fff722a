"""One replay: a trace, several policies side by side, the oracle, and their summaries.

The entry point shared by ``autoscaler replay`` and ``benchmarks/replay_all.py``. Progress goes to a
callback (the CLI draws a bar on stderr when it is a terminal), never to stdout.

Policies are independent given the trace (each simulation is deterministic and seeded), so a long trace
replays them in worker processes, one per CPU, while this process computes the oracle: a week of 1 s steps
takes about as long as its slowest policy instead of the sum of all. The figures are the same either way.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

from autoscaler.config import ClusterPolicy
from autoscaler.replay.oracle import FrontierBound, cheapest_within, replica_range, run_oracle, violation_table
from autoscaler.replay.policies import PolicyContext, ReplaySettings, make_policy
from autoscaler.replay.report import checks_target, criteria, summarize
from autoscaler.replay.sim import PolicyRun, simulate
from autoscaler.replay.workload import Workload, build_workload

DEFAULT_POLICIES = ("hpa", "keda", "kpa", "default", "oracle")

Progress = Callable[[str, float], None]

PARALLEL_MIN_STEPS = 6 * 3600
"""With ``jobs=None``, a trace shorter than this many 1 s steps replays its policies one after another (they take
a second or two each; a worker process would cost about as much as it saves)."""

_SLOWEST_FIRST = ("default", "predictive", "hpa", "keda", "kpa")
"""Submission order for the workers (measured on the 7-day trace: default 152 s, hpa 72 s, keda 54 s, kpa 30 s)."""


def default_jobs() -> int:
    """Worker processes for a long replay: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class ReplayResult:
    workload: Workload
    runs: dict[str, PolicyRun]
    summaries: dict[str, dict[str, Any]]
    frontier: FrontierBound | None = None
    """The cheapest schedule at the violation level issue 8's checks ask for (None: not computed, i.e. no oracle
    or baselines, or `default` meets every check)."""

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {"trace": w.name,
                "workload": {"steps": w.steps, "requests": float(w.counts.sum()), "rateScale": w.rate_scale,
                             "peakRateRps": w.peak_rate_rps, "replicaCapacityRps": w.replica_capacity_rps,
                             "meanServiceSeconds": w.mean_service_s, "bucketSeconds": w.bucket_s},
                "policies": self.summaries,
                **({} if self.frontier is None else {"checksFrontier": self.checks_frontier()})}

    def checks_frontier(self) -> dict[str, Any] | None:
        """Whether any schedule meets issue 8's checks together, by the oracle's exact DP (None: not computed)."""
        target = checks_target(self.summaries)
        if self.frontier is None or target is None:
            return None
        f = self.frontier
        return {"violationFraction": target[0], "gpuSecondsLimit": target[1],
                # None, None: no schedule has so few violations (not even the largest fleet all along)
                "cheapestGpuSecondsLower": None if math.isinf(f.gpu_seconds_upper) else f.gpu_seconds_lower,
                "cheapestGpuSecondsUpper": None if math.isinf(f.gpu_seconds_upper) else f.gpu_seconds_upper,
                "feasible": f.verdict(target[1])}


def replay(trace: str | Path, policies: Sequence[str], settings: ReplaySettings, cluster_policy: ClusterPolicy, *,
           peak_replicas: float | None = 20, slo_budget: float = 0.01, duration_s: float | None = None,
           options: dict[str, float] | None = None, progress: Progress | None = None,
           frontier_always: bool = False, jobs: int | None = None) -> ReplayResult:
    """Replay ``trace`` through each policy (and the oracle) with the same arrivals.

    The checks' frontier (:attr:`ReplayResult.frontier`) is computed where `default` misses a check, or always
    with ``frontier_always`` (when hpa, keda, kpa and the oracle are replayed). ``jobs``: worker processes for the
    simulated policies (None: :func:`default_jobs` on traces of :data:`PARALLEL_MIN_STEPS` or more, else 1).
    """
    workload = build_workload(trace, settings.serving, peak_replicas=peak_replicas,
                              target_queue_time_us=settings.target_queue_time_us, seed=settings.seed,
                              duration_s=duration_s)
    ctx = PolicyContext(settings, cluster_policy, dict(options or {}))
    sims = [n for n in policies if n != "oracle"]
    if jobs is None:
        jobs = default_jobs() if workload.steps >= PARALLEL_MIN_STEPS else 1
    table = None  # the oracle's violation table, kept for the checks' frontier
    runs: dict[str, PolicyRun] = {}
    frontier = None
    if jobs > 1 and len(sims) > 1:
        with _Workers(workload, settings, ctx, sims, jobs, progress) as workers:
            if "oracle" in policies:
                runs["oracle"], table = _oracle(workload, settings, slo_budget, progress, workers.drain)
                if all(n in sims for n in BASELINES):
                    # this process is idle until the workers are done: bound the checks' frontier now (it needs
                    # only the baselines and the oracle), and keep it below if `default` misses a check
                    base = {n: summarize(workers.result(n)) for n in BASELINES}
                    target = checks_target({**base, "oracle": summarize(runs["oracle"])})
                    if target is not None:
                        frontier = _frontier(workload, settings, runs["oracle"], table, target[0], progress,
                                             workers.drain)
            done = {n: workers.result(n) for n in sims}
        runs = {n: runs["oracle"] if n == "oracle" else done[n] for n in policies}
    else:
        for name in policies:
            if name == "oracle":
                runs[name], table = _oracle(workload, settings, slo_budget, progress, None)
            else:
                runs[name] = _simulate_one(workload, settings, ctx, name,
                                           None if progress is None else partial(progress, name))
    summaries = {n: summarize(r) for n, r in runs.items()}
    target = checks_target(summaries)
    # only where `default` misses a check: where it meets them all it is itself the proof that they can be met
    missed = any(ok is False for _n, ok, _f in criteria(summaries))
    if table is None or target is None or not (missed or frontier_always):
        frontier = None
    elif frontier is None:
        frontier = _frontier(workload, settings, runs["oracle"], table, target[0], progress, None)
    return ReplayResult(workload, runs, summaries, frontier)


BASELINES = ("hpa", "keda", "kpa")
"""The policies issue 8's checks compare `default` with (besides the oracle)."""


def _frontier(workload: Workload, settings: ReplaySettings, oracle: PolicyRun, table: Table, violation_fraction: float,
              progress: Progress | None, drain: Callable[[], None] | None) -> FrontierBound:
    def cb(f: float) -> None:
        if drain is not None:
            drain()
        if progress is not None:
            progress("frontier", f)

    cb(0.0)
    out = cheapest_within(table[0], replica_range(settings), settings.startup_s, float(workload.counts.sum()),
                          violation_fraction,
                          known=(float(oracle.extra["kappa"]), float(oracle.violations.sum()), oracle.gpu_seconds),
                          progress=cb)
    cb(1.0)
    return out


def _simulate_one(workload: Workload, settings: ReplaySettings, ctx: PolicyContext, name: str,
                  progress: Callable[[float], None] | None) -> PolicyRun:
    t0 = time.perf_counter()
    run = simulate(workload, make_policy(name, ctx), settings, progress)
    run.wall_s = time.perf_counter() - t0
    return run


Table = tuple[Any, Any]


def _oracle(workload: Workload, settings: ReplaySettings, slo_budget: float, progress: Progress | None,
            drain: Callable[[], None] | None) -> tuple[PolicyRun, Table]:
    """The oracle's run and its violation table; ``drain`` relays the workers' progress meanwhile."""
    def cb(f: float) -> None:
        if drain is not None:
            drain()
        if progress is not None:
            progress("oracle", f)

    t0 = time.perf_counter()
    table = violation_table(workload, settings)
    run = run_oracle(workload, settings, slo_budget, cb if progress is not None or drain is not None else None, table)
    run.wall_s = time.perf_counter() - t0
    if progress is not None:
        progress("oracle", 1.0)  # the DP's own progress stops one step short
    return run, table


# -- worker processes ------------------------------------------------------------------------------------------

_WORKER: tuple[Workload, ReplaySettings, PolicyContext, Any] | None = None


def _init_worker(workload: Workload, settings: ReplaySettings, ctx: PolicyContext, progress_q: Any) -> None:
    global _WORKER
    _WORKER = (workload, settings, ctx, progress_q)


def _worker_run(name: str) -> PolicyRun:
    assert _WORKER is not None
    workload, settings, ctx, q = _WORKER
    last = -1.0

    def cb(f: float) -> None:
        nonlocal last
        if f >= 1.0 or f - last >= 0.01:  # at most ~100 messages a policy
            last = f
            q.put((name, f))

    return _simulate_one(workload, settings, ctx, name, cb)


class _Workers:
    """``names`` simulated in a pool of ``jobs`` processes, forked where the platform can (the workload is
    inherited, not copied through a pipe), slowest first. Their progress messages reach ``progress`` in this
    process whenever :meth:`drain` runs (:meth:`result` drains while it waits). Leaving the block by an exception
    (a policy's, or Ctrl-C) terminates the workers instead of waiting for them."""

    def __init__(self, workload: Workload, settings: ReplaySettings, ctx: PolicyContext, names: list[str], jobs: int,
                 progress: Progress | None) -> None:
        mpc = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        self._q = mpc.Queue()
        self._progress = progress
        order = sorted(names, key=lambda n: _SLOWEST_FIRST.index(n) if n in _SLOWEST_FIRST else len(_SLOWEST_FIRST))
        self._pool = mpc.Pool(min(jobs, len(names)), initializer=_init_worker,
                              initargs=(workload, settings, ctx, self._q))
        self._pending: dict[str, AsyncResult[PolicyRun]] = {n: self._pool.apply_async(_worker_run, (n,))
                                                             for n in order}

    def drain(self) -> None:
        while True:
            try:
                name, f = self._q.get_nowait()
            except queue_mod.Empty:
                return
            if self._progress is not None:
                self._progress(name, f)

    def result(self, name: str) -> PolicyRun:
        res = self._pending[name]
        while not res.ready():
            res.wait(0.2)
            self.drain()
        return res.get()  # a worker's exception is raised here

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._pool.close()
        else:
            self._pool.terminate()
        self._pool.join()
        self.drain()
        self._q.close()
