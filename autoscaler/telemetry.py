"""The controller's own observability: Prometheus metrics, health endpoints and a JSON lease view.

A dedicated ``CollectorRegistry`` per controller (not the process-global one), so several controllers
can live in one test process. ``/healthz`` is liveness (the loop ticked recently), ``/readyz``
readiness (caches synced and a policy loaded), ``/leases`` the last decisions for ``status``/``explain``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class _ApiCalls(Collector):
    def __init__(self, source: Callable[[], dict[str, int]]) -> None:
        self.source = source

    def collect(self) -> Any:
        fam = CounterMetricFamily("autoscaler_kube_api_requests", "Kubernetes API requests by verb", labels=["verb"])
        for verb, n in sorted(self.source().items()):
            fam.add_metric([verb], n)
        yield fam


@dataclass(frozen=True)
class LeaseSeries:
    """One lease's series at its last decision, as the controller holds them (built when Prometheus scrapes)."""

    namespace: str
    lease: str
    mode: str
    current: int
    desired: int
    metrics: tuple[tuple[str, float | None, float], ...]
    """(metric, value or None without one, target)."""
    cycle_period_s: float | None = None
    """Predictive leases: the period found in the load (0: none); None: not predictive."""
    rates: tuple[float, float] | None = None
    """Predictive leases: the request rate seen and the rate sized for (NaN without request data)."""


_SCRAPED: ContextVar[list[LeaseSeries] | None] = ContextVar("scraped_lease_series", default=None)
"""The leases' series one scrape read on the event loop, for the worker thread that renders that scrape's text."""


class _Leases(Collector):
    """Every lease's series, read from the controller's leases when Prometheus scrapes: no gauge child per lease and
    metric to keep, lock and set every loop (two more per predictive lease cost ~8 % of a 3,000-lease loop's CPU),
    and the series of a deleted lease, of a metric no longer read or of a mode left go with it."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[LeaseSeries]] = lambda: ()

    def collect(self) -> Any:
        scraped = _SCRAPED.get()
        lease = ["namespace", "lease"]
        current = GaugeMetricFamily("autoscaler_lease_current_replicas", "Current replicas per lease", labels=lease)
        desired = GaugeMetricFamily("autoscaler_lease_desired_replicas", "Desired replicas per lease",
                                    labels=[*lease, "mode"])
        value = GaugeMetricFamily("autoscaler_lease_metric_value", "Metric value per lease (average over pods)",
                                  labels=[*lease, "metric"])
        target = GaugeMetricFamily("autoscaler_lease_metric_target", "Metric target per lease", labels=[*lease, "metric"])
        cycle = GaugeMetricFamily("autoscaler_lease_cycle_period_seconds",
                                  "Period the predictive policy found in a lease's load (0: none)", labels=lease)
        rates = GaugeMetricFamily("autoscaler_lease_request_rate_rps",
                                  "Predictive leases: the request rate seen (kind=demand: served + backlog growth) and "
                                  "the rate the replicas were sized for (kind=sized: after the burst envelope, "
                                  "forecasts and backlog); NaN without request data", labels=[*lease, "kind"])
        for s in self.source() if scraped is None else scraped:
            ids = [s.namespace, s.lease]
            current.add_metric(ids, s.current)
            desired.add_metric([*ids, s.mode], s.desired)
            for name, v, t in s.metrics:
                target.add_metric([*ids, name], t)
                if v is not None:
                    value.add_metric([*ids, name], v)
            if s.cycle_period_s is not None:
                cycle.add_metric(ids, s.cycle_period_s)
            if s.rates is not None:
                rates.add_metric([*ids, "demand"], s.rates[0])
                rates.add_metric([*ids, "sized"], s.rates[1])
        yield from (current, desired, value, target, cycle, rates)


class Telemetry:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.loop_seconds = Histogram("autoscaler_loop_duration_seconds", "Wall time of one control loop",
                                      registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.loop_cpu_seconds = Gauge("autoscaler_loop_cpu_seconds", "CPU time of the last control loop", registry=r)
        self.decisions = Counter("autoscaler_decisions", "Decisions by reason and mode", ["reason", "mode"],
                                 registry=r)
        self.rescales = Counter("autoscaler_rescales", "Scale patches applied", ["direction"], registry=r)
        self.errors = Counter("autoscaler_errors", "Errors by kind", ["kind"], registry=r)
        self.query_seconds = Histogram("autoscaler_prometheus_query_seconds", "PromQL query latency", ["metric"],
                                       registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.query_outcomes = Counter("autoscaler_prometheus_pod_outcomes", "Per-pod PromQL outcomes",
                                      ["metric", "outcome"], registry=r)
        self.leases = Gauge("autoscaler_leases", "Leases by state", ["state"], registry=r)
        self.lease_series = _Leases()
        r.register(self.lease_series)
        self.is_leader = Gauge("autoscaler_is_leader", "1 when this instance is the leader", registry=r)
        self.policy_reloads = Counter("autoscaler_policy_reloads", "Policy ConfigMap reloads", ["result"],
                                      registry=r)
        self.last_tick = Gauge("autoscaler_last_loop_timestamp_seconds", "Time of the last completed loop",
                               registry=r)

    def watch_api_calls(self, source: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_ApiCalls(source))

    def watch_leases(self, source: Callable[[], Iterable[LeaseSeries]]) -> None:
        """Where the per-lease series come from (the controller's leases, at each scrape)."""
        self.lease_series.source = source

    async def exposition(self) -> bytes:
        """The /metrics text. The leases' series are read here, on the event loop that changes them, and the text is
        rendered in a worker thread: at 10,000 leases rendering takes ~0.5 s, a stall of the control loop (and of
        /healthz and the leader lease's renewals) if it ran on the loop. Each scrape renders the series it read."""
        token = _SCRAPED.set(list(self.lease_series.source()))  # the caller's context, copied into the thread
        try:
            return await asyncio.to_thread(generate_latest, self.registry)
        finally:
            _SCRAPED.reset(token)  # the registry read directly in this context reads the leases again


def make_app(telemetry: Telemetry, *, healthy: Callable[[], tuple[bool, str]],
             ready: Callable[[], tuple[bool, str]], leases: Callable[[], list[dict[str, Any]]]) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=await telemetry.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def healthz(_: web.Request) -> web.Response:
        ok, why = healthy()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def lease_view(_: web.Request) -> web.Response:
        view = leases()  # on the loop; its entries are replaced, never changed, by later decisions
        text = await asyncio.to_thread(json.dumps, view, indent=1)
        return web.Response(text=text, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/leases", lease_view)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = int(server.sockets[0].getsockname()[1])
    return runner, bound
