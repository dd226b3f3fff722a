"""Decision throughput: the scalar ``decide()`` loop vs the vectorised batch path, in CPU time.

Builds N realistic leases (1-10 pods, 2-3 metrics: CPU utilisation, queue time, sometimes an
External value; ~60 recommendations from a 5 s loop over the 300 s window, a few scale events; one
cluster behaviour shared by all), then measures ``time.process_time`` (median of several
repetitions) of:

* ``scalar``: ``[decide(s, st) for ...]``;
* ``batch``: ``decide_many`` (flatten objects to arrays + compute + rebuild ``Decision`` objects);
* ``batch build``: ``build_batch`` alone (objects -> arrays);
* ``build, state as arrays``: ``build_batch`` with the state carried as arrays from the last round;
* ``batch compute``: ``decide_batch`` alone (what a caller that keeps its leases as arrays pays);
* ``predictive (scalar)``: the shipped default algorithm, ``decide_predictive`` once per lease, each lease
  with a full history (10 minutes of 5 s decisions: burst envelope, trend, reactive floor, scale-down window);
* ``period search``: 24 loops of ``decide_predictive`` 5 s apart, each lease also carrying six hours of cycle
  buckets, across two bucket closes (where each lease looks for its load's period): the slowest loop and the
  median one, with every search at the close (``stagger`` 0, as the replay decides) and with the controller's
  per-lease stagger (``lease_stagger``), which spreads the searches over the bucket's loops;

and checks that both HPA paths return equal decisions for every lease.

    python benchmarks/decide_throughput.py --leases 10000 [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from autoscaler.config import load_policy
from autoscaler.controller import lease_stagger
from autoscaler.policy import (
    Behavior,
    DecisionState,
    MetricInput,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    Recommendation,
    ScaleEvent,
    Snapshot,
    Target,
    TargetType,
    decide,
)
from autoscaler.policy.batch import StateArrays, build_batch, decide_batch, decide_many
from autoscaler.policy.predictive import PredictiveObservation, PredictiveParams, PredictiveState, decide_predictive

NOW = 1_700_000_000.0


def build_leases(n: int, seed: int = 1) -> tuple[list[Snapshot], list[DecisionState]]:
    rng = random.Random(seed)
    behavior = Behavior()
    snaps: list[Snapshot] = []
    states: list[DecisionState] = []
    for lease in range(n):
        n_pods = rng.randint(1, 10)
        pods = tuple(
            Pod(f"l{lease}-p{i}",
                phase=PodPhase.PENDING if rng.random() < 0.03 else PodPhase.RUNNING,
                start_time=NOW - rng.choice([120.0, 3600.0, 86400.0]),
                ready=rng.random() > 0.05, ready_transition_time=NOW - rng.uniform(30, 3000),
                requests_milli={"cpu": {"triton": 4000}}, containers=("triton",))
            for i in range(n_pods))
        level = rng.uniform(0.3, 1.8)
        cpu = MetricInput(
            MetricType.RESOURCE, Target(TargetType.UTILIZATION, average_utilization=70), resource="cpu",
            samples=tuple(PodSample(p.name, containers_milli={"triton": int(2800 * level * rng.uniform(0.8, 1.2))},
                                    timestamp=NOW - 15, window_s=60.0)
                          for p in pods if rng.random() > 0.02))
        queue = MetricInput(
            MetricType.PODS, Target(TargetType.AVERAGE_VALUE, average_value_milli=50_000_000), name="queueTime",
            samples=tuple(PodSample(p.name, value_milli=int(50_000_000 * level * rng.uniform(0.7, 1.3)))
                          for p in pods if rng.random() > 0.02))
        metrics: tuple[MetricInput, ...] = (cpu, queue)
        if rng.random() < 0.5:
            metrics += (MetricInput(MetricType.EXTERNAL, Target(TargetType.AVERAGE_VALUE, average_value_milli=20_000),
                                    name="requests", value_milli=int(20_000 * n_pods * level)),)
        current = n_pods
        snaps.append(Snapshot(NOW, current, current, 1, 20, behavior, pods, metrics))
        recs = tuple(Recommendation(NOW - 5.0 * k, max(1, current + rng.randint(-2, 2))) for k in range(1, 61))
        events = tuple(ScaleEvent(NOW - rng.uniform(0, 600), rng.choice([-2, -1, 1, 2, 4]))
                       for _ in range(rng.randint(0, 3)))
        states.append(DecisionState(recs, events))
    return snaps, states


def build_predictive(n: int, seed: int = 2) -> list[tuple[PredictiveObservation, PredictiveState]]:
    """N predictive leases at NOW, each with the history a controller running for 10 minutes carries."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        level, svc, pods = rng.uniform(1, 100), rng.uniform(0.05, 1.0), rng.randint(1, 10)
        ts = [NOW - 5.0 * k for k in range(119, 0, -1)]
        state = PredictiveState(
            rates=tuple((t, r, r * svc) for t in ts for r in [level * rng.uniform(0.8, 1.2)]),
            pending=tuple((t, rng.uniform(0, 3)) for t in ts[-6:]),
            targets=tuple((t, max(1, pods + rng.randint(-1, 1))) for t in ts[-24:]),
            service_time_s=svc, queue_times=tuple((t, rng.uniform(0, 20000), float(pods)) for t in ts[-12:]),
            since=ts[0])
        obs = PredictiveObservation(now=NOW, current_replicas=pods, ready_replicas=pods, starting_replicas=0,
                                    min_replicas=1, max_replicas=20, request_rate_rps=level, service_time_s=svc,
                                    slots_per_replica=8, startup_s=120.0, queue_time_us=rng.uniform(0, 20000),
                                    pending_requests=rng.uniform(0, 3))
        out.append((obs, state))
    return out


