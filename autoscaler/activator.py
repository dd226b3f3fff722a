"""The activator: holds a lease's requests while it has no Ready replica, so that scaling to zero loses none.

A lease at zero replicas has no pod to take a request: a Service with no endpoints refuses the connection and an
ingress answers 503. Put the activator in front of such a lease (an HTTPRoute or Ingress backend, or the URL the
clients call) and a request that arrives while the lease has no Ready replica waits here instead, up to
``hold_timeout_s``, and is forwarded as soon as the Deployment reports a Ready replica, as Knative's activator and
KEDA's HTTP add-on do. The activator does not scale anything itself: the controller does, woken by what the
activator counts (``autoscaler_activator_requests_total``, scraped by Prometheus) through the policy's
``scaleToZero.wakeQuery``. One decision maker, one signal path.

Routing: ``/{namespace}/{deployment}/{path}`` is forwarded to the upstream URL template (default
``http://{name}.{namespace}.svc:8000``, the lease's Service; a lease's ``inference-autoscaler.io/upstream``
annotation overrides it) + ``/{path}``, with the method, the query, the body and the end-to-end headers. The answer
is streamed back (a token stream passes through as it comes).

What it does with a request:

* the Deployment is not a lease (no ``inference-autoscaler.io/enabled: "true"``) or does not exist: 404 saying so;
* the lease has a Ready replica: forwarded at once;
* it has none: held until it has (504 after ``hold_timeout_s``; 503 with ``Retry-After`` when the lease already
  holds ``max_held`` requests, or all leases ``max_held_bytes`` of request bodies);
* the upstream refuses the connection (its Service's endpoints lag the Deployment's status by a moment): tried again
  every ``retry_s`` until the same deadline. Only a connection that failed is tried again: a request that reached a
  server is never sent twice.

Readiness comes from a watch of Deployments (``status.readyReplicas``): RBAC list and watch on deployments, nothing
else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from autoscaler import ANNOTATION_PREFIX
from autoscaler.config import is_opted_in, lease_upstream
from autoscaler.kube.api import KubeApi
from autoscaler.kube.cache import Key, WatchCache
from autoscaler.kube.workloads import deployments_path

log = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "http://{name}.{namespace}.svc:8000"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
HELD_HEADER = "Inference-Autoscaler-Held-Seconds"
"""On every request the activator forwards: the seconds it waited here (for a Ready replica, or for the Service to
take the connection; ~0 for a lease that had one), so that the server's logs and queue-time accounting can include
them."""
HOLD_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class ActivatorSettings:
    upstream: str = DEFAULT_UPSTREAM
    """URL template of a lease's upstream: ``{namespace}`` and ``{name}`` (the Deployment's) are filled in."""
    hold_timeout_s: float = 300.0
    """How long a request may wait for a Ready replica (GPU pods take minutes to start)."""
    max_held: int = 1000
    """Requests one lease may hold at once; more are answered 503 with Retry-After."""
    max_held_bytes: int = 256 << 20
    """Request bodies all leases may hold at once (they wait in memory); more are answered 503 with Retry-After."""
    retry_s: float = 0.5
    """Wait between two attempts to connect to an upstream that refused."""
    connect_timeout_s: float = 5.0
    max_body_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        try:
            self.upstream.format(namespace="ns", name="name")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"upstream template {self.upstream!r}: only {{namespace}} and {{name}} can be filled "
                             f"in ({exc!r})") from None
        if self.hold_timeout_s <= 0 or self.max_held < 1 or self.retry_s <= 0 or self.max_held_bytes < 1:
            raise ValueError("hold timeout and retry interval must be positive, max held (requests and bytes) at "
                             "least 1")


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What the activator keeps of a Deployment: its name, whether it is a lease, and its Ready replicas."""
    md = obj.get("metadata") or {}
    ann = md.get("annotations") or {}
    keep = (ANNOTATION_PREFIX + "enabled", ANNOTATION_PREFIX + "upstream")
    return {"metadata": {"name": md.get("name"), "namespace": md.get("namespace"),
                         "resourceVersion": md.get("resourceVersion"),
                         "annotations": {k: v for k, v in ann.items() if k in keep}},
            "status": {"readyReplicas": int((obj.get("status") or {}).get("readyReplicas") or 0)}}


