"""`requestStats`: a pod's request rate, service time and backlog, for the predictive policy.

One batched query returns, per (namespace, pod), the series the predictive policy needs (see
docs/predictive.md), each tagged with ``autoscaler_part``:

* ``success`` / ``failure``: ``rate()`` of the finished / failed request counters over the short window;
* ``success_long`` / ``compute_us`` / ``queue_us``: the rate of the requests whose compute time is counted, and
  the compute and queue time (microseconds per second) over the long window (service time = compute /
  success_long, queue time = queue / success_long);
* ``pending``: the number of requests waiting for a slot;
* ``slots``: the requests a replica runs at once, where the server reports it (NIM's ``num_request_max``);
* ``batch``: the requests the pod runs now, present only while requests have waited for a slot throughout the short
  window (vLLM's or NIM's ``num_requests_running`` while ``num_requests_waiting`` stayed above zero): the batch the
  pod really runs when saturated, which the controller learns a vLLM lease's slots from (a request that waits for
  one scheduler step does not count);
* ``kv_fit``: the requests the pod's KV cache holds at the present requests' sizes: its mean running requests over
  its mean KV-cache usage in the long window, present only while a tenth or more of the cache is in use (vLLM's or
  NIM's running gauge over ``vllm:kv_cache_usage_perc`` / ``gpu_cache_usage_perc``). The batch a KV-bound pod runs
  when saturated, known before it is; more than it runs when ``--max-num-seqs`` binds first;
* ``vllm``: 1 for a pod read from vLLM's or NIM's series (the success series carries ``autoscaler_server``), absent
  for Triton: vLLM batches many requests at once and does not say how many, so a vLLM lease needs its slots stated,
  reported, learnt (``batch``) or estimated (``kv_fit``).

Three servers' series are read (:data:`SERVERS`), each part as ``triton or vllm or nim`` per pod, so one query
serves a lease whatever it runs, and a Deployment that moves from one server to another:

* **Triton**: ``nv_inference_request_success`` / ``_failure``, ``nv_inference_compute_infer_duration_us``,
  ``nv_inference_queue_duration_us`` and ``nv_inference_pending_request_count``;
* **vLLM** (and NIM images built on it, which expose the ``vllm:`` names): ``vllm:request_success_total`` (every
  ``finished_reason``; vLLM has no failure counter), the sums of the ``vllm:request_inference_time_seconds`` and
  ``vllm:request_queue_time_seconds`` histograms (seconds, scaled to microseconds) over the inference histogram's
  own count (``success_long``: aborted requests are finished requests too, but a client that gave up while
  waiting held no slot, so counting it would shorten the service time just when clients time out), and
  ``vllm:num_requests_waiting``. Inference time is the time a request held a slot of the running batch, as
  Triton's compute time is;
* **NIM** (:data:`NIM`: NIM for LLMs' documented names without the ``vllm:`` prefix, all that older NIM images
  export): ``request_success_total`` / ``request_failure_total``, and, with no time counters, the mean of the
  ``num_requests_running`` / ``num_requests_waiting`` gauges over the long window as the slot-seconds held /
  waited per second (Little's law: service time = mean running / throughput); only for pods with
  ``num_request_max``.

Per pod the outcome is ``Ok(value=request rate, parts={...})``; a pod without a finished-request counter is
`Empty` (no server's, or not scraped). Sums are taken ``by (namespace, pod)`` first, so several models,
engines or GPUs per pod are added up, and the ``gpu_uuid`` split of Triton's counters does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoscaler.metrics.kinds.base import PodSeries, join_matchers
from autoscaler.metrics.kinds.kv_cache import NIM_KV, VLLM_KV
from autoscaler.metrics.kinds.queue_time import (
    NIM_MAX,
    NIM_SUCCESS,
    NIM_WAITING,
    QUEUE_COUNTER,
    SUCCESS_COUNTER,
    VLLM_QUEUE_HISTOGRAM,
)
from autoscaler.metrics.promql import LeaseTarget, deployment_pods, duration, selector, tag
from autoscaler.metrics.results import Empty, MultiSeries, Ok, Outcome, Sample

PARTS = ("success", "failure", "success_long", "compute_us", "queue_us", "pending", "slots", "batch", "kv_fit")
KV_FIT_MIN_USAGE = 0.1  # the mean KV-cache usage (0-1) below which a pod's kv_fit is not extrapolated
SERVER_LABEL = "autoscaler_server"
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_RUNNING = "vllm:num_requests_running"
NIM_RUNNING = "num_requests_running"


@dataclass(frozen=True)
class ServerSeries:
    """One inference server's names for what `RequestStats` reads."""

    server: str
    success: str
    """Counter of finished requests."""
    compute: str
    """Counter of the time requests held an execution slot, summed over requests, in ``us_per_unit`` units."""
    queue: str
    """Counter of the time requests waited for a slot, likewise."""
    pending: str
    """Gauge of the requests waiting for a slot."""
    failure: str = ""
    """Counter of failed requests ("": the server has none)."""
    us_per_unit: float = 1.0
    """Microseconds per unit of ``compute`` and ``queue`` (1 for Triton's ``_us`` counters, 1e6 for seconds)."""
    slots: str = ""
    """Gauge of the requests a replica runs at once ("": the server does not report it)."""
    computed: str = ""
    """Counter of the requests whose time is in ``compute`` ("": ``success``)."""
    running: str = ""
    """Gauge of the requests in the running batch ("": the server does not export it)."""
    gauges: bool = False
    """``compute`` and ``queue`` are gauges of the requests running and waiting, not time counters: their mean
    over the window is the slot-seconds held (waited) per second, by Little's law, for a server that exports no
    time counters (in seconds: ``us_per_unit`` 1e6)."""
    marker: str = ""
    """A gauge only this server exports: a pod is read as this server only if it has it ("": any pod), for names
    that other software could export too."""
    batches: bool = False
    """The server runs many requests at once without saying how many (vLLM): the ``vllm`` part marks its pods."""
    kv: tuple[str, ...] = ()
    """Gauges of the KV-cache usage (fraction 0-1), the first a pod has read (none: the server has no KV cache)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n in (self.success, self.failure, self.compute, self.queue, self.pending,
                                               self.slots, self.computed, self.running, self.marker, *self.kv)
                                     if n))

    def busy(self, series: str, matchers: str, window: str) -> str:
        """Per pod, ``series`` (``compute`` or ``queue``) per second over ``window``, in ``us_per_unit`` units."""
        if self.gauges:
            return f"sum by (namespace, pod) (avg_over_time({series}{{{matchers}}}[{window}]))"
        return f"sum by (namespace, pod) (rate({series}{{{matchers}}}[{window}]))"

    def marked(self, expr: str, matchers: str) -> str:
        """``expr`` for the pods with this server's ``marker`` only."""
        return f"({expr} and on (namespace, pod) max by (namespace, pod) ({self.marker}{{{matchers}}}))" \
            if self.marker else expr


