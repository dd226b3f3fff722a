"""The sandbox's data plane: simulated pods, their metrics endpoints, the load, and the real Prometheus.

The control plane (API server, deployment controller, kubelet stand-in) tells the data plane about
pod lifecycle events with full Kubernetes pod objects; the data plane does the rest:

* ``pod_running``: a :class:`~autoscaler.sandbox.pods.SimPod` with its own metrics port, added as a
  scrape target (file SD) with the labels a PodMonitor would give; its GPU appears on the node's
  dcgm-exporter and its container on the node's kubelet cAdvisor endpoint.
* ``pod_ready``: the pod starts receiving traffic from the deployment's load.
* ``pod_terminating``: no new traffic; what it holds drains (``pod_drained`` tells when it is empty).
* ``pod_deleted``: its endpoint closes and its targets go (Prometheus writes stale markers).

In front of the pods, a gateway endpoint (job ``gateway``) counts what the load sends each Deployment, Ready pods
or not: ``sandbox_gateway_requests_total{namespace, service}`` (``service``: the Deployment's name) and
``sandbox_gateway_unrouted_requests_total`` (no Ready pod took it: a real gateway's 503). It is what wakes a lease
scaled to zero, as an ingress's or a gateway's request counter does on a real cluster. The gateway also takes real
HTTP requests, as a Service would: any method on ``/{namespace}/{deployment}/...`` is one request routed to a Ready
pod (least outstanding work), answered when the simulated pod finishes it (JSON: the pod, its queue and total
seconds), or 503 at once when no Ready pod takes it. Those requests count in the same counters and SLO figures as
the load's; one the load sent over HTTP (``start_load(..., via=URL)``, e.g. through an activator) is recorded from
when it was sent, what it waited on the way counted as queue time: what an activator says it held it
(``Inference-Autoscaler-Held-Seconds``; the HTTP hops themselves take no time, as the load's in-process requests'
do not), else the whole time since it was sent.

A pod belongs to the deployment named by its ``ownerReferences`` (a ``Deployment`` owner, or a
``ReplicaSet`` owner ``<deployment>-<hash>``) or else by its ``app`` label. Pod annotations
``sandbox.inference-autoscaler.io/kind`` (``triton`` | ``nim`` | ``vllm`` | ``nim-legacy``) and
``sandbox.inference-autoscaler.io/serving`` (JSON, see :class:`~autoscaler.serving.ServingConfig`)
configure it; the container name and CPU request come from ``spec.containers[0]``. With
``sandbox.inference-autoscaler.io/scrape: "false"`` its own endpoint is not a scrape target (a pod no PodMonitor
selects); its GPU is still on the node's dcgm-exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from autoscaler.activator import HELD_HEADER, Activator, ActivatorSettings
from autoscaler.kube.api import KubeApi
from autoscaler.kube.workloads import max_num_seqs
from autoscaler.metrics.localprom import free_port
from autoscaler.policy.snapshot_json import parse_quantity
from autoscaler.sandbox.controllers import ANN_KIND, ANN_SCRAPE, ANN_SERVING, is_ready
from autoscaler.sandbox.load import RECORDED_HEADER, SENT_AT_HEADER, LoadDriver, LoadSpec, LoadStats, Router
from autoscaler.sandbox.pods import (
    DEFAULT_NODE,
    NIM_KINDS,
    SERVING_KINDS,
    MetricsServer,
    NodeExporters,
    SimPod,
    node_dcgm_page,
    node_kubelet_page,
    pod_page,
)
from autoscaler.sandbox.prometheus import JOB_DCGM, JOB_GATEWAY, JOB_KUBELET, JOB_PODS, PrometheusServer
from autoscaler.serving import ServingConfig
from autoscaler.telemetry import serve

log = logging.getLogger(__name__)

RESERVED_TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance"}
DCGM_NAMESPACE = "gpu-operator"

PodKey = tuple[str, str]


def parse_cpu(q: Any) -> float:
    """Kubernetes CPU quantity -> cores ("500m" -> 0.5, "2" -> 2.0)."""
    if q is None:
        return 1.0
    try:
        return float(parse_quantity(str(q)))
    except ValueError:
        return 1.0


def sanitize_label(name: str) -> str:
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "_" + out if out[:1].isdigit() else out


def deployment_of(pod: dict[str, Any]) -> str:
    """The deployment a pod belongs to: owner reference, else the ``app`` label, else its name's prefix."""
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        kind = ref.get("kind")
        if kind == "Deployment":
            return str(ref["name"])
        if kind == "ReplicaSet":
            return str(ref["name"]).rsplit("-", 1)[0]
    labels = meta.get("labels") or {}
    if labels.get("app"):
        return str(labels["app"])
    parts = str(meta.get("name", "")).rsplit("-", 2)
    return parts[0]