class Gate:
    """One lease's readiness as the watch last saw it; requests wait on ``opened``."""

    def __init__(self) -> None:
        self.ready = 0
        self.upstream: str | None = None
        """The lease's own ``upstream`` annotation (None: the activator's template)."""
        self.upstream_issue: str | None = None
        self.lease = False
        self.gone = False
        self.held = 0
        self.opened = asyncio.Event()
        self.changed = asyncio.Event()
        """Set (and replaced) on every change, so that held requests re-check the lease."""

    def update(self, ready: int, lease: bool, gone: bool = False) -> None:
        self.ready, self.lease, self.gone = ready, lease, gone
        if ready > 0 and lease and not gone:
            self.opened.set()
        else:
            self.opened.clear()
        self.changed.set()
        self.changed = asyncio.Event()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["namespace", "deployment"]
        self.requests = Counter("autoscaler_activator_requests", "Requests received for a lease, counted on arrival "
                                "(what a scaleToZero.wakeQuery reads)", labels, registry=self.registry)
        self.responses = Counter("autoscaler_activator_responses", "Answers by HTTP status (the activator's own "
                                 "404/503/504, or the upstream's)", [*labels, "code"], registry=self.registry)
        self.held = Gauge("autoscaler_activator_held_requests", "Requests waiting now for a Ready replica", labels,
                          registry=self.registry)
        self.hold_seconds = Histogram("autoscaler_activator_hold_seconds", "How long a request waited for a Ready "
                                      "replica (0: forwarded at once)", labels, buckets=HOLD_BUCKETS,
                                      registry=self.registry)
        self.retries = Counter("autoscaler_activator_connect_retries", "Connections the upstream refused and that "
                               "were tried again", labels, registry=self.registry)

    def known(self, ns: str, name: str) -> None:
        """Create a lease's series at zero, so that the first request is an increase ``rate()`` sees."""
        self.requests.labels(ns, name)
        self.held.labels(ns, name)

    def forget(self, ns: str, name: str) -> None:
        for m in (self.requests, self.held, self.hold_seconds, self.retries):
            with contextlib.suppress(KeyError):
                m.remove(ns, name)


