"""Soak: a time-compressed sandbox run with random faults, checked by the invariant checker throughout.

Four leases take sine-shaped load (periods of a minute or two: hours of daily cycles compressed ~60x): three
Triton leases on the HPA rule, and a NIM lease on the predictive algorithm, sized from vLLM's request counters
(its KV cache holds two requests, fewer than the four of its ``num_request_max``: its slots are learnt from the
batch its pods run while requests wait). Recovery is timed on the Triton leases: their status annotations are
rewritten every second as their values move, while the predictive lease's stays as it is while its decision and
values do (held by its burst envelope), so a write cannot time its recovery; the invariants hold for all four. A
fifth lease, ``soak-zero`` (``min-replicas: 0``, created at zero replicas), takes 8-s bursts 18 s apart: it is woken by
the sandbox gateway's requests at each burst and goes back to zero replicas in the silence, through the same faults (a
missing wake value, or missing pod metrics, must never take it to zero: the invariant checker's blind scale-down).
Its requests that come while it is at zero find no pod (by design), so it is counted apart from the others' load.
The controller runs as a real ``autoscaler run`` process whose API traffic goes through a
FaultProxy; Prometheus sits behind another. Every few seconds one random fault is injected for a few
seconds: Prometheus down / slow / 5xx / empty / NaN / multi-series / stale answers, API 409 storms,
5xx, slow writes, cut watch streams, 410 Gone, or a SIGKILL of the controller (restarted at once; kills
only in the first half, so the second half measures the memory of one long-lived process).

Prints load held (requests served and within the queue-time target), faults injected by kind,
invariant violations (must be 0), the controller's RSS growth over the second half (must be flat), the slots
learnt and estimated (``SlotsLearned`` and ``SlotsEstimated`` Events) and how often ``soak-zero`` went to zero and
was woken.

    python benchmarks/soak.py --minutes 30          # the long run (docs/reliability.md)
    python benchmarks/soak.py --minutes 0.5 --json  # what CI runs (tests/faults/test_soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from autoscaler.metrics.promql import PART_LABEL
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from autoscaler.sandbox.faultproxy import FaultProxy
from autoscaler.sandbox.invariants import InvariantChecker
from autoscaler.sandbox.resources import EVENTS

P = "inference-autoscaler.io/"
POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 4}, limits: {maximum: 6, minimum: {lowerBound: 0, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 20000, minimum: 1000, maximum: 0}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 3, maxSampleAgeSeconds: 20, timeoutSeconds: 1}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 5}
  loopIntervalSeconds: 0.5
  fallback: {failureThreshold: 3, action: hold}
  scaleToZero:
    wakeQuery: 'sum(rate(sandbox_gateway_requests_total{namespace="{{namespace}}",service="{{name}}"}[3s])) or vector(0)'
    idleSeconds: 2
"""
LEASES: dict[str, dict[str, Any]] = {
    "soak-a": {"mean": 60, "amplitude": 50, "periodS": 60},
    "soak-b": {"mean": 40, "amplitude": 35, "periodS": 90},
    "soak-c": {"mean": 25, "amplitude": 20, "periodS": 120},
    "soak-nim": {"mean": 30, "amplitude": 25, "periodS": 75},
    "soak-zero": {"type": "bursts", "base": 0, "burstRate": 12, "everyS": 18, "burstS": 8, "offsetS": 1},
}
SERVING = {"concurrency": 2, "serviceTimeMs": 50}
SERVINGS = {"soak-nim": {**SERVING, "concurrency": 4, "kvCacheTokens": 1280}}  # two 640-token requests at once
KINDS = {"soak-nim": ("nim", {P + "algorithm": "predictive"}),  # the others: Triton on the HPA rule
         "soak-zero": ("triton", {P + "min-replicas": "0"})}
