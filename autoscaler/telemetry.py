"""The controller's own observability: Prometheus metrics, health endpoints and a JSON lease view.

Registries of its own per controller (not the process-global one), so several controllers can live in one
test process; /metrics writes the per-lease series itself, off the event loop (:meth:`Telemetry.exposition`).
``/healthz`` is liveness (the loop ticked recently), ``/readyz``
readiness (caches synced and a policy loaded), ``/leases`` the last decisions for ``status``/``explain``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
    slots: tuple[int, str] | None = None
    """Predictive leases: the slots per replica sized with, and where they come from (``observe.SLOT_SOURCES``)."""
    zero: tuple[float, float] | None = None
    """Scale-to-zero leases: the wake value (NaN without one) and the seconds without demand."""


_CURRENT = ("autoscaler_lease_current_replicas", "Current replicas per lease")
_DESIRED = ("autoscaler_lease_desired_replicas", "Desired replicas per lease")
_VALUE = ("autoscaler_lease_metric_value", "Metric value per lease (average over pods)")
_TARGET = ("autoscaler_lease_metric_target", "Metric target per lease")
_CYCLE = ("autoscaler_lease_cycle_period_seconds", "Period the predictive policy found in a lease's load (0: none)")
_RATES = ("autoscaler_lease_request_rate_rps",
          "Predictive leases: the request rate seen (kind=demand: served + backlog growth) and the rate the replicas "
          "were sized for (kind=sized: after the burst envelope, forecasts and backlog); NaN without request data")
_SLOTS = ("autoscaler_lease_slots_per_replica",
          "Predictive leases: the requests a replica runs at once, as sized with; source: annotation, learnt (the "
          "batch its pods ran while requests waited), kv-cache (what their KV cache holds), reported (num_request_max), "
          "policy or default")
_WAKE = ("autoscaler_lease_wake_value",
         "Scale-to-zero leases: the demand their wake query reads in front of the pods (NaN: no value)")
_IDLE = ("autoscaler_lease_idle_seconds",
         "Scale-to-zero leases: seconds since demand was last seen (zero replicas at scaleToZero.idleSeconds)")
_FAMILIES = (_CURRENT, _DESIRED, _VALUE, _TARGET, _CYCLE, _RATES, _SLOTS, _WAKE, _IDLE)
"""The leases' families, in the order a scrape writes them."""