class Activator:
    """The gates of every lease (from a Deployment watch) and the HTTP handler that holds and forwards."""

    def __init__(self, api: KubeApi | None, settings: ActivatorSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or ActivatorSettings()
        self.clock = clock
        self.metrics = Metrics()
        self.gates: dict[Key, Gate] = {}
        self.cache = WatchCache(api, deployments_path(), name="activator-deployments", transform=slim) \
            if api is not None else None
        if self.cache is not None:
            self.cache.add_handler(self._on_event)
        self.held_bytes = 0
        """Bytes of the request bodies held now (all leases)."""
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- the watch ---------------------------------------------------------------------------------

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        md = obj.get("metadata") or {}
        key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        gate = self.gates.get(key)
        if kind == "DELETED":
            if gate is not None:
                gate.update(0, False, gone=True)
                self.gates.pop(key, None)
            self.metrics.forget(*key)
            return
        ann = md.get("annotations")
        lease = is_opted_in(ann)
        ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
        upstream, bad = lease_upstream(ann)
        if gate is None:
            if not lease:
                return
            gate = self.gates[key] = Gate()
            self.metrics.known(*key)
            log.info("lease %s/%s: %d Ready", *key, ready)
        elif gate.ready != ready:
            log.info("lease %s/%s: %d Ready (%d requests held)", *key, ready, gate.held)
        if bad is not None and bad != gate.upstream_issue:
            log.warning("lease %s/%s: %supstream %s; using %s", *key, ANNOTATION_PREFIX, bad, self.settings.upstream)
        gate.upstream, gate.upstream_issue = upstream, bad
        gate.update(ready, lease)

    def set_ready(self, namespace: str, name: str, ready: int, *, lease: bool = True) -> None:
        """Feed a Deployment's state without a watch (an embedding that has its own)."""
        ann = {ANNOTATION_PREFIX + "enabled": "true"} if lease else {}
        self._on_event("MODIFIED", {"metadata": {"namespace": namespace, "name": name, "annotations": ann},
                                    "status": {"readyReplicas": ready}})

    @property
    def synced(self) -> bool:
        return self.cache is None or self.cache.synced.is_set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout_s),
            auto_decompress=False)
        if self.cache is not None:
            self._tasks.append(asyncio.create_task(self.cache.run(), name="activator-watch"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_route("*", "/{namespace}/{name}/{tail:.*}", self.handle)
        app.router.add_route("*", "/{namespace}/{name}", self.handle)
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.synced:
            return web.Response(text=f"ok: {len(self.gates)} leases\n")
        return web.Response(status=503, text="waiting for the first list of Deployments\n")

    # -- one request -------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        if not self.synced and self.cache is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await self.cache.synced.wait()
        gate = self.gates.get((ns, name))
        if gate is None or not gate.lease:
            return self._answer(ns, name, 404, f"{ns}/{name} is not a lease: no such Deployment, or it lacks "
                                f'{ANNOTATION_PREFIX}enabled: "true"', count=False)
        self.metrics.requests.labels(ns, name).inc()
        body = await request.read()
        start = self.clock()
        deadline = start + self.settings.hold_timeout_s
        if not gate.opened.is_set():
            full = None
            if gate.held >= self.settings.max_held:
                full = f"{ns}/{name} already holds {gate.held} requests waiting for a Ready replica"
            elif self.held_bytes + len(body) > self.settings.max_held_bytes:
                full = (f"the activator already holds {self.held_bytes / 2**20:.0f} MiB of request bodies "
                        f"(--max-held-mib {self.settings.max_held_bytes / 2**20:g})")
            if full is not None:
                return self._answer(ns, name, 503, full, retry_after=max(1, round(self.settings.retry_s * 10)))
            holder = gate
            holder.held += 1
            self.held_bytes += len(body)
            self.metrics.held.labels(ns, name).inc()
            try:
                gate = await self._wait_open(ns, name, gate, deadline)
            finally:
                holder.held -= 1
                self.held_bytes -= len(body)
                self.metrics.held.labels(ns, name).dec()
            if gate.gone or not gate.lease:
                return self._answer(ns, name, 404, f"{ns}/{name} was deleted or opted out while the request waited")
            if not gate.opened.is_set():
                self.metrics.hold_seconds.labels(ns, name).observe(self.clock() - start)
                return self._answer(ns, name, 504, f"{ns}/{name} had no Ready replica within "
                                    f"{self.settings.hold_timeout_s:g} s")
        self.metrics.hold_seconds.labels(ns, name).observe(self.clock() - start)
        return await self._forward(request, ns, name, gate, body, start)

    async def _wait_open(self, ns: str, name: str, gate: Gate, deadline: float) -> Gate:
        while not gate.opened.is_set() and not gate.gone and gate.lease:
            left = deadline - self.clock()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await gate.changed.wait()
            gate = self.gates.get((ns, name), gate)
        return gate

    async def _forward(self, request: web.Request, ns: str, name: str, gate: Gate, body: bytes,
                       arrived: float) -> web.StreamResponse:
        """Send the request (here since ``arrived``) upstream, telling it how long it waited here
        (:data:`HELD_HEADER`), and stream the answer back."""
        assert self._session is not None, "start() the activator first"
        deadline = arrived + self.settings.hold_timeout_s
        tail = request.match_info.get("tail", "")
        url = (gate.upstream or self.settings.upstream).format(namespace=ns, name=name).rstrip("/") + "/" + tail
        if request.query_string:
            url += "?" + request.query_string
        ours = ("x-forwarded-for", HELD_HEADER.lower())
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() not in HOP_BY_HOP and k.lower() not in ours)
        headers["X-Forwarded-For"] = ", ".join(filter(None, (request.headers.get("X-Forwarded-For"),
                                                             request.remote)))
        while True:
            headers[HELD_HEADER] = f"{self.clock() - arrived:.3f}"
            try:
                upstream = await self._session.request(request.method, url, headers=headers, data=body,
                                                       allow_redirects=False)
                break
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent, safe to try again
                if self.clock() + self.settings.retry_s > deadline:
                    return self._answer(ns, name, 502, f"{ns}/{name}: upstream {url} refused until the deadline "
                                        f"({exc.os_error or exc})")
                self.metrics.retries.labels(ns, name).inc()
                await asyncio.sleep(self.settings.retry_s)
            except (aiohttp.ClientError, TimeoutError) as exc:  # sent, then failed: never sent twice
                return self._answer(ns, name, 502, f"{ns}/{name}: upstream {url} failed: "
                                    f"{exc or type(exc).__name__}")
        async with upstream:
            out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    out.headers.add(k, v)
            try:
                await out.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
            except (aiohttp.ClientError, ConnectionResetError) as exc:  # either side went away mid-answer
                log.info("%s/%s: answer cut short: %s", ns, name, exc)
            self.metrics.responses.labels(ns, name, str(upstream.status)).inc()
            return out

    def _answer(self, ns: str, name: str, status: int, message: str, *, count: bool = True,
                retry_after: int | None = None) -> web.Response:
        if count:
            self.metrics.responses.labels(ns, name, str(status)).inc()
        log.info("%s/%s: %d %s", ns, name, status, message)
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        return web.json_response({"kind": "Status", "code": status, "message": message}, status=status,
                                 headers=headers)
