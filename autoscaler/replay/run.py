"""One replay: a trace, several policies side by side, the oracle, and their summaries.

The entry point shared by ``autoscaler replay`` and ``benchmarks/replay_all.py``. Progress goes to a
callback (the CLI draws a bar on stderr when it is a terminal), never to stdout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
           frontier_always: bool = False) -> ReplayResult:
    """Replay ``trace`` through each policy (and the oracle) with the same arrivals.

    The checks' frontier (:attr:`ReplayResult.frontier`) is computed where `default` misses a check, or always
    with ``frontier_always`` (when hpa, keda, kpa and the oracle are replayed).
    """
    workload = build_workload(trace, settings.serving, peak_replicas=peak_replicas,
                              target_queue_time_us=settings.target_queue_time_us, seed=settings.seed,
                              duration_s=duration_s)
    ctx = PolicyContext(settings, cluster_policy, dict(options or {}))
    table = None  # the oracle's violation table, kept for the checks' frontier
    runs: dict[str, PolicyRun] = {}
    for name in policies:
        cb = None if progress is None else (lambda f, n=name: progress(n, f))
        t0 = time.perf_counter()
        if name == "oracle":
            table = violation_table(workload, settings)
            run = run_oracle(workload, settings, slo_budget, cb, table)
        else:
            run = simulate(workload, make_policy(name, ctx), settings, cb)
        run.wall_s = time.perf_counter() - t0
        runs[name] = run
    summaries = {n: summarize(r) for n, r in runs.items()}
    target = checks_target(summaries)
    frontier = None
    # only where `default` misses a check: where it meets them all it is itself the proof that they can be met
    missed = any(ok is False for _n, ok, _f in criteria(summaries))
    if table is not None and target is not None and (missed or frontier_always):
        if progress is not None:
            progress("frontier", 0.0)
        o = runs["oracle"]
        frontier = cheapest_within(table[0], replica_range(settings), settings.startup_s,
                                   float(workload.counts.sum()), target[0],
                                   known=(float(o.extra["kappa"]), float(o.violations.sum()), o.gpu_seconds),
                                   progress=None if progress is None else (lambda f: progress("frontier", f)))
        if progress is not None:
            progress("frontier", 1.0)
    return ReplayResult(workload, runs, summaries, frontier)