class _Leases(Collector):
    """Every lease's series, read from the controller's leases when Prometheus scrapes: no gauge child per lease and
    metric to keep, lock and set every loop (two more per predictive lease cost ~8 % of a 3,000-lease loop's CPU),
    and the series of a deleted lease, of a metric no longer read or of a mode left go with it. A scrape writes them
    with :func:`_lease_text`; this collector gives a direct read of the registry the same series, parsed back from
    that text (one way to write them; reads are for tests and tools, not the scrape path)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[LeaseSeries]] = lambda: ()

    def collect(self) -> Any:
        yield from text_string_to_metric_families(_lease_text(self.source()))


_go_float: Callable[[float], str] = floatToGoString  # how generate_latest writes a value (untyped upstream)


def _esc(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _lease_text(series: Iterable[LeaseSeries]) -> str:
    """The leases' series in the text format, as ``generate_latest`` writes :class:`_Leases`' families (labels in
    name order), without building a sample object per series first: at 10,000 leases a tenth of the CPU (0.06 s
    instead of 0.6 s a scrape) and ~25 MB less at the peak (``benchmarks/scrape_cost.py``)."""
    g = _go_float
    lines: tuple[list[str], ...] = tuple([] for _ in _FAMILIES)
    cur, des, val, tgt, cyc, rat, slo, wak, idl = lines
    for s in series:
        lease, ns = _esc(s.lease), _esc(s.namespace)
        ids = f'lease="{lease}",namespace="{ns}"}} '
        cur.append(f"{_CURRENT[0]}{{{ids}{g(s.current)}\n")
        des.append(f'{_DESIRED[0]}{{lease="{lease}",mode="{_esc(s.mode)}",namespace="{ns}"}} {g(s.desired)}\n')
        for name, v, t in s.metrics:
            mid = f'{{lease="{lease}",metric="{_esc(name)}",namespace="{ns}"}} '
            if v is not None:
                val.append(f"{_VALUE[0]}{mid}{g(v)}\n")
            tgt.append(f"{_TARGET[0]}{mid}{g(t)}\n")
        if s.cycle_period_s is not None:
            cyc.append(f"{_CYCLE[0]}{{{ids}{g(s.cycle_period_s)}\n")
        if s.rates is not None:
            rat.append(f'{_RATES[0]}{{kind="demand",{ids}{g(s.rates[0])}\n')
            rat.append(f'{_RATES[0]}{{kind="sized",{ids}{g(s.rates[1])}\n')
        if s.slots is not None:
            slo.append(f'{_SLOTS[0]}{{lease="{lease}",namespace="{ns}",source="{_esc(s.slots[1])}"}} {g(s.slots[0])}\n')
        if s.zero is not None:
            wak.append(f"{_WAKE[0]}{{{ids}{g(s.zero[0])}\n")
            idl.append(f"{_IDLE[0]}{{{ids}{g(s.zero[1])}\n")
    out: list[str] = []
    for (name, doc), family in zip(_FAMILIES, lines, strict=True):
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        out.extend(family)
    return "".join(out)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        """Everything, for reading the values (tests, ``get_sample_value``)."""
        self._rest = CollectorRegistry()
        """Every collector but the leases' series, which a scrape writes itself (:func:`_lease_text`)."""
        self.loop_seconds = Histogram("autoscaler_loop_duration_seconds", "Wall time of one control loop",
                                      registry=None, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.loop_cpu_seconds = Gauge("autoscaler_loop_cpu_seconds", "CPU time of the last control loop",
                                      registry=None)
        self.decisions = Counter("autoscaler_decisions", "Decisions by reason and mode", ["reason", "mode"],
                                 registry=None)
        self.rescales = Counter("autoscaler_rescales", "Scale patches applied", ["direction"], registry=None)
        self.errors = Counter("autoscaler_errors", "Errors by kind", ["kind"], registry=None)
        self.query_seconds = Histogram("autoscaler_prometheus_query_seconds", "PromQL query latency", ["metric"],
                                       registry=None, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.query_outcomes = Counter("autoscaler_prometheus_pod_outcomes", "Per-pod PromQL outcomes",
                                      ["metric", "outcome"], registry=None)
        self.leases = Gauge("autoscaler_leases", "Leases by state", ["state"], registry=None)
        self.is_leader = Gauge("autoscaler_is_leader", "1 when this instance is the leader", registry=None)
        self.policy_reloads = Counter("autoscaler_policy_reloads", "Policy ConfigMap reloads", ["result"],
                                      registry=None)
        self.last_tick = Gauge("autoscaler_last_loop_timestamp_seconds", "Time of the last completed loop",
                               registry=None)
        for c in (self.loop_seconds, self.loop_cpu_seconds, self.decisions, self.rescales, self.errors,
                  self.query_seconds, self.query_outcomes, self.leases, self.is_leader, self.policy_reloads,
                  self.last_tick):
            self.register(c)
        self.lease_series = _Leases()
        self.registry.register(self.lease_series)

    def register(self, collector: Collector) -> None:
        """Add a collector to what /metrics exposes."""
        self.registry.register(collector)
        self._rest.register(collector)

    def watch_api_calls(self, source: Callable[[], dict[str, int]]) -> None:
        self.register(_ApiCalls(source))

    def watch_leases(self, source: Callable[[], Iterable[LeaseSeries]]) -> None:
        """Where the per-lease series come from (the controller's leases, at each scrape)."""
        self.lease_series.source = source

    async def exposition(self) -> bytes:
        """The /metrics text. The leases' series are read here, on the event loop that changes them, and the text is
        rendered in a worker thread: at 10,000 leases ~0.1 s (0.5 s with ``generate_latest`` for every series), a
        stall of the control loop (and of /healthz and the leader lease's renewals) if it ran on the loop."""
        series = list(self.lease_series.source())

        def render() -> bytes:
            return generate_latest(self._rest) + _lease_text(series).encode()
        return await asyncio.to_thread(render)


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


async def serve(app: web.Application, host: str, port: int, *,
                shutdown_timeout: float = 60.0) -> tuple[web.AppRunner, int]:
    """Listen; ``shutdown_timeout``: how long ``runner.cleanup()`` lets requests in flight finish."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = int(server.sockets[0].getsockname()[1])
    return runner, bound
