"""The control plane drives the real data plane through PodHooks: metrics endpoints follow the pods."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from apihelpers import FAST, eventually

from autoscaler.activator import HELD_HEADER
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from autoscaler.sandbox.load import LoadSpec
from autoscaler.sandbox.resources import DEPLOYMENTS
from autoscaler.telemetry import serve


async def test_pods_get_metrics_endpoints_and_lose_them(tmp_path: Path) -> None:
    """Ready pods are serving in the data plane with a metrics page; scaled-away pods are gone from it."""
    async with DataPlane(workdir=tmp_path, start_prometheus=False) as plane, \
            SandboxCluster(hooks=plane, **FAST) as c, aiohttp.ClientSession() as http:
        c.create_deployment("triton-a", replicas=2, serving={"concurrency": 4, "serviceTimeMs": 40})
        await c.wait_for_ready("default", "triton-a")
        sims = await eventually(lambda: [p for p in plane.deployment_pods("default", "triton-a") if p.ready])
        assert len(sims) == 2
        async with http.get(f"http://127.0.0.1:{sims[0].port}/metrics") as resp:
            assert resp.status == 200 and "nv_inference_request_success" in await resp.text()
        c.registry.patch(DEPLOYMENTS, "default", "triton-a", "application/merge-patch+json",
                         b'{"spec":{"replicas":1}}', subresource="scale")
        await eventually(lambda: len(plane.deployment_pods("default", "triton-a")) == 1, timeout_s=5)
        c.registry.delete(DEPLOYMENTS, "default", "triton-a")
        await eventually(lambda: not plane.deployment_pods("default", "triton-a"), timeout_s=5)


async def test_a_load_sent_over_http_is_recorded_once_from_when_it_was_sent(tmp_path: Path) -> None:
    """``start_load(via=URL)``: requests go over HTTP; the gateway records those it gets from when they were sent (a
    delay on the way is queue time, or what an activator says it held them), and the driver records only what the
    gateway never answered (a 504) as not served: every request once."""
    delayed = web.Application()

    async def slow_then_gateway(request: web.Request) -> web.StreamResponse:
        """Holds each request 0.3 s, then passes it to the gateway; or answers 504 itself."""
        if request.path.startswith("/timeout"):
            return web.Response(status=504)
        await asyncio.sleep(0.3)
        path, headers = request.path, dict(request.headers)
        if path.startswith("/told"):  # as an activator that says it held the request 0.1 s of the 0.3
            path, headers[HELD_HEADER] = path.removeprefix("/told"), "0.1"
        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{plane.gateway_port}{path}",
                                                        headers=headers, data=await request.read()) as r:
            return web.Response(status=r.status, body=await r.read(), headers=r.headers)

    delayed.router.add_route("*", "/{tail:.*}", slow_then_gateway)
    async with DataPlane(workdir=tmp_path, start_prometheus=False) as plane, SandboxCluster(hooks=plane, **FAST) as c:
        runner, port = await serve(delayed, "127.0.0.1", 0, shutdown_timeout=0.5)
        try:
            for name in ("served", "told"):
                c.create_deployment(name, replicas=1, serving={"concurrency": 8, "serviceTimeMs": 20})
                await c.wait_for_ready("default", name)
                await eventually(lambda n=name: [p for p in plane.deployment_pods("default", n) if p.ready])
            load = {"profile": {"type": "constant", "rate": 20}, "durationS": 1}
            for name, via in (("served", "/default/served/infer"), ("told", "/told/default/told/infer"),
                              ("lost", "/timeout/default/lost")):
                await plane.start_load("default", name, load, via=f"http://127.0.0.1:{port}{via}")
            for name in ("served", "told", "lost"):
                await plane.loads[("default", name)].wait()
        finally:
            for name in ("served", "told", "lost"):
                await plane.stop_load("default", name)
            await runner.cleanup()
        n = len(LoadSpec.from_dict(load).schedule().window(0.0, 10.0))  # type: ignore[union-attr]
        served, told, lost = (plane.load_stats("default", name) for name in ("served", "told", "lost"))
        assert n > 5 and served.sent == told.sent == n and served.unrouted == told.unrouted == 0
        q = np.frombuffer(served.queue_times, dtype=np.float64)
        assert (q >= 0.29).all() and (q < 0.5).all(), q  # the 0.3 s on the way is queue time
        q = np.frombuffer(told.queue_times, dtype=np.float64)
        assert (q >= 0.099).all() and (q < 0.25).all(), q  # what the activator says it held, not the whole way
        assert lost.sent == n and lost.unrouted == n
