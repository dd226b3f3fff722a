"""Helpers shared by the live test areas (controller, faults): polling, and the live sandbox's handles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.controller import Settings
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from autoscaler.sandbox.resources import DEPLOYMENTS, EVENTS

P = "inference-autoscaler.io/"
SERVING = {"concurrency": 2, "serviceTimeMs": 50}  # 40 requests/s per ready pod
HEAVY = {"profile": {"type": "constant", "rate": 150}}


async def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.1) -> float:
    """Poll ``cond`` until true; return the seconds it took; fail with ``what`` after the timeout."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(step_s)
    return time.monotonic() - t0


@dataclass
class LiveEnv:
    """A sandbox API server with simulated Triton pods and a real Prometheus, and what tests do with them."""

    cluster: SandboxCluster
    dataplane: DataPlane
    policy_file: Path

    def deployment(self, name: str, annotations: dict[str, str] | None = None, replicas: int = 1,
                   namespace: str = "default", **fields: Any) -> None:
        """An opted-in Triton Deployment (``annotations`` without the prefix's ``enabled``)."""
        self.cluster.ensure_namespace(namespace)
        ann = {P + "enabled": "true", **(annotations or {})}
        self.cluster.create_deployment(name, namespace=namespace, replicas=replicas, kind="triton", serving=SERVING,
                                       annotations=ann, **fields)

    def get(self, name: str, namespace: str = "default") -> dict[str, Any]:
        obj = self.cluster.store.get(DEPLOYMENTS.storage_key, namespace, name)
        assert obj is not None, f"{namespace}/{name} is gone"
        return obj

    def replicas(self, name: str, namespace: str = "default") -> int:
        return int(self.get(name, namespace)["spec"]["replicas"])

    def scale(self, name: str, replicas: int, namespace: str = "default") -> None:
        """A human's ``kubectl scale`` (straight into the registry, not through any controller)."""
        obj = self.cluster.registry.get(DEPLOYMENTS, namespace, name)
        obj["spec"]["replicas"] = replicas
        self.cluster.registry.update(DEPLOYMENTS, namespace, name, obj)

    def events(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
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