def cycle_loops(leases: list[tuple[PredictiveObservation, PredictiveState]], params: PredictiveParams,
                staggered: bool) -> list[float]:
    """CPU seconds of each of 24 loops, 5 s apart from NOW, of every lease with six hours of cycle buckets (a noisy
    recurrence of 10-60 buckets) and the open bucket's start at the last bucket boundary before NOW."""
    b = params.cycle_bucket_s
    end = math.floor(NOW / b) * b
    rng = np.random.default_rng(3)
    keep = round(params.cycle_history_s / b)
    states = []
    for obs, st in leases:
        period = int(rng.integers(10, 61))
        level = obs.request_rate_rps or 1.0
        hist = level * (1.0 + 0.5 * np.sin(2 * np.pi * np.arange(keep) / period) + 0.1 * rng.standard_normal(keep))
        states.append(replace(st, cycle=np.maximum(hist, 0.0).tobytes(), cycle_end=end, cycle_open=0.0))
    loops = []
    for k in range(24):
        batch = [replace(obs, now=NOW + 5.0 * (k + 1),
                         stagger=lease_stagger(f"team-{i % 500}", f"model-{i}") if staggered else 0.0)
                 for i, (obs, _) in enumerate(leases)]
        gc.collect()  # a collection inside one loop would make it the slowest, whatever the searches cost
        gc.disable()
        t0 = time.process_time()
        for i, obs in enumerate(batch):
            states[i] = decide_predictive(obs, states[i], params).state
        loops.append(time.process_time() - t0)
        gc.enable()
    return loops


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leases", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    snaps, states = build_leases(args.leases)

    scalar_s, expected = cpu_seconds(lambda: [decide(s, x) for s, x in zip(snaps, states, strict=True)], args.repeat)
    batch_s, got = cpu_seconds(lambda: decide_many(snaps, states), args.repeat)
    build_s, (inp, fallback) = cpu_seconds(lambda: build_batch(snaps, states), args.repeat)
    compute_s, out = cpu_seconds(lambda: decide_batch(inp), args.repeat)
    carried = StateArrays.of(out)
    carried_s, _ = cpu_seconds(lambda: build_batch(snaps, None, carried=carried), args.repeat)
    mismatches = sum(1 for e, g in zip(expected, got, strict=True) if e != g)
    params = load_policy().autoscaling.predictive.to_params(10000.0)
    leases = build_predictive(args.leases)
    predictive_s, _ = cpu_seconds(lambda: [decide_predictive(o, st, params) for o, st in leases], args.repeat)
    search = {name: cycle_loops(leases, params, staggered) for name, staggered in (("at the close", False),
                                                                                   ("staggered", True))}

    n = args.leases
    rows = {
        "scalar": scalar_s, "batch (decide_many)": batch_s, "batch build": build_s,
        "build, state as arrays": carried_s, "batch compute": compute_s, "predictive (scalar)": predictive_s,
    }
    report = {
        "leases": n, "repeat": args.repeat, "fallback_leases": int(fallback.sum()), "mismatches": mismatches,
        "cpu_ms": {k: round(v * 1000, 1) for k, v in rows.items()},
        "decisions_per_s": {k: round(n / v) for k, v in rows.items()},
        "speedup_vs_scalar": {k: round(scalar_s / v, 1) for k, v in rows.items()},
        "rescales": sum(1 for d in expected if d.desired_replicas != d.current_replicas),
        "period_search_loop_ms": {k: {"max": round(max(v) * 1000, 1), "median": round(statistics.median(v) * 1000, 1)}
                                  for k, v in search.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{n} leases, median CPU time of {args.repeat} runs, fallback leases {report['fallback_leases']}, "
              f"rescales {report['rescales']}")
        print(f"{'path':<26}{'CPU ms':>10}{'decisions/s':>14}{'vs scalar':>11}")
        for k, v in rows.items():
            print(f"{k:<26}{v * 1000:>10.1f}{n / v:>14,.0f}{scalar_s / v:>10.1f}x")
        for how, loops in search.items():
            print(f"period search, {how:<13} loop CPU ms: slowest {max(loops) * 1000:.1f}, median "
                  f"{statistics.median(loops) * 1000:.1f} (24 loops, 2 bucket closes)")
        print("both paths agree on every lease" if not mismatches else f"MISMATCH on {mismatches} leases")
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
