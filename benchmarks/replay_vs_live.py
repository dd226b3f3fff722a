"""Replay vs the live sandbox: the same policy on the same short trace, side by side.

    python benchmarks/replay_vs_live.py [--json]

The trace (written to a temporary CSV) is 3 minutes at 1 s buckets: 20 req/s, a step to 160 req/s for
90 s, back to 20 req/s. Live: the sandbox (simulated Triton pods, 4 slots x 40 ms = 100 req/s each,
5 s start-up, a real Prometheus scraping every 1 s) and the controller (HPA core on queue time, 1 s
loop, 15 s rate window, 20 s scale-down window), load replayed in real time. Replay: `autoscaler
replay --policies default` with the same cluster policy, serving model, start-up, scrape interval and
rate window. Compared: peak replicas, replica-seconds, time of the first scale-up after the step, time
of the first scale-down after the load falls, and the SLO-violation fraction (queue time > 10 ms).

Expected agreement and why not exact: the live sandbox simulates every request (exact FIFO per pod,
least-queue routing), the replay a fluid + stationary-queue model per replica with round-robin routing
(``autoscaler/serving.py``: within ~0.05 on the violation fraction below 85 % utilisation, pessimistic
above); scrape phases, loop phases and Prometheus' rate extrapolation at the edges differ by up to one
interval. Tolerances: peak replicas +-1, replica-seconds +-25 %, event times +-(2 scrape + 2 loop
intervals + the rate window's edge effect, 20 s), violation fraction +-0.15 absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVING = {"concurrency": 4, "serviceTimeMs": 40}
POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 6}, limits: {maximum: 6, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
    gpuUtilization: {allowed: true, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 15, maxSampleAgeSeconds: 30}
  behavior: {scaleDown: {stabilizationWindowSeconds: 20}}
  loopIntervalSeconds: 1
  algorithm: hpa
"""
LOW, HIGH, STEP_AT, STEP_END, DURATION = 20, 160, 30, 120, 180
STARTUP_S = 5.0


def write_trace(path: Path) -> None:
    rows = ["# synthetic step trace for benchmarks/replay_vs_live.py", "t_seconds,requests"]
    rows += [f"{t},{HIGH if STEP_AT <= t < STEP_END else LOW}" for t in range(DURATION)]
    path.write_text("\n".join(rows) + "\n")


def summarize(times: list[float], replicas: list[int], violation: float) -> dict[str, Any]:
    seconds = sum(r * (t1 - t0) for t0, t1, r in zip(times, times[1:], replicas, strict=False))
    up = next((t for t, r in zip(times, replicas, strict=True) if t >= STEP_AT and r > replicas[0]), None)
    peak = max(replicas)
    down = next((t for t, r in zip(times, replicas, strict=True) if t >= STEP_END and r < peak), None)
    return {"peakReplicas": peak, "replicaSeconds": round(seconds, 1),
            "firstScaleUpS": None if up is None else round(up - STEP_AT, 1),
            "firstScaleDownS": None if down is None else round(down - STEP_END, 1),
            "sloViolationFraction": round(violation, 3)}


async def live(work: Path, trace: Path) -> dict[str, Any]:
    from autoscaler.controller import Controller, Settings
    from autoscaler.kube.api import KubeApi
    from autoscaler.sandbox.cluster import SandboxCluster
    from autoscaler.sandbox.dataplane import DataPlane
    from autoscaler.sandbox.resources import DEPLOYMENTS

    (work / "policy.yaml").write_text(POLICY)
    async with DataPlane(workdir=work / "dp", scrape_interval_s=1.0) as dp:
        async with SandboxCluster(hooks=dp, startup_seconds=STARTUP_S, pending_seconds=0.0) as c:
            c.create_deployment("live", replicas=1, kind="triton", serving=SERVING,
                                annotations={"inference-autoscaler.io/enabled": "true"})
            await c.wait_for_ready("default", "live")
            api = await KubeApi.connect(str(c.write_kubeconfig(work / "kubeconfig")))
            ctl = Controller(api, Settings(policy_file=str(work / "policy.yaml"), prometheus_url=dp.prometheus_url,
                                           leader_election=False, listen_port=0))
            task = asyncio.create_task(ctl.run(serve_http=False))
            await asyncio.sleep(3)
            await dp.start_load("default", "live", {"trace": str(trace)})
            t0 = time.monotonic()
            times, reps = [], []
            while (t := time.monotonic() - t0) < DURATION:
                times.append(t)
                reps.append(int(c.registry.get(DEPLOYMENTS, "default", "live")["spec"]["replicas"]))
                print(f"\rlive {t:5.0f}/{DURATION} s  replicas {reps[-1]}", end="", file=sys.stderr)
                await asyncio.sleep(1.0)
            print(file=sys.stderr)
            slo = dp.load_stats("default", "live").slo(10000.0)
            ctl.stop.set()
            await task
            await api.close()
    viol = float(slo["violationFraction"])
    return summarize(times, reps, viol) | {"slo": slo}


def replay(trace: Path) -> dict[str, Any]:
    from autoscaler.config import parse_policy
    from autoscaler.replay.policies import ReplaySettings
    from autoscaler.replay.run import replay as run_replay
    from autoscaler.serving import ServingConfig

    settings = ReplaySettings(serving=ServingConfig.from_annotation(SERVING), target_queue_time_us=10000.0,
                              startup_s=STARTUP_S, scrape_interval_s=1.0, rate_window_s=15.0, min_replicas=1,
                              max_replicas=6, initial_replicas=1)
    result = run_replay(trace, ["default"], settings, parse_policy(POLICY), peak_replicas=None)
    run = result.runs["default"]
    times = [float(t) for t in range(len(run.spec_replicas))]
    violation = float(result.summaries["default"]["sloViolationFraction"])  # the figure `autoscaler replay` prints
    return summarize(times, [int(r) for r in run.spec_replicas], violation) | {"gpuSeconds": round(run.gpu_seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-vs-live-") as tmp:
        work = Path(tmp)
        trace = work / "step.csv"
        write_trace(trace)
        rep = replay(trace)
        liv = asyncio.run(live(work, trace))
    checks = {
        "peakReplicas": abs(rep["peakReplicas"] - liv["peakReplicas"]) <= 1,
        "replicaSeconds": abs(rep["replicaSeconds"] - liv["replicaSeconds"]) <= 0.25 * liv["replicaSeconds"],
        "sloViolationFraction": abs(rep["sloViolationFraction"] - liv["sloViolationFraction"]) <= 0.15,
    }
    out = {"live": liv, "replay": rep, "withinTolerance": checks}
    print(json.dumps(out, indent=None if args.json else 2, default=str))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
