"""SandboxCluster: the API server, its store and the controllers as one object for tests and demos.

Usage::

    from autoscaler.sandbox.cluster import SandboxCluster

    async with SandboxCluster(startup_seconds=0.2) as c:     # API server on a free loopback port
        c.url                                                # "http://127.0.0.1:PORT"
        c.write_kubeconfig(tmp_path / "kubeconfig")          # for kubectl / kubernetes-asyncio
        c.create_deployment("triton-a", replicas=2)          # or c.create(<any manifest dict>)
        await c.wait_for_ready("default", "triton-a")        # all replicas Ready
        c.store, c.registry                                  # direct access, no HTTP

``hooks`` takes a :class:`~autoscaler.sandbox.hooks.PodHooks` (the data plane); ``token`` makes the
server require ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from autoscaler.sandbox.apiserver import ApiServer
from autoscaler.sandbox.controllers import Controllers, Timing
from autoscaler.sandbox.errors import ApiError
from autoscaler.sandbox.hooks import PodHooks
from autoscaler.sandbox.registry import IMMORTAL_NAMESPACES, Registry
from autoscaler.sandbox.resources import DEPLOYMENTS, NAMESPACES, PODS, by_kind
from autoscaler.sandbox.scenario import Scenario, ScenarioDeployment, deployment_manifest
from autoscaler.sandbox.store import Store

Obj = dict[str, Any]


class SandboxCluster:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 hooks: PodHooks | None = None, startup_seconds: float = 5.0, pending_seconds: float = 0.5,
                 terminating_seconds: float = 1.0, history_size: int = 10_000,
                 bookmark_interval_s: float = 10.0, rolling_updates: bool = False) -> None:
        self.host, self.port, self.token = host, port, token
        self.store = Store(history_size=history_size)
        self.registry = Registry(self.store)
        self.server = ApiServer(self.registry, token=token, bookmark_interval_s=bookmark_interval_s)
        self.controllers = Controllers(self.registry, hooks, Timing(startup_seconds=startup_seconds,
                                                                     pending_seconds=pending_seconds,
                                                                     terminating_seconds=terminating_seconds,
                                                                     rolling_updates=rolling_updates))
        for ns in sorted(IMMORTAL_NAMESPACES):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self._started = False

    @classmethod
    def from_scenario(cls, scenario: Scenario, **kwargs: Any) -> SandboxCluster:
        kwargs.setdefault("startup_seconds", scenario.startupSeconds)
        kwargs.setdefault("pending_seconds", scenario.pendingSeconds)
        kwargs.setdefault("terminating_seconds", scenario.terminatingSeconds)
        cluster = cls(**kwargs)
        cluster.apply_scenario(scenario)
        return cluster

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.server.start(self.host, self.port)
        await self.controllers.start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.server.stop()
        await self.controllers.stop()

    async def __aenter__(self) -> SandboxCluster:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    # ------------------------------------------------------------------ kubeconfig
    def kubeconfig(self, namespace: str = "default") -> Obj:
        user: Obj = {"token": self.token} if self.token else {"username": "sandbox"}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": user}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                         "namespace": namespace}}],
            "current-context": "sandbox",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this cluster (atomically, mode 0600) and return its path."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ objects
    def create(self, manifest: Obj) -> Obj:
        """Create any served object from a manifest, as a POST would (validation included)."""
        rt = by_kind(str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
        if rt is None:
            raise ValueError(f"the sandbox does not serve {manifest.get('apiVersion')} {manifest.get('kind')}")
        ns = (manifest.get("metadata") or {}).get("namespace") or "default"
        obj, _ = self.registry.create(rt, ns if rt.namespaced else "", manifest)
        return obj

    def create_deployment(self, name: str | Obj | ScenarioDeployment, **fields: Any) -> Obj:
        """Create a deployment from a name plus scenario fields (replicas, kind, annotations, serving,
        container, ...), from a scenario entry, or from a full Deployment manifest."""
        if isinstance(name, dict) and name.get("kind") == "Deployment":
            return self.create(name)
        entry = name if isinstance(name, (dict, ScenarioDeployment)) else {"name": name, **fields}
        return self.create(deployment_manifest(entry))

    def create_ready_deployment(self, name: str, *, namespace: str = "default", replicas: int = 1,
                                started: float | None = None, grow: Callable[[Obj], None] | None = None,
                                **fields: Any) -> Obj:
        """A Deployment and its ``replicas`` Ready pods (``<name>-5d8f7c9b4-p0000``, ...) written straight into the
        store, as if its rollout had finished at ``started`` (epoch seconds; now by default), for tests and
        benchmarks that stop the simulated controllers first (``await c.controllers.stop()``): building thousands
        of Deployments through them takes minutes, and a test that backfills Prometheus needs pods of known names
        and start times. ``fields`` as :meth:`create_deployment`'s; ``grow`` edits each object before it is stored.
        Returns the Deployment."""
        self.ensure_namespace(namespace)
        dep = self.create_deployment(name, namespace=namespace, replicas=replicas, **fields)
        dep["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                         "updatedReplicas": replicas, "observedGeneration": dep["metadata"].get("generation", 1)}
        if grow is not None:
            grow(dep)
        self.store.replace(DEPLOYMENTS.storage_key, dep)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if started is None else started))
        tmpl = dep["spec"]["template"]
        for k in range(replicas):
            pod = self.create({"apiVersion": "v1", "kind": "Pod", "spec": tmpl["spec"],
                               "metadata": {"name": f"{name}-5d8f7c9b4-p{k:04d}", "namespace": namespace,
                                            "labels": dict(tmpl["metadata"]["labels"]),
                                            "annotations": dict(tmpl["metadata"].get("annotations") or {})}})
            pod["status"] = {"phase": "Running", "startTime": stamp, "podIP": "127.0.0.1",
                             "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}
            if grow is not None:
                grow(pod)
            self.store.replace(PODS.storage_key, pod)
        return dep

    def ensure_namespace(self, name: str) -> None:
        if not self.store.exists(NAMESPACES.storage_key, "", name):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def apply_scenario(self, scenario: Scenario) -> None:
        for ns in scenario.namespaces:
            self.ensure_namespace(ns)
        for d in scenario.deployments:
            self.ensure_namespace(d.namespace)
            self.create_deployment(d)
        for manifest in scenario.objects:
            obj_ns = (manifest.get("metadata") or {}).get("namespace")
            if isinstance(obj_ns, str) and obj_ns:
                self.ensure_namespace(obj_ns)
            self.create(manifest)

    async def wait_for_ready(self, namespace: str, name: str, replicas: int | None = None,
                             timeout_s: float = 30.0) -> Obj:
        """Wait until the deployment's pods are all Ready and of the current template (``replicas``
        defaults to spec.replicas): a rollout in progress is not ready."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                dep = self.registry.get(DEPLOYMENTS, namespace, name)
            except ApiError:
                dep = None
            if dep is not None:
                want = dep["spec"].get("replicas", 1) if replicas is None else replicas
                status = dep.get("status") or {}
                if (status.get("readyReplicas", 0) == want and status.get("replicas", 0) == want
                        and status.get("updatedReplicas", 0) == want
                        and status.get("observedGeneration") == dep["metadata"].get("generation")):
                    return dep
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployment {namespace}/{name} not ready after {timeout_s}s: "
                                   f"{(dep or {}).get('status')}")
            await asyncio.sleep(0.05)
