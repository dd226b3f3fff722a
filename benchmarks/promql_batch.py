"""Batched PromQL (one query per metric kind) vs one query per lease, on a real Prometheus.

Backfills N pods across M leases (several namespaces) with cAdvisor, DCGM, Triton, recorded queue-time
and vLLM series, starts Prometheus on it, then times, per kind, one batched query for all leases and
the per-lease alternative (what HPA + prometheus-adapter does: one query per HPA), the latter run with
a bounded concurrency; and scale to zero's wake queries (a gateway counter per lease), merged a hundred
leases to a query against one query per lease. Prints one JSON document.

    python benchmarks/promql_batch.py [--pods 10000] [--leases 2000] [--concurrency 16]
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

from autoscaler.metrics import (
    BatchResult,
    ClientSettings,
    LeaseTarget,
    MetricKind,
    Ok,
    PrometheusClient,
    default_registry,
    fetch,
    fetch_all,
)
from autoscaler.metrics.localprom import LocalPrometheus, OpenMetricsWriter, backfill
from autoscaler.metrics.wake import WAKE_CHUNK, read_wakes

T0 = 1_700_003_600.0
STEP = 30.0
POINTS = 11  # 5 minutes of samples


def build_leases(pods: int, leases: int, namespaces: int) -> list[LeaseTarget]:
    """`leases` leases of pods//leases pods each, spread over `namespaces` namespaces."""
    per = pods // leases
    return [LeaseTarget.of(f"ns-{i % namespaces:02d}",
                           [f"svc-{i:04d}-7d9f8c6b5-{j:05d}" for j in range(per)]) for i in range(leases)]


WAKE_QUERY = 'sum(rate(gw_requests_total{namespace="{{namespace}}",service="{{name}}"}[1m])) or vector(0)'


def lease_name(lease: LeaseTarget) -> str:
    """The Deployment a benchmark lease's pods belong to (``svc-NNNN``)."""
    return next(iter(lease.pods)).rsplit("-", 2)[0]


def write_data(leases: list[LeaseTarget], path: Path) -> int:
    """OpenMetrics for every pod; returns the number of series."""
    w = OpenMetricsWriter()
    times = [T0 - STEP * (POINTS - 1 - k) for k in range(POINTS)]
    series = 0
    for n, lease in enumerate(leases):
        for pod in sorted(lease.pods):
            base = {"namespace": lease.namespace, "pod": pod}
            load = 0.2 + (n % 10) / 10
            w.add("container_cpu_usage_seconds_total", {**base, "container": "triton", "image": "tritonserver",
                                                        "cpu": "total"}, [(t, load * (t - times[0])) for t in times])
            w.add("DCGM_FI_DEV_GPU_UTIL", {**base, "gpu": "0", "UUID": f"GPU-{pod}"}, [(t, 100 * load / 1.2)
                                                                                         for t in times])
            w.add("nv_inference_request_success", {**base, "model": "m", "version": "1"},
                  [(t, 10 * (t - times[0])) for t in times])
            w.add("nv_inference_queue_duration_us", {**base, "model": "m", "version": "1"},
                  [(t, 10 * load * 5000 * (t - times[0])) for t in times])
            w.add("inference_autoscaler:queue_time_us:rate1m", base, [(t, load * 5000) for t in times])
            w.add("inference_autoscaler:request_success:rate1m", base, [(t, 10.0) for t in times])
            w.add("vllm:kv_cache_usage_perc", {**base, "model_name": "m", "engine": "0"},
                  [(t, load / 1.2) for t in times])
            series += 7
        w.add("gw_requests_total", {"namespace": lease.namespace, "service": lease_name(lease)},
              [(t, (n % 3) * (t - times[0])) for t in times])  # a third of the leases idle
        series += 1
    w.write(path)
    return series


