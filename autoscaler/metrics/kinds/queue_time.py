"""`queueTime`: mean time a request waited for an execution slot, in microseconds.

Triton: its queue-duration counter over its success counter. Triton splits its counters by ``gpu_uuid`` (one
series per GPU instance) and by model, so the request-weighted mean sums numerator and denominator by
(namespace, pod) *before* dividing. vLLM (and NIM images built on it): the mean of the
``vllm:request_queue_time_seconds`` histogram (its ``_sum`` over its ``_count``, seconds scaled to
microseconds), summed by pod over engines and models likewise. NIM for LLMs' un-prefixed names (older images
export no others) have no queue-time counter: the mean of ``num_requests_waiting`` over the window over the rate of
``request_success_total`` (Little's law), for pods with NIM's ``num_request_max`` only. Each pod is read from the
first server whose series it has (``triton or vllm or nim``). The default reads the series recorded by
``config/rules/queue-time.rules.yaml``; ``source="raw"`` runs the same expression directly (no rule needed,
heavier at scale).

vLLM observes the histogram when a request finishes, as Triton adds to its counters, so both lag a queue that
is building up by the requests' service time.

A pod that served no request in the window has 0/0 = NaN. That is not an error and not a number:
the query also fetches the request rate, and NaN with a rate of exactly 0 becomes `NoTraffic`, which
the caller maps to 0 only for a ready pod. NaN or Inf in any other situation stays `NotFinite`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from autoscaler.metrics.kinds.base import SAMPLE_AGE_S, PodSeries, join_matchers, single_value
from autoscaler.metrics.promql import LeaseTarget, duration, selector, tag
from autoscaler.metrics.results import NotFinite, NoTraffic, Outcome

RECORDED_QUEUE_TIME = "inference_autoscaler:queue_time_us:rate1m"
RECORDED_REQUEST_RATE = "inference_autoscaler:request_success:rate1m"
QUEUE_COUNTER = "nv_inference_queue_duration_us"
SUCCESS_COUNTER = "nv_inference_request_success"
VLLM_QUEUE_HISTOGRAM = "vllm:request_queue_time_seconds"
NIM_SUCCESS = "request_success_total"
NIM_WAITING = "num_requests_waiting"
NIM_MAX = "num_request_max"


def _exprs(queue_counter: str, success_counter: str, histogram: str, nim_waiting: str, matchers: str,
           window: str) -> tuple[str, str]:
    """(request rate, queue time per request in us) per pod: Triton's counters, else vLLM's histogram, else NIM's
    waiting gauge over its finished requests (Little's law), for pods with NIM's ``num_request_max`` only."""
    def rate(counter: str) -> str:
        return f"sum by (namespace, pod) (rate({counter}{{{matchers}}}[{window}]))"

    req, queue = rate(success_counter), f"({rate(queue_counter)} / {rate(success_counter)})"
    if histogram:
        req = f"{req} or {rate(histogram + '_count')}"
        queue = f"{queue} or (1e+06 * {rate(histogram + '_sum')} / {rate(histogram + '_count')})"
    if nim_waiting:
        nim = f"max by (namespace, pod) ({NIM_MAX}{{{matchers}}})"
        waited = f"sum by (namespace, pod) (avg_over_time({nim_waiting}{{{matchers}}}[{window}]))"
        req = f"{req} or ({rate(NIM_SUCCESS)} and on (namespace, pod) {nim})"
        queue = f"{queue} or ((1e+06 * {waited} / {rate(NIM_SUCCESS)}) and on (namespace, pod) {nim})"
    return req, queue


def recording_exprs(matchers: str) -> tuple[str, str]:
    """The recording rule's two expressions (request rate, queue time per request) over series with
    ``matchers``; config/rules/queue-time.rules.yaml is the same rule for every pod (``matchers`` empty)."""
    return _exprs(QUEUE_COUNTER, SUCCESS_COUNTER, VLLM_QUEUE_HISTOGRAM, NIM_WAITING, matchers, "1m")


@dataclass(frozen=True)
class QueueTime:
    """Microseconds of queueing per successful request, per pod."""

    name: str = "queueTime"
    unit: str = "us"
    source: Literal["recorded", "raw"] = "recorded"
    recorded_metric: str = RECORDED_QUEUE_TIME
    recorded_rate_metric: str = RECORDED_REQUEST_RATE
    window_s: float = 60.0
    """Raw source only (the recorded rule fixes its own 1m window)."""
    queue_counter: str = QUEUE_COUNTER
    success_counter: str = SUCCESS_COUNTER
    vllm_histogram: str = VLLM_QUEUE_HISTOGRAM
    """vLLM's queue-time histogram, read for pods without Triton's counters ("": not read)."""
    nim_waiting: str = NIM_WAITING
    """NIM's waiting gauge (un-prefixed names), read for NIM pods without either ("": not read)."""
    extra_matchers: str = ""
    max_sample_age_s: float = SAMPLE_AGE_S

    def __post_init__(self) -> None:
        if self.source not in ("recorded", "raw"):
            raise ValueError(f"queueTime source must be recorded or raw, got {self.source!r}")

    @property
    def raw_series(self) -> tuple[str, ...]:
        vllm = (f"{self.vllm_histogram}_sum", f"{self.vllm_histogram}_count") if self.vllm_histogram else ()
        nim = (self.nim_waiting, NIM_SUCCESS, NIM_MAX) if self.nim_waiting else ()
        return (self.queue_counter, self.success_counter, *vllm, *nim)

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """Value, request rate (part "rate") and newest sample timestamp (part "ts") per pod."""
        matchers = join_matchers(self.extra_matchers, selector(leases).both)
        if self.source == "recorded":
            value = f"{self.recorded_metric}{{{matchers}}}"
            rate = f"{self.recorded_rate_metric}{{{matchers}}}"
            newest = f"max by (namespace, pod) (timestamp({value}))"
        else:
            rate, value = _exprs(self.queue_counter, self.success_counter, self.vllm_histogram, self.nim_waiting,
                                 matchers, duration(self.window_s))
            value = f"({value})"
            counters = (self.success_counter, *((f"{self.vllm_histogram}_count",) if self.vllm_histogram else ()),
                        *((NIM_SUCCESS,) if self.nim_waiting else ()))
            newest = " or ".join(f"max by (namespace, pod) (timestamp({c}{{{matchers}}}))" for c in counters)
        return f"{value} or {tag(rate, 'rate')} or {tag(newest, 'ts')}"

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """`NoTraffic` for 0/0 with a zero request rate; otherwise the single-value rule."""
        outcome = single_value(series, eval_time, self.max_sample_age_s)
        if isinstance(outcome, NotFinite) and math.isnan(outcome.value):
            rates = series.parts.get("rate", ())
            if len(rates) == 1 and rates[0].value == 0.0:
                return NoTraffic(0.0)
        return outcome
