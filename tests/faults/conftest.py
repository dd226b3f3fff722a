"""The fault suite's live sandbox: API server + simulated Triton pods + a real Prometheus, each controller
talking to the API server through its own FaultProxy, Prometheus behind one more, and the invariant
checker listening to every write throughout.

Module-scoped (one Prometheus per module); each test uses its own Deployments and its own checker.
Timings are compressed: 0.5 s loop, 1 s scrape and pod start-up, 3 s rate window, no scale-down window
(so a blind controller that wanted to scale down would do it at once: holding is the controller's doing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml

from autoscaler.controller import Controller
from autoscaler.kube.api import KubeApi
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from autoscaler.sandbox.faultproxy import FaultProxy
from autoscaler.sandbox.invariants import InvariantChecker
from tests.support import HEAVY, LiveEnv, P, wait_for  # noqa: F401 (re-exported: the tests import them from here)

POLICY = """
autoscaling:
  enable: true
  replicas: {default: {minimum: 1, maximum: 3}, limits: {maximum: 4, minimum: {lowerBound: 1, upperBound: 2}}}
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 20000, minimum: 1000, maximum: 0}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 3, maxSampleAgeSeconds: 20, timeoutSeconds: 1}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
  loopIntervalSeconds: 0.5
  fallback: {failureThreshold: 2, action: hold}
"""
INTERVAL_S = 0.5


@dataclass
class Env(LiveEnv):
    work: Path
    checkers: list[InvariantChecker] = field(default_factory=list)

    def checker(self, **kw: Any) -> InvariantChecker:
        c = InvariantChecker(self.cluster, POLICY, **kw)
        c.capture_logs()
        c.start()
        self.checkers.append(c)
        return c

    def kubeconfig_via(self, proxy: FaultProxy, name: str) -> Path:
        cfg = self.cluster.kubeconfig()
        cfg["clusters"][0]["cluster"]["server"] = proxy.url
        path = self.work / f"kubeconfig-{name}"
        path.write_text(yaml.safe_dump(cfg))
        return path

    @contextlib.asynccontextmanager
    async def controller(self, identity: str, checker: InvariantChecker | None, *, api_timeout_s: float = 10.0,
                         **kw: Any) -> AsyncIterator[tuple[Controller, FaultProxy, asyncio.Task[None]]]:
        """A controller whose API traffic goes through its own FaultProxy (attached to ``checker``)."""
        async with FaultProxy(self.cluster.url) as proxy:
            if checker is not None:
                checker.attach(identity, proxy)
            api = await KubeApi.connect(str(self.kubeconfig_via(proxy, identity)), timeout_s=api_timeout_s)
            ctl = Controller(api, self.settings(identity=identity, **kw))
            task = asyncio.create_task(ctl.run(api_client=api.api_client, serve_http=False))
            try:
                yield ctl, proxy, task
            finally:
                ctl.stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)
                await api.close()


def assert_clean(checker: InvariantChecker) -> None:
    violations = checker.finish()
    assert violations == [], "invariant violations:\n" + "\n".join(map(str, violations))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: Any) -> AsyncIterator[Env]:
    work = tmp_path_factory.mktemp("faults-env")
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    async with DataPlane(workdir=work / "dataplane") as dp:
        async with SandboxCluster(hooks=dp, startup_seconds=1.0, pending_seconds=0.2, terminating_seconds=0.5) as c:
            e = Env(c, dp, policy, work)
            yield e
            for ch in e.checkers:
                ch.stop()
