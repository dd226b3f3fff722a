"""Control-loop cost at scale: N leases on the sandbox API server and a real Prometheus (backfilled).

    python benchmarks/loop_scale.py --leases 10000 --json
    python benchmarks/loop_scale.py --leases 10000 --json --algorithm predictive
    python benchmarks/loop_scale.py --leases 3000 --json --algorithm predictive --servers triton

Prints ``{"algorithm", "leases", "loopSeconds", "cpuSeconds", "queriesPerLoop", "apiWritesPerLoop", "rssMB",
"baselineLoopSeconds", "baselineQueriesPerLoop"}`` (plus details, among them ``restartFirstLoopSeconds`` and
``restartFirstLoopApiWrites``: a second controller's first loop over the same leases, as after a restart or a
failover; ``historiesReadSeconds``: how long after the first loop the predictive leases' recurring-load
histories took to read from Prometheus, in the background, one query per lease; ``querySeconds``: each metric kind's
mean PromQL latency over the measured loops, the part of the wall time Prometheus takes while the loop works;
``scrapeSeconds``, ``scrapeBytes`` and ``scrapeLoopStallSeconds``: one scrape of the controller's /metrics and the
longest the controller's event loop went without running meanwhile). The sandbox API server runs in a child
process, so the controller's CPU time and RSS are its own. Prometheus serves backfilled recorded
queue-time series for every pod (values at the target, so a steady loop decides "no change"), and
queries are pinned to the end of the backfilled range. The measured loops come after 300 s of
unmeasured ones (``--steady-seconds``), when every lease's stabilisation window is full, as in a
controller that has run for a while.

The baseline is what HPA + Prometheus Adapter does per loop: for every lease, GET its /scale and run one
PromQL query for its own pods (the adapter translates each custom-metrics API call into one query), then
decide; 16 at a time (HPA's default is 5 concurrent syncs, so this flatters the baseline).

``--algorithm predictive`` (the shipped policy's default) sets ``algorithm: predictive`` and
``predictive.slotsPerReplica: 4`` (with one slot, 5 req/s x 0.2 s would saturate a replica). Prometheus
then also serves, per pod, the raw Triton series the ``requestStats`` query reads: the counters
``nv_inference_request_success`` (5 req/s), ``nv_inference_request_failure`` (0),
``nv_inference_compute_infer_duration_us`` (0.2 s per request), ``nv_inference_queue_duration_us`` (3 ms
per request) and the gauge ``nv_inference_pending_request_count`` (0), every 15 s over the backfilled
range; the recorded queue time is 3 ms too. One replica meets the SLO, so a steady loop decides "no change".
The loop then runs two batched queries (``queueTime`` for the HPA core, which still decides every lease,
and ``requestStats``) and ``decide_predictive`` per lease. Decision times are aligned so that no measured
loop closes a season bucket (that writes every lease's predictive-state annotation once per
``seasonBucketSeconds``). Its baseline is, per lease, GET /scale, one ``requestStats`` query for the
lease's pods and one ``decide_predictive`` from the controller's state for that lease.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 4}, limits: {maximum: 10, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 10000, minimum: 1000, maximum: 0}}
    gpuUtilization: {allowed: true, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
  prometheus: {queueTimeRecordingRule: true, maxSampleAgeSeconds: 600}
"""
PREDICTIVE = """  algorithm: predictive
  predictive: {slotsPerReplica: 4}
"""
RPS, SERVICE_US, QUEUE_US = 5.0, 200_000.0, 3_000.0  # per pod: request rate, compute and queue time per request


def _sandbox(n: int, pods_per_lease: int, namespaces: int, kubeconfig: str, ready: Any, stop: Any,
             real_objects: bool = False) -> None:
    """Child process: the sandbox API server with n Deployments and their Ready pods, until told to stop.

    The objects are written straight into the sandbox's store (the simulated deployment controller and
    kubelet are stopped): building 10,000 Deployments through them takes many minutes, and the benchmark
    measures the autoscaler's loop, not the sandbox's controllers. ``real_objects``: the objects as large as a
    real API server's (see :func:`_as_served`).
    """
    from datetime import UTC, datetime

    from autoscaler.sandbox.cluster import SandboxCluster

    async def main() -> None:
        async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0, history_size=200_000) as c:
            await c.controllers.stop()
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for i in range(n):
                c.create_ready_deployment(f"model-{i}", namespace=f"team-{i % namespaces}", replicas=pods_per_lease,
                                          kind="triton", annotations={"inference-autoscaler.io/enabled": "true"},
                                          grow=(lambda obj: _as_served(obj, stamp)) if real_objects else None)
            c.write_kubeconfig(kubeconfig)
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110 (a multiprocessing event, not an asyncio one)
                await asyncio.sleep(0.2)

    asyncio.run(main())


