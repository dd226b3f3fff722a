"""A live sandbox for controller tests: API server + simulated Triton pods + a real Prometheus (1 s scrape).

Module-scoped so one Prometheus serves all tests of a module; each test uses its own Deployments.
Timings are compressed: 1 s pod start-up, 0.5 s loop, 3 s rate window, short stabilisation windows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio

from autoscaler.controller import Controller, Settings
from autoscaler.kube.api import KubeApi
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from tests.support import HEAVY, LiveEnv, wait_for  # noqa: F401 (re-exported: the tests import them from here)

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 3}, limits: {maximum: 4, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 20000, minimum: 1000, maximum: 0}}
    gpuUtilization: {allowed: true, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
    cpuUtilization: {allowed: false, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 3, maxSampleAgeSeconds: 20}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 8}
  loopIntervalSeconds: 0.5
  fallback: {failureThreshold: 2, action: hold}
"""


@dataclass
class Env(LiveEnv):
    kubeconfig: Path

    @contextlib.asynccontextmanager
    async def controller(self, **kw: Any) -> AsyncIterator[Controller]:
        api = await KubeApi.connect(str(self.kubeconfig))
        ctl = Controller(api, self.settings(**kw))
        task = asyncio.create_task(ctl.run(api_client=api.api_client, serve_http=False))
        try:
            yield ctl
        finally:
            ctl.stop.set()
            await asyncio.wait_for(task, 15)
            await api.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: Any) -> AsyncIterator[Env]:
    work = tmp_path_factory.mktemp("controller-env")
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    async with DataPlane(workdir=work / "dataplane") as dp:
        async with SandboxCluster(hooks=dp, startup_seconds=1.0, pending_seconds=0.2, terminating_seconds=0.5) as c:
            yield Env(c, dp, policy, c.write_kubeconfig(work / "kubeconfig"))


@contextlib.asynccontextmanager
async def tick_driven(tmp_path: Path, url: str, **settings: Any) -> AsyncIterator[tuple[Controller, KubeApi]]:
    """A controller the test drives with ``tick`` (no watches, no leader election) from ``tmp_path``'s kubeconfig and
    policy.yaml, its caches listed once; closed after (Events it did not post yet are dropped)."""
    api = await KubeApi.connect(str(tmp_path / "kubeconfig"), timeout_s=30)
    ctl = Controller(api, Settings(policy_file=str(tmp_path / "policy.yaml"), prometheus_url=url,
                                   leader_election=False, listen_port=0, **settings))
    try:
        for cache in (ctl.deployments, ctl.pods, ctl.configmaps):
            await cache.relist()
        yield ctl, api
    finally:
        await ctl.aclose()
        await api.close()
