"""One replay: a trace, several policies side by side, the oracle, and their summaries.

The entry point shared by ``autoscaler replay`` and ``benchmarks/replay_all.py``. Progress goes to a
callback (the CLI draws a bar on stderr when it is a terminal), never to stdout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.config import ClusterPolicy
from autoscaler.replay.oracle import run_oracle
from autoscaler.replay.policies import PolicyContext, ReplaySettings, make_policy
from autoscaler.replay.report import summarize
from autoscaler.replay.sim import PolicyRun, simulate
from autoscaler.replay.workload import Workload, build_workload

DEFAULT_POLICIES = ("hpa", "keda", "kpa", "default", "oracle")

Progress = Callable[[str, float], None]


@dataclass
class ReplayResult:
    workload: Workload
    runs: dict[str, PolicyRun]
    summaries: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {"trace": w.name,
                "workload": {"steps": w.steps, "requests": float(w.counts.sum()), "rateScale": w.rate_scale,
                             "peakRateRps": w.peak_rate_rps, "replicaCapacityRps": w.replica_capacity_rps,
                             "meanServiceSeconds": w.mean_service_s, "bucketSeconds": w.bucket_s},
                "policies": self.summaries}


def replay(trace: str | Path, policies: Sequence[str], settings: ReplaySettings, cluster_policy: ClusterPolicy, *,
           peak_replicas: float | None = 20, slo_budget: float = 0.01, duration_s: float | None = None,
           options: dict[str, float] | None = None, progress: Progress | None = None) -> ReplayResult:
    """Replay ``trace`` through each policy (and the oracle) with the same arrivals."""
    workload = build_workload(trace, settings.serving, peak_replicas=peak_replicas,
                              target_queue_time_us=settings.target_queue_time_us, seed=settings.seed,
                              duration_s=duration_s)
    ctx = PolicyContext(settings, cluster_policy, dict(options or {}))
    runs: dict[str, PolicyRun] = {}
    for name in policies:
        cb = None if progress is None else (lambda f, n=name: progress(n, f))
        t0 = time.perf_counter()
        if name == "oracle":
            run = run_oracle(workload, settings, slo_budget, cb)
        else:
            run = simulate(workload, make_policy(name, ctx), settings, cb)
        run.wall_s = time.perf_counter() - t0
        runs[name] = run
    return ReplayResult(workload, runs, {n: summarize(r) for n, r in runs.items()})
