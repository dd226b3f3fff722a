"""`queueTime`: mean time a request waited in Triton's scheduler queue, in microseconds.

Triton splits its counters by ``gpu_uuid`` (one series per GPU instance) and by model, so the
request-weighted mean sums numerator and denominator by (namespace, pod) *before* dividing. The
default reads the series recorded by ``config/rules/queue-time.rules.yaml``; ``source="raw"`` runs the
same expression directly (no rule needed, heavier at scale).

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


def recording_exprs(matchers: str) -> tuple[str, str]:
    """The recording rule's two expressions (request rate, queue time per request) over series with
    ``matchers``; config/rules/queue-time.rules.yaml is the same rule for every pod."""
    rate = f"sum by (namespace, pod) (rate({SUCCESS_COUNTER}{{{matchers}}}[1m]))"
    queue = f"sum by (namespace, pod) (rate({QUEUE_COUNTER}{{{matchers}}}[1m]))"
    return rate, f"{queue}\n/\n{rate}"


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
    extra_matchers: str = ""
    max_sample_age_s: float = SAMPLE_AGE_S

    def __post_init__(self) -> None:
        if self.source not in ("recorded", "raw"):
            raise ValueError(f"queueTime source must be recorded or raw, got {self.source!r}")

    @property
    def raw_series(self) -> tuple[str, ...]:
        return (self.queue_counter, self.success_counter)

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """Value, request rate (part "rate") and newest sample timestamp (part "ts") per pod."""
        matchers = join_matchers(self.extra_matchers, selector(leases).both)
        if self.source == "recorded":
            value = f"{self.recorded_metric}{{{matchers}}}"
            rate = f"{self.recorded_rate_metric}{{{matchers}}}"
            newest = f"max by (namespace, pod) (timestamp({value}))"
        else:
            window = duration(self.window_s)
            queued = f"sum by (namespace, pod) (rate({self.queue_counter}{{{matchers}}}[{window}]))"
            rate = f"sum by (namespace, pod) (rate({self.success_counter}{{{matchers}}}[{window}]))"
            value = f"({queued} / {rate})"
            newest = f"max by (namespace, pod) (timestamp({self.success_counter}{{{matchers}}}))"
        return f"{value} or {tag(rate, 'rate')} or {tag(newest, 'ts')}"

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """`NoTraffic` for 0/0 with a zero request rate; otherwise the single-value rule."""
        outcome = single_value(series, eval_time, self.max_sample_age_s)
        if isinstance(outcome, NotFinite) and math.isnan(outcome.value):
            rates = series.parts.get("rate", ())
            if len(rates) == 1 and rates[0].value == 0.0:
                return NoTraffic(0.0)
        return outcome