TRITON = ServerSeries("triton", success=SUCCESS_COUNTER, compute="nv_inference_compute_infer_duration_us",
                      queue=QUEUE_COUNTER, pending="nv_inference_pending_request_count",
                      failure="nv_inference_request_failure")
VLLM = ServerSeries("vllm", success="vllm:request_success_total", compute="vllm:request_inference_time_seconds_sum",
                    queue=VLLM_QUEUE_HISTOGRAM + "_sum", pending=VLLM_WAITING, us_per_unit=1e6,
                    slots=NIM_MAX, computed="vllm:request_inference_time_seconds_count",
                    running=VLLM_RUNNING, batches=True, kv=VLLM_KV)
NIM = ServerSeries("nim", success=NIM_SUCCESS, failure="request_failure_total", compute=NIM_RUNNING, queue=NIM_WAITING,
                   pending=NIM_WAITING, us_per_unit=1e6, slots=NIM_MAX, running=NIM_RUNNING, gauges=True,
                   marker=NIM_MAX, batches=True, kv=(NIM_KV,))
"""NIM for LLMs' documented names (no ``vllm:`` prefix; older images export only these): no time counters, so the
service and queue times are by Little's law from the running and waiting gauges, and only pods with NIM's
``num_request_max`` are read as NIM (other software may export ``request_success_total``)."""
SERVERS = (TRITON, VLLM, NIM)


