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
import pickle
import queue as queue_mod
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from autoscaler.config import ClusterPolicy
from autoscaler.replay.oracle import FrontierBound, cheapest_within, replica_range, run_oracle, violation_table
from autoscaler.replay.policies import PolicyContext, ReplaySettings, make_policy
from autoscaler.replay.report import BASELINES, checks_target, criteria, summarize
from autoscaler.replay.sim import PolicyRun, simulate
from autoscaler.replay.workload import Workload, build_workload

DEFAULT_POLICIES = ("hpa", "keda", "kpa", "default", "oracle")

Progress = Callable[[str, float], None]
Table = tuple[Any, Any]
"""The oracle's violation table (:func:`~autoscaler.replay.oracle.violation_table`)."""

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
           frontier_always: bool = False, jobs: int | None = None,
           variants: dict[str, dict[str, float]] | None = None) -> ReplayResult:
    """Replay ``trace`` through each policy (and the oracle) with the same arrivals.

    The checks' frontier (:attr:`ReplayResult.frontier`) is computed where `default` misses a check, or always
    with ``frontier_always`` (when hpa, keda, kpa and the oracle are replayed). ``jobs``: worker processes for the
    simulated policies (None: :func:`default_jobs` on traces of :data:`PARALLEL_MIN_STEPS` or more, else 1).
    ``variants``: more runs of `default`, each under its label with its own options over ``options`` (a sweep of
    one knob: ``autoscaler tune``); their summaries follow the policies'.
    """
    workload = build_workload(trace, settings.serving, peak_replicas=peak_replicas,
                              target_queue_time_us=settings.target_queue_time_us, seed=settings.seed,
                              duration_s=duration_s)
    ctx = PolicyContext(settings, cluster_policy, dict(options or {}))
    specs: dict[str, tuple[str, PolicyContext]] = {n: (n, ctx) for n in policies if n != "oracle"}
    for label, extra in (variants or {}).items():
        if label in specs or label == "oracle":
            raise ValueError(f"variant label {label!r} is a policy's name")
        specs[label] = ("default", PolicyContext(settings, cluster_policy, {**ctx.options, **extra}))
    sims = list(specs)
    if jobs is None:
        jobs = default_jobs() if workload.steps >= PARALLEL_MIN_STEPS else 1
    table = None  # the oracle's violation table, kept for the checks' frontier
    runs: dict[str, PolicyRun] = {}
    frontier = None
    if jobs > 1 and len(sims) > 1:
        with _Workers(workload, settings, specs, jobs, progress) as workers:
            if "oracle" in policies:
                runs["oracle"], table = _oracle(workload, settings, slo_budget, progress, workers.drain)
                if all(n in sims for n in BASELINES) and ("default" in sims or frontier_always):
                    # this process is idle until the workers are done: bound the checks' frontier now (it needs
                    # only the baselines and the oracle), and keep it below if `default` misses a check
                    base = {n: summarize(workers.result(n)) for n in BASELINES}
                    target = checks_target({**base, "oracle": summarize(runs["oracle"])})
                    if target is not None:
                        frontier = _frontier(workload, settings, runs["oracle"], table, target[0], progress,
                                             workers.drain)
            done = {n: workers.result(n) for n in sims}
        runs = {n: runs["oracle"] if n == "oracle" else done[n] for n in (*policies, *(variants or {}))}
    else:
        for label in (*policies, *(variants or {})):
            if label == "oracle":
                runs[label], table = _oracle(workload, settings, slo_budget, progress, None)
            else:
                name, c = specs[label]
                runs[label] = _simulate_one(workload, settings, c, name,
                                            None if progress is None else partial(progress, label))
    summaries = {n: summarize(r) for n, r in runs.items()}
    target = checks_target(summaries)
    # only where `default` misses a check: where it meets them all it is itself the proof that they can be met
    missed = any(ok is False for _n, ok, _f in criteria(summaries))
    if table is None or target is None or not (missed or frontier_always):
        frontier = None
    elif frontier is None:
        frontier = _frontier(workload, settings, runs["oracle"], table, target[0], progress, None)
    return ReplayResult(workload, runs, summaries, frontier)


def _relay(name: str, progress: Progress | None, drain: Callable[[], None] | None) -> Callable[[float], None]:
    """A progress callback for work done in this process: reports ``name``'s own progress and, while it runs,
    the workers' (``drain``)."""
    def cb(f: float) -> None:
        if drain is not None:
            drain()
        if progress is not None:
            progress(name, f)

    return cb