ZERO = "soak-zero"
ZERO_RESCALED = re.compile(rf"rescaled default/{ZERO} from (\d+) to (\d+)")  # the controller's log line
TIMED = [name for name in LEASES if name not in KINDS]  # the leases recovery is timed on (module docstring)


def _series(doc: Any) -> list[dict[str, Any]]:
    res = ((doc or {}).get("data") or {}).get("result")
    return res if isinstance(res, list) else []


def _rewrite(kind: str) -> Any:
    def rewrite(doc: Any) -> Any:
        if kind == "empty":
            doc["data"]["result"] = []
        for s in list(_series(doc)):
            part = s["metric"].get(PART_LABEL)
            if kind == "nan" and not part:
                s["value"][1] = "NaN"
            elif kind == "nan" and part == "rate":
                s["value"][1] = "5"
            elif kind == "stale" and part == "ts":
                s["value"][1] = str(float(s["value"][1]) - 600)
            elif kind == "multi-series":
                doc["data"]["result"].append({"metric": {**s["metric"], "instance": "dup"}, "value": s["value"]})
        return doc
    return rewrite


PROM_FAULTS: dict[str, dict[str, Any]] = {
    "prometheus down": {"mode": "down"},
    "prometheus slow": {"mode": "delay", "delay_s": 3.0},
    "prometheus 5xx": {"mode": "status", "status": 503},
    "prometheus empty": {"mode": "rewrite", "rewrite": _rewrite("empty"), "path_filter": "/api/v1/query"},
    "prometheus NaN": {"mode": "rewrite", "rewrite": _rewrite("nan"), "path_filter": "/api/v1/query"},
    "prometheus multi-series": {"mode": "rewrite", "rewrite": _rewrite("multi-series"), "path_filter": "/api/v1/query"},
    "prometheus stale": {"mode": "rewrite", "rewrite": _rewrite("stale"), "path_filter": "/api/v1/query"},
}
API_FAULTS: dict[str, dict[str, Any]] = {
    "api 409 storm": {"mode": "status", "status": 409, "path_filter": "/scale", "methods": {"PATCH"},
                      "probability": 0.7},
    "api 5xx": {"mode": "status", "status": 503, "probability": 0.5},
    "api slow writes": {"mode": "delay", "delay_s": 1.5, "methods": {"PATCH", "POST"}, "probability": 0.5},
    "api watch cut": {"mode": "cut", "cut_after_s": 0.3, "path_filter": "watch=true"},
    "api 410 gone": {"mode": "status", "status": 410, "path_filter": "watch=true"},
}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, minutes: float, seed: int, work: Path) -> None:
        self.duration_s = minutes * 60
        self.rng = random.Random(seed)
        self.work = work
        self.faults: Counter[str] = Counter()
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.pump: asyncio.Task[None] | None = None
        self.rss: list[tuple[float, int]] = []
        self.zero: Counter[str] = Counter()  # soak-zero's scales to zero and wakes, from the controller's log

    async def start_controller(self, kubeconfig: Path, policy: Path, prom_url: str) -> None:
        argv = [sys.executable, "-c", "import sys; from autoscaler.cli import main; sys.exit(main())", "run",
                "--kubeconfig", str(kubeconfig), "--no-leader-election", "--policy-file", str(policy),
                "--prometheus-url", prom_url, "--listen", "127.0.0.1:0", "--identity", "soak", "--log-format", "text"]
        env = {**os.environ, "AUTOSCALER_STATUS_MIN_INTERVAL_S": "1", "AUTOSCALER_STATE_GRANULARITY_S": "2"}
        self.proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT, env=env)
        self.pump = asyncio.create_task(self._pump(self.proc.stdout))

    async def _pump(self, stream: asyncio.StreamReader | None) -> None:
        while stream is not None and (line := await stream.readline()):
            text = line.decode("utf-8", "replace")
            self.lines.append(text)
            if m := ZERO_RESCALED.search(text):
                self.zero["toZero" if m[2] == "0" else "woken" if m[1] == "0" else "other"] += 1

    async def stop_controller(self, kill: bool) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill() if kill else self.proc.terminate()
        await self.proc.wait()
        if self.pump is not None:
            await self.pump
        self.proc = None

    async def run(self) -> dict[str, Any]:
        policy = self.work / "policy.yaml"
        policy.write_text(POLICY)
        async with DataPlane(workdir=self.work / "dataplane") as dp, \
                SandboxCluster(hooks=dp, startup_seconds=1.0, pending_seconds=0.2, terminating_seconds=0.5) as c, \
                FaultProxy(c.url) as api, FaultProxy(dp.prometheus_url) as prom:
            for name in LEASES:
                kind, extra = KINDS.get(name, ("triton", {}))
                c.create_deployment(name, replicas=0 if name == ZERO else 1, kind=kind, serving=SERVINGS.get(name, SERVING), annotations={
                    P + "enabled": "true", P + "max-replicas": "6", "owner": "soak", **extra})
            checker = InvariantChecker(c, POLICY, blind_grace_s=1.5)
            checker.attach("soak", api)
            checker.watch_prometheus(prom)
            cfg = c.kubeconfig()
            cfg["clusters"][0]["cluster"]["server"] = api.url
            kubeconfig = self.work / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(cfg))
            with checker:
                for name in LEASES:
                    await c.wait_for_ready("default", name)
                await self.start_controller(kubeconfig, policy, prom.url)
                for name, profile in LEASES.items():
                    await dp.start_load("default", name, {"profile": {"type": "sine", **profile}})
                t0 = time.monotonic()
                recoveries = await self._inject(c, api, prom, checker, kubeconfig, policy, t0)
                summary = dp.load_summary(target_queue_time_us=20000)
                for name in LEASES:
                    await dp.stop_load("default", name)
                await self.stop_controller(kill=False)
            events = c.store.list_objects(EVENTS.storage_key, "default")
            slots = [e for e in events if e.get("reason") in ("SlotsLearned", "SlotsEstimated")]
            for line in self.lines:
                checker.log_line(line)
            violations = checker.finish()
        zero = summary.pop(f"default/{ZERO}", {})
        served = sum(s["served"] for s in summary.values())
        requests = sum(s["requests"] for s in summary.values())
        within = sum(s["requests"] - s["violations"] for s in summary.values())
        half = [kb for t, kb in self.rss if t >= self.duration_s / 2]
        growth = (half[-1] - half[0]) / 1024 if len(half) >= 2 else 0.0
        return {
            "minutes": self.duration_s / 60, "requests": requests,
            "servedFraction": round(served / requests, 4) if requests else 0.0,
            "withinTargetFraction": round(within / requests, 4) if requests else 0.0,
            "faults": dict(sorted(self.faults.items())), "faultsTotal": sum(self.faults.values()),
            "violations": [str(v) for v in violations],
            "scaleUps": checker.counts.scale_up, "scaleDowns": checker.counts.scale_down,
            "recoverySeconds": {k: round(max(v), 2) for k, v in sorted(recoveries.items())},
            "controllerRssMB": {"secondHalfStart": round(half[0] / 1024, 1) if half else None,
                                "end": round(half[-1] / 1024, 1) if half else None},
            "controllerRssGrowthMB": round(growth, 1),
            **{key: {e["involvedObject"]["name"]: e["message"].split(":")[0] for e in slots if e["reason"] == reason}
               for key, reason in (("slotsLearned", "SlotsLearned"), ("slotsEstimated", "SlotsEstimated"))},
            "scaleToZero": {"toZero": self.zero["toZero"], "woken": self.zero["woken"],
                            "requests": zero.get("requests", 0),
                            "servedFraction": round(zero["served"] / zero["requests"], 4) if zero.get("requests")
                            else 0.0},
        }

    async def _inject(self, c: SandboxCluster, api: FaultProxy, prom: FaultProxy, checker: InvariantChecker,
                      kubeconfig: Path, policy: Path, t0: float) -> dict[str, list[float]]:
        """Random faults until the end; per kind, the seconds from clearing to the next good loop."""
        recoveries: dict[str, list[float]] = {}
        kinds = [*PROM_FAULTS, *API_FAULTS, "controller SIGKILL"]
        await asyncio.sleep(3.0)  # warm-up: a first clean stretch
        while (elapsed := time.monotonic() - t0) < self.duration_s - 4:
            if self.proc is not None and self.proc.returncode is None:
                self.rss.append((elapsed, rss_kb(self.proc.pid)))
            kind = self.rng.choice(kinds if elapsed < self.duration_s / 2 else kinds[:-1])
            self.faults[kind] += 1
            hold = self.rng.uniform(1.5, 4.0)
            if kind == "controller SIGKILL":
                await self.stop_controller(kill=True)
                await asyncio.sleep(self.rng.uniform(0.0, 1.0))
                await self.start_controller(kubeconfig, policy, prom.url)
                cleared = time.monotonic()
            else:
                proxy, fault = (prom, PROM_FAULTS[kind]) if kind in PROM_FAULTS else (api, API_FAULTS[kind])
                proxy.set(**fault)
                await asyncio.sleep(hold)
                proxy.set("pass")
                cleared = time.monotonic()
            recoveries.setdefault(kind, []).append(await self._recovered(c, cleared))
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))  # a clean stretch between faults
            for line in self.lines:
                checker.log_line(line)
            self.lines.clear()
            checker.check()
        return recoveries

    async def _recovered(self, c: SandboxCluster, since: float) -> float:
        """Seconds until every lease's status annotation was written after ``since`` without a metrics error."""
        from autoscaler.config import STATUS_ANNOTATION
        from autoscaler.sandbox.resources import DEPLOYMENTS
        wall_since = time.time() - (time.monotonic() - since)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ok = True
            for name in TIMED:
                obj = c.store.get(DEPLOYMENTS.storage_key, "default", name) or {}
                raw = (obj.get("metadata", {}).get("annotations") or {}).get(STATUS_ANNOTATION)
                st = json.loads(raw) if raw else {}
                fresh = any(r.get("time", 0) >= wall_since for r in st.get("recent", [])) or \
                    _parse_time(st.get("updated")) >= wall_since
                if not fresh or any(m.get("error") for m in st.get("metrics", [])):
                    ok = False
            if ok:
                return time.monotonic() - since
            await asyncio.sleep(0.1)
        return float("inf")


