"""Replay every shared trace through every policy and write benchmarks/RESULTS.md with plots.

Usage: python benchmarks/replay_all.py [--traces DIR] [--out benchmarks/RESULTS.md]
Default replay settings (peak 20 replicas, start-up 120 s, scrape 15 s, rate 1 m, target 10 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from autoscaler.config import load_policy
from autoscaler.replay.policies import ReplaySettings
from autoscaler.replay.report import criteria, criteria_table, frontier_sentence, markdown_table, plot
from autoscaler.replay.run import PARALLEL_MIN_STEPS, default_jobs, replay
from autoscaler.replay.workload import DEFAULT_SERVING

POLICIES = ("hpa", "hpa-gpu", "keda", "kpa", "default", "oracle")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "traces")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    args = ap.parse_args()
    out_dir = args.out.parent / "results"
    settings = ReplaySettings(serving=DEFAULT_SERVING, max_replicas=40)
    sections, figures = [], {}
    for trace in sorted(args.traces.glob("*.csv")):
        t0 = time.perf_counter()
        res = replay(trace, POLICIES, settings, load_policy(), peak_replicas=20)
        png = plot(res.workload, res.runs, out_dir / f"{trace.stem}.png", settings.target_queue_time_us)
        figures[trace.stem] = res.to_json()
        walls = ", ".join(f"{n} {r.wall_s:.1f} s" for n, r in res.runs.items())
        parallel = f", policies in {default_jobs()} worker processes" if res.workload.steps >= PARALLEL_MIN_STEPS else ""
        w = res.workload
        checks = criteria(res.summaries)
        frontier = res.checks_frontier()
        verdict = "" if frontier is None else f"\n\n{frontier_sentence(frontier)}"
        sections.append(
            f"### {trace.stem}\n\n{w.steps:,} s, {w.counts.sum():,.0f} requests after scaling x{w.rate_scale:.3g} "
            f"(peak {w.peak_rate_rps:.0f} req/s = 20 replicas x {w.replica_capacity_rps:.1f} req/s; mean service "
            f"{w.mean_service_s * 1000:.0f} ms).\n\n{markdown_table(res.summaries)}\n\n"
            f"Issue 8 checks for `default`:\n\n{criteria_table(checks)}{verdict}\n\n"
            f"Wall time per policy: {walls} (elapsed {time.perf_counter() - t0:.0f} s{parallel}).\n\n"
            f"![{trace.stem}](results/{png.name})\n")
        print(f"{trace.stem}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(f"## {trace.stem}\n{markdown_table(res.summaries)}\n\n{criteria_table(checks)}{verdict}\n", flush=True)
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=1))
    machine = f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}"
    head = (f"# Replay benchmark\n\nCommand: `python benchmarks/replay_all.py` (= `autoscaler replay --trace T "
            f"--policies {','.join(POLICIES)}` per trace, default settings)\n\nMachine: {machine}\n\n")
    # keep the hand-written "## Notes" section of the previous RESULTS.md
    old = args.out.read_text() if args.out.exists() else ""
    notes = old[old.index("\n## Notes"):] if "\n## Notes" in old else ""
    args.out.write_text(head + "\n".join(sections) + notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
