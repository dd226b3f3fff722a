"""Reaction time: from a load step in the sandbox to the controller's first scale patch.

    python benchmarks/reaction.py [--runs 3] [--json]

Live sandbox (simulated Triton pods scraped by a real Prometheus every 1 s), controller loop every 1 s,
queue time and GPU utilisation as metrics. The goal is a patch within 2 scrape intervals + 1 loop
interval (3 s here) of the step. Each run uses a fresh Deployment; the figure printed is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 6}, limits: {maximum: 10, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
    gpuUtilization: {allowed: true, enabled: true, threshold: {default: 80, minimum: 50, maximum: 100}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 3, maxSampleAgeSeconds: 30}
  loopIntervalSeconds: 1
"""
SCRAPE_S, LOOP_S = 1.0, 1.0


async def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from autoscaler.controller import Controller, Settings
    from autoscaler.kube.api import KubeApi
    from autoscaler.sandbox.cluster import SandboxCluster
    from autoscaler.sandbox.dataplane import DataPlane
    from autoscaler.sandbox.resources import DEPLOYMENTS

    (work / "policy.yaml").write_text(POLICY)
    results: list[dict[str, Any]] = []
    async with DataPlane(workdir=work / "dp", scrape_interval_s=SCRAPE_S) as dp:
        async with SandboxCluster(hooks=dp, startup_seconds=1.0, pending_seconds=0.2) as c:
            kubeconfig = c.write_kubeconfig(work / "kubeconfig")
            api = await KubeApi.connect(str(kubeconfig))
            ctl = Controller(api, Settings(policy_file=str(work / "policy.yaml"), prometheus_url=dp.prometheus_url,
                                           leader_election=False, listen_port=0))
            task = asyncio.create_task(ctl.run(serve_http=False))
            try:
                for i in range(args.runs):
                    name = f"react-{i}"
                    c.create_deployment(name, replicas=1, kind="triton", serving={"concurrency": 4, "serviceTimeMs": 50},
                                        annotations={"inference-autoscaler.io/enabled": "true"})
                    await c.wait_for_ready("default", name)
                    await dp.start_load("default", name, {"profile": {"type": "constant", "rate": 10}})
                    await asyncio.sleep(8)  # steady, well below capacity (80 req/s per pod)
                    assert c.registry.get(DEPLOYMENTS, "default", name)["spec"]["replicas"] == 1
                    await dp.start_load("default", name, {"profile": {"type": "constant", "rate": 200}})
                    step = time.monotonic()
                    while c.registry.get(DEPLOYMENTS, "default", name)["spec"]["replicas"] == 1:
                        if time.monotonic() - step > 60:
                            raise RuntimeError("no scale-up within 60 s")
                        await asyncio.sleep(0.05)
                    took = time.monotonic() - step
                    reason = ctl.runtime[("default", name)].last.get("reason")
                    results.append({"reactionSeconds": round(took, 2), "reason": reason})
                    print(f"run {i}: scale patch {took:.2f}s after the step ({reason})", file=sys.stderr)
                    await dp.stop_load("default", name)
            finally:
                ctl.stop.set()
                await task
                await api.close()
    med = statistics.median(float(r["reactionSeconds"]) for r in results)
    budget = 2 * SCRAPE_S + LOOP_S
    return {"reactionSeconds": med, "scrapeIntervalSeconds": SCRAPE_S, "loopIntervalSeconds": LOOP_S,
            "budgetSeconds": budget, "withinBudget": med <= budget, "runs": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="reaction-") as tmp:
        out = asyncio.run(_run(args, Path(tmp)))
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