def _parse_time(s: str | None) -> float:
    from datetime import datetime
    if not s:
        return 0.0
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


async def soak(minutes: float, seed: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        return await Soak(minutes, seed, Path(tmp)).run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock length of the run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    out = asyncio.run(soak(args.minutes, args.seed))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"soak: {out['minutes']:.1f} min, {out['requests']} requests, served {out['servedFraction']:.2%}, "
              f"within the queue-time target {out['withinTargetFraction']:.2%}")
        print(f"faults injected: {out['faultsTotal']}")
        for kind, n in out["faults"].items():
            print(f"  {kind:28s} {n:4d}  recovery <= {out['recoverySeconds'].get(kind)} s")
        print(f"invariant violations: {len(out['violations'])}")
        for v in out["violations"]:
            print("  " + v)
        print(f"controller RSS over the second half: {out['controllerRssMB']} (growth {out['controllerRssGrowthMB']} MB)")
        for how in ("estimated", "learned"):
            for lease, sized in out["slots" + how.capitalize()].items():
                print(f"slots {how.replace('learned', 'learnt')}: {lease}: {sized}")
        z = out["scaleToZero"]
        print(f"scale to zero ({ZERO}): went to zero {z['toZero']} times, woken {z['woken']} times; {z['requests']} "
              f"requests, served {z['servedFraction']:.2%} (the rest came while it was at zero)")
    return 1 if out["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
