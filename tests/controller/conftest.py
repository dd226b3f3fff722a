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
from tests.support import wait_for  # noqa: F401 (re-exported: the tests import it from here)

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

SERVING = {"concurrency": 2, "serviceTimeMs": 50}  # 40 requests/s per ready pod
HEAVY = {"profile": {"type": "constant", "rate": 150}}


@dataclass
class Env:
    cluster: SandboxCluster
    dataplane: DataPlane
    kubeconfig: Path
    policy_file: Path

    def deployment(self, name: str, annotations: dict[str, str], replicas: int = 1, namespace: str = "default") -> None:
        self.cluster.ensure_namespace(namespace)
        ann = {"inference-autoscaler.io/enabled": "true", **annotations}
        self.cluster.create_deployment(name, namespace=namespace, replicas=replicas, kind="triton", serving=SERVING,
                                       annotations=ann)

    def get(self, name: str, namespace: str = "default") -> dict[str, Any]:
        from autoscaler.sandbox.resources import DEPLOYMENTS
        return self.cluster.registry.get(DEPLOYMENTS, namespace, name)

    def replicas(self, name: str, namespace: str = "default") -> int:
        return int(self.get(name, namespace)["spec"]["replicas"])

    def events(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        from autoscaler.sandbox.resources import EVENTS
        items = self.cluster.store.list_objects(EVENTS.storage_key, namespace)
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    async def load(self, name: str, load: dict[str, Any], namespace: str = "default") -> None:
        await self.dataplane.start_load(namespace, name, load)

    def settings(self, **kw: Any) -> Settings:
        base: dict[str, Any] = {"policy_file": str(self.policy_file), "prometheus_url": self.dataplane.prometheus_url,
                                "leader_election": False, "listen_port": 0, "state_granularity_s": 2.0,
                                "status_min_interval_s": 1.0}
        base.update(kw)
        return Settings(**base)

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
            yield Env(c, dp, c.write_kubeconfig(work / "kubeconfig"), policy)
