"""The control plane drives the real data plane through PodHooks: metrics endpoints follow the pods."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from apihelpers import FAST, eventually

from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from autoscaler.sandbox.resources import DEPLOYMENTS


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