def _scaled(factor: float, expr: str) -> str:
    return expr if factor == 1.0 else f"{factor:g} * {expr}"


def _saturated_batch(s: ServerSeries, m: str, window: str) -> str:
    """A pod's running requests, only while some waited for a slot at every sample of ``window``."""
    return (f"sum by (namespace, pod) ({s.running}{{{m}}}) and on (namespace, pod) "
            f"(sum by (namespace, pod) (min_over_time({s.pending}{{{m}}}[{window}])) > 0)")


def _kv_fit(s: ServerSeries, m: str, window: str) -> str:
    """A pod's mean running requests over its mean KV-cache usage in ``window``, while that usage is
    ``KV_FIT_MIN_USAGE`` or more: the requests its KV cache holds at their present sizes."""
    usage = " or ".join(f"avg by (namespace, pod) (avg_over_time({k}{{{m}}}[{window}]))" for k in s.kv)
    return (f"sum by (namespace, pod) (avg_over_time({s.running}{{{m}}}[{window}])) / "
            f"(({usage}) >= {KV_FIT_MIN_USAGE:g})")


@dataclass(frozen=True)
class RequestStats:
    """Request rate (`Ok.value`, requests/s) and its components (`Ok.parts`) per pod."""

    name: str = "requestStats"
    unit: str = "rps"
    window_s: float = 30.0
    long_window_s: float = 60.0
    servers: tuple[ServerSeries, ...] = SERVERS
    extra_matchers: str = ""

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("requestStats needs at least one server's series")

    @property
    def raw_series(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for s in self.servers for n in s.names))

    @property
    def success_counters(self) -> tuple[str, ...]:
        """Each server's finished-request counter (what a pod must export to be measured)."""
        return tuple(s.success for s in self.servers)

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        m = join_matchers(self.extra_matchers, selector(leases).both)
        short, long = duration(self.window_s), duration(self.long_window_s)

        def rate(counter: str, window: str) -> str:
            return f"sum by (namespace, pod) (rate({counter}{{{m}}}[{window}]))"

        def part(s: ServerSeries, name: str) -> str | None:
            if name == "success":
                return f'label_replace({s.marked(rate(s.success, short), m)}, "{SERVER_LABEL}", "{s.server}", "", "")'
            if name == "slots":
                return f"max by (namespace, pod) ({s.slots}{{{m}}})" if s.slots else None
            if name == "batch":
                return _saturated_batch(s, m, short) if s.running else None
            if name == "kv_fit":
                return s.marked(_kv_fit(s, m, long), m) if s.running and s.kv else None
            if name == "failure":
                return rate(s.failure, short) if s.failure else None
            if name == "success_long":
                return rate(s.computed or s.success, long)
            if name in ("compute_us", "queue_us"):
                return _scaled(s.us_per_unit, s.busy(s.compute if name == "compute_us" else s.queue, m, long))
            return f"sum by (namespace, pod) ({s.pending}{{{m}}})"

        tagged = []
        for name in PARTS:  # the same expression from two servers once (NIM's slot gauge)
            exprs = list(dict.fromkeys(e for s in self.servers if (e := part(s, name)) is not None))
            if exprs:  # each pod from the first server that has the series (the server's label aside)
                tagged.append(tag(" or on (namespace, pod) ".join(exprs), name))
        return " or ".join(tagged)

    def batch_history(self, namespace: str, name: str, span_s: float, step_s: float = 5.0) -> str:
        """Each pod's mean ``batch`` part (the requests it ran while others kept waiting) over the last ``span_s``,
        sampled every ``step_s`` while it was saturated, for every pod the Deployment has had: one sample per pod
        that was saturated, none for the others ("" when no server exports a running batch). For the slots a vLLM
        lease is learnt with after a (re)start, and for ``autoscaler doctor``."""
        m = join_matchers(self.extra_matchers, deployment_pods(namespace, name))
        short = duration(self.window_s)
        batch = " or on (namespace, pod) ".join(_saturated_batch(s, m, short) for s in self.servers if s.running)
        return f"avg_over_time(({batch})[{duration(span_s)}:{duration(step_s)}])" if batch else ""

    def load_history(self, namespace: str, name: str, span_s: float, bucket_s: float) -> str:
        """The Deployment's largest offered load in busy slots (compute seconds per second, summed over every pod it
        has had, sampled four times a bucket) in each ``bucket_s`` of the last ``span_s``: one point per bucket, at
        its end (:meth:`bucket_rows`). A subquery: an instant query of it answers a matrix. For the predictive
        policy's recurring-load history after a (re)start. Each pod is read from its first server, as in
        :meth:`build`, so a Deployment moving from one server to the other is counted whole."""
        m = join_matchers(self.extra_matchers, deployment_pods(namespace, name))
        window = duration(self.window_s)
        per_pod = " or ".join(_scaled(s.us_per_unit / 1e6, s.busy(s.compute, m, window)) for s in self.servers)
        return (f"max_over_time(sum({per_pod})[{duration(bucket_s)}:{duration(bucket_s / 4)}])"
                f"[{duration(span_s)}:{duration(bucket_s)}]")

    def rate_history(self, namespace: str, name: str, span_s: float, bucket_s: float) -> str:
        """The Deployment's request rate (finished + failed, every pod it has had) averaged over each ``bucket_s`` of
        the last ``span_s``: one point per bucket, at its end (:meth:`bucket_rows`). For the predictive policy's
        daily season when a lease starts without one. Each pod is read from its first server, as in :meth:`build`."""
        m = join_matchers(self.extra_matchers, deployment_pods(namespace, name))
        window = duration(bucket_s)
        return f"sum({self.finished_by_pod(m, window)})[{duration(span_s)}:{window}]"

    def finished_by_pod(self, matchers: str, window: str, fn: str = "rate", failures: bool = True) -> str:
        """``fn`` (``rate`` or ``increase``) over ``window`` of each pod's finished (and, with ``failures``, failed)
        requests, each pod from its first server, as in :meth:`build`."""
        def counted(counter: str) -> str:
            return f"sum by (namespace, pod) ({fn}({counter}{{{matchers}}}[{window}]))"

        def total(s: ServerSeries) -> str:
            if failures and s.failure:
                return s.marked(f"(({counted(s.success)} + {counted(s.failure)}) or {counted(s.success)})", matchers)
            return s.marked(counted(s.success), matchers)

        return " or ".join(total(s) for s in self.servers)

    @staticmethod
    def bucket_rows(samples: Sequence[Sample], bucket_s: float) -> np.ndarray:
        """A history query's answer as (bucket start, value) rows: each point stands for the bucket that ends at it;
        points that are not finite are left out."""
        rows = [(s.timestamp - bucket_s, s.value) for s in samples if math.isfinite(s.value)]
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        values: dict[str, float] = {}
        for part in PARTS:
            got = series.parts.get(part, ())
            if len(got) > 1:
                return MultiSeries(len(got))
            if got and math.isfinite(got[0].value):
                values[part] = got[0].value
        if "success" not in values:
            return Empty("no request counter for this pod")
        server = series.parts["success"][0].labels.get(SERVER_LABEL)
        if any(s.batches and s.server == server for s in self.servers):
            values["vllm"] = 1.0
        return Ok(values["success"] + values.get("failure", 0.0), parts=values)
