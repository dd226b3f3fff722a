"""Issue 8's checks against a sizing without foresight: how much of `default`'s gap to the oracle is foresight?

Usage: python benchmarks/causal_reference.py TRACE.csv [TRACE.csv ...] [--seed N] [--json]

The oracle (autoscaler/replay/oracle.py) sizes every second knowing the future; a controller cannot. This reference
knows everything about the past a controller could know, and more: the violations each fleet size *would have had*
over the last W seconds (the oracle's own table ``V[t, n]``, counterfactuals included), and nothing about the
future. Every 5 s it asks for the fewest replicas whose violations over the last W seconds were at most a share q
of the requests, keeps its largest ask of the last H seconds, and gets each new replica Ready one start-up delay
after the ask (paid from the ask, as the oracle pays); scale-down is immediate and free. It is judged in the
oracle's model (``V[t, n]``: an even fluid split, no draining, no backlog carried across a change of fleet), which
flatters it against the replayed policies. Grid: W in {300, 600, 1200} s, q in {0.02, 0.05, 0.1, 0.2}, H in
{60, 300, 600} s, one point per (W, q, H).

Per trace it prints hpa, the oracle and `default` (the replay's figures, default settings), then the reference's
best points: the cheapest within half of hpa's violations, and whether any point of the grid meets every one of
issue 8's checks. Where no point does, and `default` misses the same checks, the miss is a matter of foresight on
that trace, not of the policy's tuning (within this family of sizings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.config import load_policy
from autoscaler.replay.oracle import replica_range, violation_table
from autoscaler.replay.policies import ReplaySettings
from autoscaler.replay.report import VIOLATIONS_VS_HPA, criteria
from autoscaler.replay.run import replay
from autoscaler.replay.workload import DEFAULT_SERVING, Workload

WINDOWS_S = (300, 600, 1200)
SHARES = (0.02, 0.05, 0.1, 0.2)
HOLDS_S = (60, 300, 600)
DECIDE_S = 5


def past_window(V: npt.NDArray[np.float32], ns: npt.NDArray[np.float64], arrivals: npt.NDArray[np.float64],
                window_s: int, share: float, hold_s: int, startup_s: float) -> tuple[float, float]:
    """(violation fraction, GPU-seconds) of the past-window sizing on the oracle's table."""
    T, N = V.shape
    cum_v = np.vstack([np.zeros((1, N)), np.cumsum(V, axis=0, dtype=np.float64)])
    cum_a = np.concatenate([[0.0], np.cumsum(arrivals)])
    lo_n = int(ns[0])
    asks: list[tuple[int, int]] = []  # (time, ask): the hold window's asks, each larger than every later one
    coming: list[tuple[float, int]] = []  # (Ready at, replicas) asked for and not yet Ready
    spec = ready = lo_n
    ask = lo_n
    violations = gpu = 0.0
    for t in range(T):
        if t and t % DECIDE_S == 0:
            lo = max(0, t - window_s)
            seen = cum_a[t] - cum_a[lo]
            if seen > 0:
                fits = np.nonzero((cum_v[t] - cum_v[lo]) <= share * seen)[0]
                ask = int(ns[fits[0]]) if fits.size else int(ns[-1])
            while asks and asks[-1][1] <= ask:
                asks.pop()
            asks.append((t, ask))
            while len(asks) > 1 and asks[0][0] <= t - hold_s:
                asks.pop(0)
            target = asks[0][1]
            if target > spec:
                coming.append((t + startup_s, target - spec))
                spec = target
            elif target < spec:
                drop = spec - target
                while drop and coming:  # not yet Ready ones go first
                    at, k = coming[-1]
                    gone = min(k, drop)
                    drop -= gone
                    spec -= gone
                    coming[-1:] = [(at, k - gone)] if k > gone else []
                ready -= drop
                spec -= drop
        while coming and coming[0][0] <= t:
            ready += coming.pop(0)[1]
        violations += float(V[t, min(N - 1, max(0, ready - lo_n))])
        gpu += spec
    return violations / max(1.0, float(arrivals.sum())), gpu


def reference(workload: Workload, settings: ReplaySettings, startup_s: float) -> list[dict[str, float]]:
    V, _ = violation_table(workload, settings)
    ns = replica_range(settings)
    arrivals = workload.counts[: V.shape[0]].astype(np.float64)
    points = []
    for w in WINDOWS_S:
        for q in SHARES:
            for h in HOLDS_S:
                v, g = past_window(V, ns, arrivals, w, q, h, startup_s)
                points.append({"windowSeconds": w, "share": q, "holdSeconds": h, "sloViolationFraction": v,
                               "gpuSeconds": g})
    return points


def run_trace(path: Path, seed: int) -> dict[str, Any]:
    settings = ReplaySettings(serving=DEFAULT_SERVING, seed=seed)
    policy = load_policy()
    r = replay(path, ("hpa", "keda", "kpa", "default", "oracle"), settings, policy)
    points = reference(r.workload, settings, settings.startup_s)  # the simulated pods' start-up, as the oracle's
    base = {k: v for k, v in r.summaries.items() if k != "default"}

    def meets(p: dict[str, float]) -> list[str]:
        return [c for c, ok, _ in criteria({**base, "default": p}) if ok is False]

    hpa_v = r.summaries["hpa"]["sloViolationFraction"]
    within = [p for p in points if p["sloViolationFraction"] <= VIOLATIONS_VS_HPA * hpa_v]
    passing = [p for p in points if not meets(p)]
    return {"trace": r.workload.name, "summaries": r.summaries,
            "defaultMisses": [c for c, ok, _ in criteria(r.summaries) if ok is False],
            "cheapestWithinHalfHpa": min(within, key=lambda p: p["gpuSeconds"]) if within else None,
            "cheapestMeetingAll": min(passing, key=lambda p: p["gpuSeconds"]) if passing else None,
            "points": points}


def _fmt(p: dict[str, float] | None, hpa: dict[str, float], orc: dict[str, float]) -> str:
    if p is None:
        return "none"
    return (f"{p['sloViolationFraction'] / hpa['sloViolationFraction']:.2f}x hpa's violations at "
            f"{p['gpuSeconds'] / hpa['gpuSeconds']:.2f}x its GPU-s, {p['gpuSeconds'] / orc['gpuSeconds']:.2f}x "
            "the oracle's" + (f" (W={p['windowSeconds']:g} s, q={p['share']:g}, H={p['holdSeconds']:g} s)"
                              if "windowSeconds" in p else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="+", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = []
    for path in args.traces:
        res = run_trace(path, args.seed)
        out.append(res)
        if not args.json:
            s = res["summaries"]
            hpa, orc = s["hpa"], s["oracle"]
            print(f"{res['trace']}:")
            print(f"  default:                        {_fmt(s['default'], hpa, orc)}; misses: "
                  f"{', '.join(res['defaultMisses']) or 'none'}")
            print(f"  reference, cheapest within 0.5x: {_fmt(res['cheapestWithinHalfHpa'], hpa, orc)}")
            print(f"  reference, meeting every check:  {_fmt(res['cheapestMeetingAll'], hpa, orc)}", flush=True)
    if args.json:
        json.dump(out, sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