@contextlib.asynccontextmanager
async def activator_process(kubeconfig: Path, upstream: str, *args: str,
                            timeout_s: float = 30.0) -> AsyncIterator[str]:
    """``autoscaler activator`` in its own process, as in a cluster, on a free loopback port (``args``: more flags):
    its URL once ``/readyz`` answers; terminated (killed after 10 s) on exit."""
    url = f"http://127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autoscaler.cli", "activator", "--kubeconfig", str(kubeconfig),
        "--listen", url.removeprefix("http://"), "--upstream", upstream, *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as s, asyncio.timeout(timeout_s):
            while proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
        if proc.returncode is not None:
            raise RuntimeError(f"the activator exited with {proc.returncode}")
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _tokens(body: bytes) -> tuple[float | None, float | None]:
    """A request's prompt and output tokens, from its JSON body's ``promptTokens`` / ``outputTokens`` if any."""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    out: list[float | None] = []
    for key in ("promptTokens", "outputTokens"):
        v = doc.get(key)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None)
    return out[0], out[1]


def pod_key(pod: dict[str, Any]) -> PodKey:
    meta = pod.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta["name"]))


class DataPlane:
    """Simulated inference pods + load generator + real Prometheus, driven by pod lifecycle events."""

    def __init__(self, *, prometheus_port: int = 0, workdir: Path | None = None, scrape_interval_s: float = 1.0,
                 rule_files: Sequence[Path] | None = None, clock: Callable[[], float] = time.monotonic,
                 start_prometheus: bool = True) -> None:
        self.prometheus = PrometheusServer(port=prometheus_port, workdir=workdir, scrape_interval_s=scrape_interval_s,
                                           rule_files=rule_files)
        self.start_prometheus = start_prometheus
        self.clock = clock
        self.metrics = MetricsServer()
        self.pods: dict[PodKey, SimPod] = {}
        self.nodes: dict[str, NodeExporters] = {}
        self.loads: dict[PodKey, LoadDriver] = {}
        self.stats: dict[PodKey, LoadStats] = {}
        self.gateway_port = 0
        self.routers: dict[PodKey, Router] = {}
        self._activators = contextlib.AsyncExitStack()
        self._seed = 0

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    async def start(self) -> None:
        await self.metrics.start()
        self.gateway_port = await self.metrics.open(self._gateway_page, self._gateway_request)
        self.prometheus.set_target(JOB_GATEWAY, f"127.0.0.1:{self.gateway_port}", {"job": JOB_GATEWAY})
        if self.start_prometheus:
            await self.prometheus.start()
        else:
            self.prometheus.workdir.mkdir(parents=True, exist_ok=True)
            self.prometheus.write_config()

    async def stop(self) -> None:
        for driver in list(self.loads.values()):
            await driver.stop()
        self.loads.clear()
        await self._activators.aclose()
        try:
            await self.prometheus.stop()
        finally:
            await self.metrics.stop()
            self.pods.clear()
            self.nodes.clear()

    async def __aenter__(self) -> DataPlane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- pod lifecycle -----------------------------------------------------------------------------

    async def pod_running(self, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        if key in self.pods:
            return
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        ann = meta.get("annotations") or {}
        containers = spec.get("containers") or [{}]
        c0 = containers[0]
        kind = str(ann.get(ANN_KIND, "triton")).lower()
        if kind not in SERVING_KINDS:
            log.warning("pod %s/%s: unknown %s %r, using triton", *key, ANN_KIND, kind)
            kind = "triton"
        try:
            serving = ServingConfig.from_annotation(ann.get(ANN_SERVING))
        except (ValueError, TypeError) as exc:
            log.warning("pod %s/%s: bad %s (%s); using defaults", *key, ANN_SERVING, exc)
            serving = ServingConfig()
        seqs = max_num_seqs({"spec": {"template": {"spec": spec}}}) if kind in ("vllm", "nim", "nim-legacy") else None
        if seqs is not None:  # vLLM runs at most --max-num-seqs requests at once, whatever the annotation says
            serving = replace(serving, concurrency=seqs, instances=None)
        requests = (c0.get("resources") or {}).get("requests") or {}
        self._seed += 1
        node_name = str(spec.get("nodeName") or DEFAULT_NODE)
        sim = SimPod(namespace=key[0], name=key[1], deployment=deployment_of(pod),
                     container=str(c0.get("name") or kind), kind=kind, uid=str(meta.get("uid") or ""),
                     node=node_name, labels=dict(meta.get("labels") or {}), serving=serving,
                     cpu_request_cores=parse_cpu(requests.get("cpu")), clock=self.clock, seed=self._seed)
        node = await self._node(node_name)
        sim.gpu_index = node.next_gpu_index()
        sim.port = await self.metrics.open(pod_page(sim))
        self.pods[key] = sim
        node.pods[key] = sim
        if str(ann.get(ANN_SCRAPE, "true")).lower() != "false":
            self.prometheus.set_target(JOB_PODS, f"127.0.0.1:{sim.port}", self._target_labels(sim))
        if is_ready(pod):
            sim.ready = True

    def _target_labels(self, sim: SimPod) -> dict[str, str]:
        labels = {}
        for k, v in sim.labels.items():  # podTargetLabels: the pod's own labels
            name = sanitize_label(k)
            if name not in RESERVED_TARGET_LABELS and not name.startswith("__"):
                labels[name] = str(v)
        labels.update({
            "namespace": sim.namespace, "pod": sim.name, "container": sim.container, "endpoint": "metrics",
            "job": f"{sim.namespace}/{sim.deployment}",
            "__metrics_path__": "/v1/metrics" if sim.kind in NIM_KINDS else "/metrics",
        })
        return labels

    async def _node(self, name: str) -> NodeExporters:
        node = self.nodes.get(name)
        if node is not None:
            return node
        node = NodeExporters(name)
        node.dcgm_port = await self.metrics.open(node_dcgm_page(node))
        node.kubelet_port = await self.metrics.open(node_kubelet_page(node))
        self.nodes[name] = node
        self.prometheus.set_target(JOB_DCGM, f"127.0.0.1:{node.dcgm_port}", {
            "namespace": DCGM_NAMESPACE, "pod": node.dcgm_pod, "container": "exporter", "endpoint": "metrics",
            "service": "dcgm-exporter", "job": "dcgm-exporter", "node": name})
        self.prometheus.set_target(JOB_KUBELET, f"127.0.0.1:{node.kubelet_port}", {
            "job": "kubelet", "metrics_path": "/metrics/cadvisor", "node": name, "service": "kubelet",
            "endpoint": "https-metrics"})
        return node

    async def pod_ready(self, pod: dict[str, Any]) -> None:
        sim = self.pods.get(pod_key(pod))
        if sim is None:
            await self.pod_running(pod)
            sim = self.pods[pod_key(pod)]
        if not sim.terminating:
            sim.ready = True

    async def pod_terminating(self, pod: dict[str, Any]) -> None:
        sim = self.pods.get(pod_key(pod))
        if sim is not None:
            sim.terminate()

    def pod_drained(self, namespace: str, name: str) -> bool:
        """True when the pod holds no request (or is unknown): safe to delete after terminating."""
        sim = self.pods.get((namespace, name))
        return sim is None or sim.drained

    async def pod_deleted(self, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        sim = self.pods.pop(key, None)
        if sim is None:
            return
        sim.terminate()
        self.prometheus.remove_target(JOB_PODS, f"127.0.0.1:{sim.port}")
        await self.metrics.close(sim.port)
        node = self.nodes.get(sim.node)
        if node is not None:
            node.pods.pop(key, None)

    # -- the activator -----------------------------------------------------------------------------

    def scrape_activator(self, url: str) -> None:
        """Have Prometheus scrape the activator at ``url`` (job ``activator``, its own labels kept)."""
        self.prometheus.set_target(JOB_GATEWAY, url.removeprefix("http://"), {"job": "activator"})

    @property
    def upstream(self) -> str:
        """Every lease's upstream for an activator in front of the gateway (an ``--upstream`` template)."""
        return f"http://127.0.0.1:{self.gateway_port}/{{namespace}}/{{name}}"

    async def start_activator(self, kubeconfig: Path, **settings: Any) -> str:
        """An activator in this process, in front of the gateway, readiness from the API server of ``kubeconfig``,
        scraped by Prometheus; stopped with the data plane. Returns its URL."""
        stack = self._activators
        api = await KubeApi.connect(str(kubeconfig))
        stack.push_async_callback(api.close)
        act = Activator(api, ActivatorSettings(upstream=self.upstream, **settings))
        await act.start()
        stack.push_async_callback(act.stop)
        runner, port = await serve(act.app(), "127.0.0.1", 0, shutdown_timeout=1.0)
        stack.push_async_callback(runner.cleanup)
        url = f"http://127.0.0.1:{port}"
        self.scrape_activator(url)
        return url

    # -- load --------------------------------------------------------------------------------------

    def deployment_pods(self, namespace: str, deployment: str) -> list[SimPod]:
        return [p for (ns, _), p in self.pods.items() if ns == namespace and p.deployment == deployment]

    async def start_load(self, namespace: str, deployment: str, load: dict[str, Any], *, via: str | None = None) -> None:
        """Start (or replace) the load on a deployment, from a scenario ``load`` block; ``via``: send it as HTTP
        requests to this URL (an activator in front of the gateway) instead of to the pods directly."""
        spec = LoadSpec.from_dict(load)
        key = (namespace, deployment)
        old = self.loads.pop(key, None)
        if old is not None:
            await old.stop()
        stats = self.stats.setdefault(key, LoadStats())
        driver = LoadDriver(spec, lambda: self.deployment_pods(namespace, deployment), stats=stats, clock=self.clock,
                            via=via)
        self.loads[key] = driver
        driver.start()

    async def stop_load(self, namespace: str, deployment: str) -> None:
        driver = self.loads.pop((namespace, deployment), None)
        if driver is not None:
            await driver.stop()

    def _gateway_page(self, path: str) -> str | None:
        if path != "/metrics":
            return None
        lines = []
        for name, attr, help_text in (
                ("sandbox_gateway_requests_total", "sent", "Requests the gateway received for the service."),
                ("sandbox_gateway_unrouted_requests_total", "unrouted",
                 "Requests no Ready pod took (answered 503).")):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            lines += [f'{name}{{namespace="{ns}",service="{dep}"}} {getattr(st, attr)}'
                      for (ns, dep), st in sorted(self.stats.items())]
        return "\n".join(lines) + "\n"

    async def _gateway_request(self, request: web.Request) -> web.Response:
        """One request sent through the gateway to ``/{namespace}/{deployment}/...`` (see the module's text)."""
        parts = request.path.strip("/").split("/")
        if len(parts) < 2 or not all(parts[:2]):
            return web.json_response({"message": "the gateway routes /{namespace}/{deployment}/..."}, status=404)
        ns, dep = parts[0], parts[1]
        tokens = _tokens(await request.read())
        router = self.routers.get((ns, dep))
        if router is None:
            router = self.routers[(ns, dep)] = Router(lambda: self.deployment_pods(ns, dep))
        stats = self.load_stats(ns, dep)
        now = self.clock()
        sent, before = now, 0.0
        with contextlib.suppress(ValueError):  # sent by the sandbox's load: recorded from when it was sent
            sent = min(now, float(request.headers.get(SENT_AT_HEADER, now)))
            sent = sent if math.isfinite(sent) else now
            # what it waited on the way: through an activator, what the activator says it held it (the way itself
            # takes no time, as for the load's in-process requests), else all the time since it was sent
            held = float(request.headers.get(HELD_HEADER, "nan"))
            before = held if 0 <= held <= now - sent else now - sent
        before = before if math.isfinite(before) else 0.0
        recorded = {RECORDED_HEADER: "1"}
        pod = router.pick(now)
        adm = pod.submit(now, *tokens) if pod is not None else None
        if pod is None or adm is None or not adm.accepted:
            stats.record(sent, math.nan, math.nan)
            why = "no Ready pod" if pod is None else f"pod {pod.name} refused it (queue full)"
            return web.json_response({"message": f"{ns}/{dep}: {why}"}, status=503, headers=recorded)
        stats.record(sent, before + adm.queue_seconds, before + adm.latency_seconds)
        await asyncio.sleep(max(0.0, pod.to_wall(adm.finish) - self.clock()))
        return web.json_response({"pod": pod.name, "queueSeconds": adm.queue_seconds,
                                  "latencySeconds": adm.latency_seconds}, headers=recorded)

    def load_stats(self, namespace: str, deployment: str) -> LoadStats:
        """What the load generator did for a deployment (arrivals, queue times, SLO counts)."""
        return self.stats.setdefault((namespace, deployment), LoadStats(started_at=self.clock()))

    def load_summary(self, target_queue_time_us: float = 10000.0) -> dict[str, dict[str, Any]]:
        """Per ``namespace/deployment``: requests, mean request rate, SLO-violation fraction, ..."""
        out: dict[str, dict[str, Any]] = {}
        now = self.clock()
        for (ns, dep), st in self.stats.items():
            slo = st.slo(target_queue_time_us)
            elapsed = max(1e-9, now - st.started_at)
            out[f"{ns}/{dep}"] = {**slo, "requestRate": st.requests / elapsed, "elapsedS": elapsed}
        return out