def _as_served(obj: dict[str, Any], stamp: str) -> None:
    """Grow a sandbox object (in place) to what a real cluster's API server returns for it: ``managedFields`` of
    two field managers, kubectl's last-applied annotation on a Deployment, and on a Pod the defaulted spec (an
    environment, volumes, probes, tolerations), owner, five conditions and a container status. A real Triton
    Pod is 5-10 KB of JSON; the sandbox's own objects are ~1 KB."""
    md = obj["metadata"]
    fields: dict[str, Any] = {f"f:{k}": {f"f:{c}": {} for c in ("name", "image", "env", "ports", "resources", "volumeMounts")}
              for k in ("metadata", "spec", "status")}
    md["managedFields"] = [{"manager": m, "operation": "Update", "apiVersion": obj["apiVersion"], "time": stamp,
                            "fieldsType": "FieldsV1", "fieldsV1": fields} for m in ("kubectl", "kube-controller-manager")]
    if obj["kind"] == "Deployment":
        md.setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(
            {k: obj[k] for k in ("apiVersion", "kind", "spec")})
        return
    md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": md["name"].rsplit("-", 1)[0],
                              "uid": "0c5a9d4e-1f3b-4e8a-9b7c-2d6e5f4a3b21", "controller": True,
                              "blockOwnerDeletion": True}]
    spec = obj["spec"] = dict(obj["spec"])
    spec["containers"] = [{**c, "env": [{"name": f"TRITON_VAR_{i}", "value": "x" * 40} for i in range(12)],
                           "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8000},
                                              "periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 3},
                           "volumeMounts": [{"name": "models", "mountPath": "/models"},
                                            {"name": "kube-api-access", "readOnly": True,
                                             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}
                          for c in spec["containers"]]
    spec.update({"volumes": [{"name": "models", "emptyDir": {}},
                             {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                                 {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                                 {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
                 "nodeName": "gpu-node-1", "serviceAccountName": "default", "priority": 0,
                 "tolerations": [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                                 for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]})
    status = obj["status"]
    status["conditions"] = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
                            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                      "PodScheduled")]
    status.update({"hostIP": "10.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "qosClass": "Burstable",
                   "containerStatuses": [{"name": c["name"], "ready": True, "started": True, "restartCount": 0,
                                          "image": c["image"], "imageID": "sha256:" + "0" * 64,
                                          "containerID": "containerd://" + "1" * 64,
                                          "state": {"running": {"startedAt": stamp}}} for c in spec["containers"]]})


def _backfill(pods: list[tuple[str, str]], end: float, predictive: bool, work: str) -> None:
    """Child process: every pod's series over the 600 s before ``end``, every 15 s, backfilled into work/tsdb."""
    from autoscaler.metrics.localprom import OpenMetricsWriter, backfill

    w = OpenMetricsWriter()
    points = [end - 600 + 15 * k for k in range(41)]
    for i, (namespace, name) in enumerate(pods):
        labels = {"namespace": namespace, "pod": name}
        w.add("inference_autoscaler:queue_time_us:rate1m", labels,
              [(t, QUEUE_US if predictive else 10000.0) for t in points])
        w.add("inference_autoscaler:request_success:rate1m", labels, [(t, RPS) for t in points])
        if predictive:  # Triton's raw counters (monotonic, from a per-pod base) and pending gauge
            triton = {**labels, "model": name.split("-5d8f")[0], "version": "1"}
            base = 1000.0 * (i % 97)  # seconds of traffic before the range
            w.add_triton(triton, points, [RPS * (base + t - points[0]) for t in points], SERVICE_US, QUEUE_US)
    w.write(Path(work) / "data.om")
    backfill(Path(work) / "data.om", Path(work) / "tsdb")


async def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from autoscaler.controller import Controller, Settings
    from autoscaler.kube.api import KubeApi
    from autoscaler.kube.selectors import Selector
    from autoscaler.kube.workloads import deployment_path
    from autoscaler.metrics import ClientSettings, LeaseTarget, PrometheusClient, default_registry, fetch
    from autoscaler.metrics.localprom import LocalPrometheus
    from autoscaler.observe import measured_startup_s, predictive_observation
    from autoscaler.policy import DecisionState, decide
    from autoscaler.policy.predictive import PredictiveState, decide_predictive

    predictive = args.algorithm == "predictive"
    kubeconfig = work / "kubeconfig"
    policy = POLICY.replace("maxSampleAgeSeconds: 600}", f"maxSampleAgeSeconds: 600, servers: [{args.servers}]}}")
    (work / "policy.yaml").write_text(policy + (PREDICTIVE if predictive else ""))
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_sandbox, args=(args.leases, args.pods, args.namespaces, str(kubeconfig), ready, stop,
                                              args.real_objects), daemon=True)
    t0 = time.monotonic()
    child.start()
    try:
        if not ready.wait(900):
            raise RuntimeError("sandbox did not become ready")
        print(f"sandbox: {args.leases} leases ready in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        api = await KubeApi.connect(str(kubeconfig), timeout_s=120)
        pods = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in (await api.get("/api/v1/pods"))["items"]]
        # predictive: decisions at end + 5 k stay inside one 600-s season bucket (the shipped seasonBucketSeconds)
        end = float(int(time.time()) // 600 * 600) if predictive else float(int(time.time()) // 60 * 60)
        # the series are written and backfilled in a child process: their text (~0.5 GB at 10,000 predictive
        # leases) would otherwise stay in this process's peak RSS, which is meant to be the controller's
        writer = ctx.Process(target=_backfill, args=(pods, end, predictive, str(work)))
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise RuntimeError(f"backfill failed (exit {writer.exitcode})")
        print(f"prometheus: backfilled {len(pods)} pods", file=sys.stderr)
        with LocalPrometheus(work / "tsdb") as prom:
            settings = Settings(policy_file=str(work / "policy.yaml"), prometheus_url=prom.url,
                                leader_election=False, listen_port=0, write_concurrency=64)
            ctl = Controller(api, settings)
            for cache in (ctl.deployments, ctl.pods, ctl.configmaps):
                await cache.relist()
            ctl.tune_gc()  # as run_loop does once the caches are synced
            warm = await ctl.tick(now=end, query_at=end)  # first loop: writes every lease's status once
            print(f"first loop: {warm.wall_s:.2f}s, {warm.api_writes} API writes (initial status)", file=sys.stderr)
            # predictive: each new state reads its recurring-load history from Prometheus in the background, once
            # (a restart's cost); waited for here so that the measured loops do not share Prometheus with it
            t_hist = time.monotonic()
            await ctl.histories_read()
            histories_s = time.monotonic() - t_hist
            if predictive:
                print(f"recurring-load histories read in {histories_s:.1f}s", file=sys.stderr)
            # Unmeasured loops until the stabilisation windows are full (300 s by default), so the measured
            # loops see a long-running controller's state, not a fresh one's.
            fill = math.ceil(args.steady_seconds / 5)
            for k in range(fill):
                await ctl.tick(now=end + 5 * (k + 1), query_at=end)
            print(f"{fill} loops to fill {args.steady_seconds:.0f} s of stabilisation history", file=sys.stderr)
            before = _query_seconds(ctl)
            loops = [await ctl.tick(now=end + 5 * (fill + k + 1), query_at=end) for k in range(args.loops)]
            after = _query_seconds(ctl)
            query_s = {}  # mean latency of the measured loops' queries, per metric kind
            for kind, (total, n) in after.items():
                total0, n0 = before.get(kind, (0.0, 0))
                query_s[kind] = round((total - total0) / max(1, n - n0), 3)
            reasons = Counter(rt.last["reason"] for rt in ctl.runtime.values() if rt.last)  # the last measured loop
            scrape = await _scrape(ctl)
            print(f"scrape: {scrape['scrapeSeconds']:.2f}s for {scrape['scrapeBytes'] / 1e6:.1f} MB, the loop stalled "
                  f"{scrape['scrapeLoopStallSeconds']:.3f}s at most", file=sys.stderr)
            last_now = end + 5 * (fill + args.loops)
            if args.profile:
                import cProfile
                import pstats
                prof = cProfile.Profile()
                prof.enable()
                last_now += 5
                await ctl.tick(now=last_now, query_at=end)
                prof.disable()
                if os.environ.get("PROFILE_OUT"):  # for pstats / snakeviz
                    prof.dump_stats(os.environ["PROFILE_OUT"])
                pstats.Stats(prof, stream=sys.stderr).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(35)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            await ctl.aclose()

            # A restart (or a failover): a new controller's first loop over the statuses the first one wrote
            again = Controller(api, settings)
            for cache in (again.deployments, again.pods, again.configmaps):
                await cache.relist()
            restart = await again.tick(now=last_now + 5, query_at=end)
            await again.aclose()
            print(f"restart: first loop {restart.wall_s:.2f}s, {restart.api_writes} API writes", file=sys.stderr)

            # Baseline: per lease GET /scale + one PromQL query for its pods + decide.
            base_kind = (ctl._kind("requestStats", None) if predictive
                    else default_registry().create("queueTime", {"max_sample_age_s": 600}))
            pset = ctl.policy.policy.autoscaling.predictive
            pparams = pset.to_params(ctl.policy.policy.autoscaling.metrics["queueTime"].threshold.default)
            keys = sorted(ctl.runtime)[: args.baseline_leases or None]
            async with PrometheusClient(ClientSettings(url=prom.url, timeout_s=60)) as client:
                sem = asyncio.Semaphore(16)
                calls_before = sum(api.calls.values())

                async def one(key: tuple[str, str]) -> None:
                    async with sem:
                        obj = ctl.deployments.objects[key]
                        lease = ctl._specs[key].resolution.lease
                        assert lease is not None
                        pods = ctl.pods_for(key[0], Selector.from_label_selector(obj["spec"]["selector"]))
                        await api.get(deployment_path(*key) + "/scale")
                        result = await fetch(client, base_kind, [LeaseTarget.of(key[0], [p.name for p in pods])], at=end)
                        if predictive:  # from the controller's state for this lease, one loop later
                            current = obj["spec"]["replicas"]
                            obs = predictive_observation(
                                key[0], pods, result, last_now + 5, current, lease.min_replicas, lease.max_replicas,
                                lease.slots_per_replica or pset.slots_per_replica,
                                measured_startup_s(pods, pset.startup_s), pparams.drain_s)
                            decide_predictive(obs, ctl.runtime[key].predictive or PredictiveState(), pparams)
                        else:
                            snap, _ = ctl._snapshot(obj, lease, pods, {"queueTime": result}, end)
                            decide(snap, DecisionState(), end)

                b0, bc0 = time.perf_counter(), time.process_time()
                await asyncio.gather(*(one(k) for k in keys))
                base_wall, base_cpu = time.perf_counter() - b0, time.process_time() - bc0
                base_calls = sum(api.calls.values()) - calls_before
        await api.close()
    finally:
        stop.set()
        child.join(10)
        if child.is_alive():
            child.kill()
    scale = args.leases / max(1, len(keys))
    return {
        "algorithm": args.algorithm,
        "servers": args.servers,
        "leases": args.leases,
        "realObjects": args.real_objects,
        "pods": len(pods),
        "loopSeconds": round(statistics.median(r.wall_s for r in loops), 3),
        "cpuSeconds": round(statistics.median(r.cpu_s for r in loops), 3),
        "queriesPerLoop": loops[-1].queries,
        "apiWritesPerLoop": max(r.api_writes for r in loops),
        "rssMB": round(rss_mb, 1),
        "baselineLoopSeconds": round(base_wall * scale, 3),
        "baselineCpuSeconds": round(base_cpu * scale, 3),
        "baselineQueriesPerLoop": round(len(keys) * scale),
        "baselineApiCallsPerLoop": int(base_calls * scale),
        "baselineMeasuredLeases": len(keys),
        "firstLoopApiWrites": warm.api_writes,
        "firstLoopSeconds": round(warm.wall_s, 2),
        "restartFirstLoopSeconds": round(restart.wall_s, 2),
        "restartFirstLoopApiWrites": restart.api_writes,
        "historiesReadSeconds": round(histories_s, 2),
        "unmeasuredLoops": fill,
        "reasons": dict(reasons),
        "querySeconds": query_s,
        "loops": [{"wall": round(r.wall_s, 3), "cpu": round(r.cpu_s, 3), "writes": r.api_writes,
                   "decided": r.decided} for r in loops],
        **scrape,
        "ratioLoopSeconds": round(base_wall * scale / max(1e-9, statistics.median(r.wall_s for r in loops)), 1),
    }


async def _scrape(ctl: Any, times: int = 3) -> dict[str, Any]:
    """Prometheus scraping the controller's /metrics (over HTTP, from a thread as another process would) while a
    probe on the controller's event loop measures its longest stall: the median of ``times`` scrapes."""
    from autoscaler.telemetry import make_app, serve

    app = make_app(ctl.telemetry, healthy=ctl.healthy, ready=ctl.ready, leases=ctl.lease_view)
    runner, port = await serve(app, "127.0.0.1", 0)
    tick = 0.005
    try:
        walls, stalls, size = [], [], 0
        for _ in range(times):
            done = asyncio.Event()
            prober = asyncio.create_task(_longest_stall(done, tick))
            t0 = time.perf_counter()
            body = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{port}/metrics")
            walls.append(time.perf_counter() - t0)
            done.set()
            stalls.append(await prober)
            size = len(body)
    finally:
        await runner.cleanup()
    return {"scrapeSeconds": round(statistics.median(walls), 3), "scrapeBytes": size,
            "scrapeLoopStallSeconds": round(statistics.median(stalls), 3)}


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url) as resp:
        return bytes(resp.read())


async def _longest_stall(done: asyncio.Event, tick: float) -> float:
    """The longest the event loop went without running this task, beyond its ``tick``-second sleeps, until ``done``."""
    stall, last = 0.0, time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(tick)
        now = time.perf_counter()
        stall, last = max(stall, now - last - tick), now
    return stall


def _query_seconds(ctl: Any) -> dict[str, tuple[float, int]]:
    """(total seconds, queries) so far per metric kind, from the controller's own query-latency histogram."""
    out: dict[str, tuple[float, int]] = {}
    for metric in ctl.telemetry.query_seconds.collect():  # this histogram only: not every lease's series
        if metric.name != "autoscaler_prometheus_query_seconds":
            continue
        for smp in metric.samples:
            kind = smp.labels.get("metric", "")
            total, n = out.get(kind, (0.0, 0))
            if smp.name.endswith("_sum"):
                out[kind] = (smp.value, n)
            elif smp.name.endswith("_count"):
                out[kind] = (total, int(smp.value))
    return out


def main() -> int:
    from autoscaler.config import SERVER_NAMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leases", type=int, default=10000)
    ap.add_argument("--pods", type=int, default=1, help="pods per lease")
    ap.add_argument("--namespaces", type=int, default=500, help="leases are spread over this many namespaces")
    ap.add_argument("--loops", type=int, default=3, help="measured loops after the warm-up loops")
    ap.add_argument("--steady-seconds", type=float, default=300.0,
                    help="loop this long (5 s apart, unmeasured) first, until the stabilisation windows are full")
    ap.add_argument("--baseline-leases", type=int, default=0,
                    help="measure the baseline on this many leases and extrapolate (0 = all)")
    ap.add_argument("--algorithm", choices=("hpa", "predictive"), default="hpa",
                    help="the policy's algorithm (predictive: the shipped default; backfills Triton's raw counters)")
    ap.add_argument("--real-objects", action="store_true",
                    help="Deployments and Pods as large as a real API server returns them (managedFields, ...)")
    ap.add_argument("--servers", default=", ".join(SERVER_NAMES),
                    help="the policy's prometheus.servers (default: the policy's default), e.g. 'triton' (whose "
                         "request series the queries read)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile one extra loop (to stderr)")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    with tempfile.TemporaryDirectory(prefix="loop-scale-") as tmp:
        out = asyncio.run(_run(args, Path(tmp)))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>24}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