def _frontier(workload: Workload, settings: ReplaySettings, oracle: PolicyRun, table: Table, violation_fraction: float,
              progress: Progress | None, drain: Callable[[], None] | None) -> FrontierBound:
    cb = _relay("frontier", progress, drain)
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


def _oracle(workload: Workload, settings: ReplaySettings, slo_budget: float, progress: Progress | None,
            drain: Callable[[], None] | None) -> tuple[PolicyRun, Table]:
    """The oracle's run and its violation table; ``drain`` relays the workers' progress meanwhile."""
    cb = _relay("oracle", progress, drain)
    t0 = time.perf_counter()
    table = violation_table(workload, settings)
    run = run_oracle(workload, settings, slo_budget, cb, table)
    run.wall_s = time.perf_counter() - t0
    cb(1.0)  # the DP's own progress stops one step short
    return run, table


# -- worker processes ------------------------------------------------------------------------------------------

def _worker_main(label: str, name: str, workload: Workload, settings: ReplaySettings, ctx: PolicyContext,
                 q: Any) -> None:
    """One policy (``name``, run as ``label``) in a worker process: progress messages, then its run or its exception,
    through ``q``."""
    last = -1.0

    def cb(f: float) -> None:
        nonlocal last
        if f >= 1.0 or f - last >= 0.01:  # at most ~100 messages a policy
            last = f
            q.put(("progress", label, f))

    try:
        q.put(("result", label, _simulate_one(workload, settings, ctx, name, cb)))
    except BaseException as exc:  # everything goes back to the parent, which raises it
        try:
            pickle.dumps(exc)
        except Exception:  # an exception that cannot cross the pipe is sent as its text
            exc = RuntimeError("".join(traceback.format_exception(exc)))
        q.put(("error", label, exc))


class _Workers:
    """The runs of ``specs`` (label -> policy name and its context) in worker processes, at most ``jobs`` at a time,
    slowest first, forked where the platform can (the workload is inherited, not copied through a pipe). Messages
    (progress, runs, errors) are handled in this process whenever :meth:`drain` runs; :meth:`result` drains while
    it waits. A policy's exception is raised here; a worker that dies without a word (killed, out of memory) is an
    error naming it, not a hang. Leaving the block by an exception (a policy's, or Ctrl-C) terminates the workers
    instead of waiting for them."""

    def __init__(self, workload: Workload, settings: ReplaySettings, specs: dict[str, tuple[str, PolicyContext]],
                 jobs: int, progress: Progress | None) -> None:
        self._mpc = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        self._q = self._mpc.Queue()
        self._workload, self._settings, self._specs = workload, settings, specs
        self._progress = progress
        self._todo = sorted(specs, key=lambda n: _SLOWEST_FIRST.index(specs[n][0]) if specs[n][0] in _SLOWEST_FIRST
                            else len(_SLOWEST_FIRST))
        self._jobs = max(1, jobs)
        self._running: dict[str, Any] = {}
        self._done: dict[str, PolicyRun] = {}
        self._start_more()

    def _start_more(self) -> None:
        while self._todo and len(self._running) < self._jobs:
            label = self._todo.pop(0)
            name, ctx = self._specs[label]
            proc = self._mpc.Process(target=_worker_main, args=(label, name, self._workload, self._settings, ctx,
                                                                self._q), name=f"replay-{label}", daemon=True)
            proc.start()
            self._running[label] = proc

    def drain(self, timeout: float = 0.0) -> None:
        """Handle the waiting messages (waiting up to ``timeout`` for the first), then start the next policies."""
        while True:
            try:
                kind, name, payload = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
            except queue_mod.Empty:
                break
            timeout = 0.0
            if kind == "progress":
                if self._progress is not None:
                    self._progress(name, payload)
            elif kind == "result":
                self._done[name] = payload
                self._running.pop(name).join()
            else:
                raise payload
        for name, proc in list(self._running.items()):
            # a worker's messages are all in the pipe before it exits (its queue is flushed at exit), and none was
            # its run: it died
            if not proc.is_alive() and name not in self._done and self._q.empty():
                del self._running[name]
                raise RuntimeError(f"replay of policy {name!r}: its worker process died (exit code {proc.exitcode}); "
                                   f"out of memory? try --jobs 1")
        self._start_more()

    def result(self, name: str) -> PolicyRun:
        while name not in self._done:
            self.drain(timeout=0.2)
        return self._done[name]

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        for proc in self._running.values():
            if exc_type is not None:
                proc.terminate()  # a failed policy or Ctrl-C: do not wait for the others
            proc.join()
        self._q.close()
