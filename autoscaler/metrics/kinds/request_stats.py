"""`requestStats`: a pod's request rate, service time and backlog, for the predictive policy.

One batched query returns, per (namespace, pod), the series the predictive policy needs (see
docs/predictive.md), each tagged with ``autoscaler_part``:

* ``success`` / ``failure``: ``rate()`` of Triton's success / failure counters over the short window;
* ``success_long`` / ``compute_us`` / ``queue_us``: success, compute-duration and queue-duration rates
  over the long window (service time = compute / success, queue time = queue / success);
* ``pending``: the ``nv_inference_pending_request_count`` gauge.

Per pod the outcome is ``Ok(value=request rate, parts={...})``; a pod without the success counter is
`Empty` (not a Triton pod, or not scraped). Sums are taken ``by (namespace, pod)`` first, so several
models or GPUs per pod are added up, and the ``gpu_uuid`` split of Triton's counters does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoscaler.metrics.kinds.base import PodSeries, join_matchers
from autoscaler.metrics.promql import LeaseTarget, deployment_pods, duration, selector, tag
from autoscaler.metrics.results import Empty, MultiSeries, Ok, Outcome, Sample

PARTS = ("success", "failure", "success_long", "compute_us", "queue_us", "pending")


@dataclass(frozen=True)
class RequestStats:
    """Request rate (`Ok.value`, requests/s) and its components (`Ok.parts`) per pod."""

    name: str = "requestStats"
    unit: str = "rps"
    window_s: float = 30.0
    long_window_s: float = 60.0
    success_counter: str = "nv_inference_request_success"
    failure_counter: str = "nv_inference_request_failure"
    compute_counter: str = "nv_inference_compute_infer_duration_us"
    queue_counter: str = "nv_inference_queue_duration_us"
    pending_gauge: str = "nv_inference_pending_request_count"
    extra_matchers: str = ""

    @property
    def raw_series(self) -> tuple[str, ...]:
        return (self.success_counter, self.failure_counter, self.compute_counter, self.queue_counter,
                self.pending_gauge)

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        m = join_matchers(self.extra_matchers, selector(leases).both)
        short, long = duration(self.window_s), duration(self.long_window_s)

        def rate(counter: str, window: str) -> str:
            return f"sum by (namespace, pod) (rate({counter}{{{m}}}[{window}]))"

        exprs = {
            "success": rate(self.success_counter, short),
            "failure": rate(self.failure_counter, short),
            "success_long": rate(self.success_counter, long),
            "compute_us": rate(self.compute_counter, long),
            "queue_us": rate(self.queue_counter, long),
            "pending": f"sum by (namespace, pod) ({self.pending_gauge}{{{m}}})",
        }
        return " or ".join(tag(e, part) for part, e in exprs.items())

    def load_history(self, namespace: str, name: str, span_s: float, bucket_s: float) -> str:
        """The Deployment's largest offered load in busy slots (compute seconds per second, summed over every pod it
        has had, sampled four times a bucket) in each ``bucket_s`` of the last ``span_s``: one point per bucket, at
        its end (:meth:`bucket_rows`). A subquery: an instant query of it answers a matrix. For the predictive
        policy's recurring-load history after a (re)start."""
        m = join_matchers(self.extra_matchers, deployment_pods(namespace, name))
        load = f"sum(rate({self.compute_counter}{{{m}}}[{duration(self.window_s)}])) / 1e6"
        return (f"max_over_time(({load})[{duration(bucket_s)}:{duration(bucket_s / 4)}])"
                f"[{duration(span_s)}:{duration(bucket_s)}]")

    def rate_history(self, namespace: str, name: str, span_s: float, bucket_s: float) -> str:
        """The Deployment's request rate (success + failure, every pod it has had) averaged over each ``bucket_s`` of
        the last ``span_s``: one point per bucket, at its end (:meth:`bucket_rows`). For the predictive policy's
        daily season when a lease starts without one."""
        m = join_matchers(self.extra_matchers, deployment_pods(namespace, name))
        window = duration(bucket_s)
        return (f"(sum(rate({self.success_counter}{{{m}}}[{window}])) + "
                f"(sum(rate({self.failure_counter}{{{m}}}[{window}])) or vector(0)))[{duration(span_s)}:{window}]")

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
        return Ok(values["success"] + values.get("failure", 0.0), parts=values)
