"""What the activator adds to a request to a lease that has a Ready replica: latency and throughput, against sending
the same requests straight to the upstream.

    python benchmarks/activator_overhead.py [--requests 4000] [--concurrency 32] [--body-kb 4] [--json]

The upstream is a model server stand-in that answers each request after ``--service-ms`` (default 0: the
activator's own cost, nothing to hide it). It and the activator (`autoscaler activator`, the real command, against a
sandbox API server in this process) run in their own processes; this process is the load: ``--concurrency`` clients
sending ``--requests`` POSTs of ``--body-kb`` each, first straight to the upstream, then through the activator, then
straight again (the two direct runs bracket the machine's noise). Prints p50/p99 latency and requests/s of each, and
the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

UPSTREAM = """
import asyncio, sys
from aiohttp import web
delay = float(sys.argv[2]) / 1000
async def infer(request):
    body = await request.read()
    if delay:
        await asyncio.sleep(delay)
    return web.Response(body=body[:64], content_type="application/json")
app = web.Application(client_max_size=1 << 26)
app.router.add_route("*", "/{tail:.*}", infer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def wait_http(url: str, timeout_s: float = 30.0) -> None:
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            if time.monotonic() - t0 > timeout_s:
                raise SystemExit(f"{url} never answered 200")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def process(*argv: str) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        await proc.wait()


async def load(url: str, n: int, concurrency: int, body: bytes) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    todo = iter(range(n))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def client() -> None:
            nonlocal errors
            for _ in todo:
                t0 = time.perf_counter()
                async with s.post(url, data=body) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": n, "errors": errors, "rps": n / wall, "p50Ms": float(np.percentile(lat, 50)),
            "p99Ms": float(np.percentile(lat, 99))}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from autoscaler.metrics.localprom import free_port
    from autoscaler.sandbox.cluster import SandboxCluster
    from autoscaler.sandbox.dataplane import activator_process

    up = free_port()
    body = b"x" * (args.body_kb * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
            await c.controllers.stop()
            c.create_ready_deployment("m", namespace="ml", replicas=1,
                                      annotations={"inference-autoscaler.io/enabled": "true"})
            kc = c.write_kubeconfig(Path(tmp) / "kubeconfig")
            async with process(sys.executable, "-c", UPSTREAM, str(up), str(args.service_ms)), \
                    activator_process(kc, f"http://127.0.0.1:{up}", "--log-level", "warning") as act:
                await wait_http(f"http://127.0.0.1:{up}/ready")
                direct_url = f"http://127.0.0.1:{up}/v2/models/m/infer"
                via_url = f"{act}/ml/m/v2/models/m/infer"
                await load(via_url, 200, args.concurrency, body)  # warm both paths
                await load(direct_url, 200, args.concurrency, body)
                runs = {"direct": await load(direct_url, args.requests, args.concurrency, body),
                        "activator": await load(via_url, args.requests, args.concurrency, body),
                        "direct again": await load(direct_url, args.requests, args.concurrency, body)}
    best = max(runs["direct"]["rps"], runs["direct again"]["rps"])
    p50 = min(runs["direct"]["p50Ms"], runs["direct again"]["p50Ms"])
    return {"settings": vars(args), "runs": runs,
            "ratios": {"throughput": runs["activator"]["rps"] / best, "p50": runs["activator"]["p50Ms"] / p50,
                       "addedP50Ms": runs["activator"]["p50Ms"] - p50}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--body-kb", type=int, default=4)
    ap.add_argument("--service-ms", type=float, default=0.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{'path':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in out["runs"].items():
        print(f"{name:14} {r['rps']:8.0f} {r['p50Ms']:8.2f} {r['p99Ms']:8.2f} {r['errors']:7d}")
    ratios = out["ratios"]
    print(f"through the activator: {ratios['throughput']:.2f}x the direct throughput, p50 {ratios['p50']:.2f}x "
          f"(+{ratios['addedP50Ms']:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