async def time_kind(client: PrometheusClient, kind: MetricKind, leases: list[LeaseTarget],
                    concurrency: int, repeats: int) -> dict[str, object]:
    """Median batched time over `repeats`, and one full per-lease pass."""
    batched: list[float] = []
    result: BatchResult | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = await fetch(client, kind, leases, at=T0)
        batched.append(time.perf_counter() - start)
    assert result is not None
    if result.error is not None:
        raise SystemExit(f"{kind.name}: batched query failed: {result.error.message}")
    ok = sum(isinstance(o, Ok) for o in result.outcomes.values())

    gate = asyncio.Semaphore(concurrency)
    per_lease_ok = 0

    async def one(lease: LeaseTarget) -> None:
        nonlocal per_lease_ok
        async with gate:
            r = await fetch(client, kind, [lease], at=T0)
        per_lease_ok += sum(isinstance(o, Ok) for o in r.outcomes.values())

    start = time.perf_counter()
    await asyncio.gather(*(one(lease) for lease in leases))
    per_lease = time.perf_counter() - start
    return {"batchedQueries": 1, "batchedSeconds": round(statistics.median(batched), 4),
            "batchedQueryChars": len(result.query), "podsOk": ok,
            "perLeaseQueries": len(leases), "perLeaseSeconds": round(per_lease, 4),
            "perLeasePodsOk": per_lease_ok, "speedup": round(per_lease / statistics.median(batched), 1)}


async def run(url: str, leases: list[LeaseTarget], concurrency: int, repeats: int) -> dict[str, object]:
    """Time every built-in kind."""
    registry = default_registry()
    out: dict[str, object] = {}
    settings = ClientSettings(url=url, timeout_s=60.0, max_connections=concurrency)
    async with PrometheusClient(settings) as client:
        await fetch(client, registry.create("kvCacheUsage"), leases, at=T0)  # warm caches
        for name in registry:
            out[name] = await time_kind(client, registry.create(name), leases, concurrency, repeats)
        kinds = [registry.create(name) for name in registry]
        together: list[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            await fetch_all(client, [(kind, leases) for kind in kinds], at=T0)
            together.append(time.perf_counter() - start)
        out["allKindsConcurrent"] = {"queries": len(kinds), "seconds": round(statistics.median(together), 4)}
        raw = registry.create("queueTime", {"source": "raw"})
        out["queueTime(raw)"] = await time_kind(client, raw, leases, concurrency, repeats)
        out["wake"] = await time_wakes(client, leases, repeats)
    return out


async def time_wakes(client: PrometheusClient, leases: list[LeaseTarget], repeats: int) -> dict[str, object]:
    """Scale to zero's wake queries, one per lease (every lease may scale to zero): merged ``WAKE_CHUNK`` to a
    query (the controller's way) against one query per lease; median of ``repeats``."""
    queries = {(lease.namespace, lease_name(lease)): WAKE_QUERY.replace("{{namespace}}", lease.namespace)
               .replace("{{name}}", lease_name(lease)) for lease in leases}
    timings: dict[int, list[float]] = {WAKE_CHUNK: [], 1: []}
    answers = {}
    for _ in range(repeats):
        for chunk in timings:
            start = time.perf_counter()
            answers[chunk] = await read_wakes(client, queries, at=T0, chunk=chunk)
            timings[chunk].append(time.perf_counter() - start)
    if answers[WAKE_CHUNK] != answers[1]:
        raise SystemExit("wake: merged and per-lease answers differ")
    merged, alone = (statistics.median(timings[c]) for c in (WAKE_CHUNK, 1))
    return {"leases": len(queries), "mergedQueries": -(-len(queries) // WAKE_CHUNK), "mergedSeconds": round(merged, 4),
            "perLeaseQueries": len(queries), "perLeaseSeconds": round(alone, 4),
            "valued": sum(w.value is not None for w in answers[1].values()), "speedup": round(alone / merged, 1)}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--leases", type=int, default=2_000)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    leases = build_leases(args.pods, args.leases, args.namespaces)
    with tempfile.TemporaryDirectory(prefix="promql-batch-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        series = write_data(leases, root / "data.om")
        backfill(root / "data.om", root / "tsdb")
        setup = time.perf_counter() - t
        with LocalPrometheus(root / "tsdb") as prom:
            kinds = asyncio.run(run(prom.url, leases, args.concurrency, args.repeats))
    print(json.dumps({"pods": sum(len(lease.pods) for lease in leases), "leases": len(leases),
                      "namespaces": args.namespaces, "series": series, "perLeaseConcurrency": args.concurrency,
                      "setupSeconds": round(setup, 1), "kinds": kinds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
