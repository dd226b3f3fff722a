"""Run the real controller against the sandbox through a recording proxy: every (verb, path) it sends.

The requests are turned into Kubernetes authorisation attributes the way kube-apiserver's
RequestInfoFactory does (GET on a collection is list, or watch with ``watch=true``; a list/watch with
``fieldSelector=metadata.name=X`` is authorised against resourceName X), so the RBAC test compares
the manifests with what the code actually does, leader election (kubernetes-asyncio) included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from autoscaler.controller import Controller, Settings
from autoscaler.kube.api import KubeApi
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.faultproxy import FaultProxy


@dataclass(frozen=True, order=True)
class Attrs:
    verb: str
    group: str
    resource: str  # "deployments" or "deployments/scale"
    namespace: str  # "" when cluster-wide
    name: str  # "" when none


def attributes(method: str, path_qs: str) -> Attrs:
    url = urlsplit(path_qs)
    q = parse_qs(url.query)
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        raise AssertionError(f"non-resource request {method} {path_qs}: would need nonResourceURLs")
    ns = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    if method == "GET" and not name:
        verb = "watch" if q.get("watch", [""])[0] in ("true", "1") else "list"
        for sel in q.get("fieldSelector", [""])[0].split(","):
            if sel.startswith("metadata.name="):
                name = sel.split("=", 1)[1]
    else:
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[method]
    return Attrs(verb, group, f"{resource}/{sub}" if sub else resource, ns, name)


@dataclass
class RecordingProxy(FaultProxy):
    """A FaultProxy that records each request and can run a hook before forwarding it."""

    seen: list[tuple[str, str]] = field(default_factory=list)
    before: Callable[[str, str], Awaitable[None]] | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs))
        if self.before is not None:
            await self.before(request.method, request.path)
        return await super()._handle(request)

    async def start(self) -> None:
        await super().start()
        # Open watch streams would hold the shutdown for the runner's default grace: keep it short.
        self._runner._shutdown_timeout = 0.5

    def attributes(self) -> set[Attrs]:
        return {attributes(m, p) for m, p in self.seen}


class FakeClock:
    """Decision time that moves ``step_s`` per reading, so Event repeats get PATCHed within seconds."""

    def __init__(self, step_s: float) -> None:
        self.t = time.time()
        self.step_s = step_s

    def __call__(self) -> float:
        self.t += self.step_s
        return self.t


async def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_controller(cluster: SandboxCluster, proxy: RecordingProxy, kubeconfig: Any,
                             **settings: Any) -> Any:
    api = await KubeApi.connect(str(kubeconfig))
    base: dict[str, Any] = {"namespace": "inference-autoscaler", "leader_election": True, "identity": "test",
                            "lease_duration_s": 3.0, "renew_deadline_s": 1.5, "retry_period_s": 1.0,
                            "listen_port": 0, "status_min_interval_s": 0.0}
    base.update(settings)
    ctl = Controller(api, Settings(**base), clock=FakeClock(15.0))
    task = asyncio.create_task(ctl.run(api_client=api.api_client, serve_http=False))
    try:
        yield ctl
    finally:
        ctl.stop.set()
        await asyncio.wait_for(task, 15)
        await api.close()
