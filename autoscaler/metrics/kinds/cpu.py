"""`cpuUtilization`: per-container CPU usage in cores from cAdvisor, for HPA-style utilisation.

The decision core divides usage by the pod's container requests itself (as the HPA does, with its
integer milli-unit arithmetic), so this kind returns cores per container, not a percent. cAdvisor's
pod-level cgroup series (``container=""``) and the sandbox (``container="POD"``) are excluded to avoid
double counting; ``image!=""`` drops the remaining cgroup artefacts (kubernetes-mixin's filter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.metrics.kinds.base import SAMPLE_AGE_S, PodSeries, join_matchers, no_value, staleness
from autoscaler.metrics.promql import LeaseTarget, duration, selector, tag
from autoscaler.metrics.results import MultiSeries, NotFinite, Ok, Outcome


@dataclass(frozen=True)
class CpuUtilization:
    """Cores used per pod (`Ok.value`) and per container (`Ok.containers`), ``rate()`` over a window."""

    name: str = "cpuUtilization"
    unit: str = "cores"
    window_s: float = 60.0
    metric: str = "container_cpu_usage_seconds_total"
    extra_matchers: str = 'container!="", container!="POD", image!=""'
    """Admin-trusted matcher text, e.g. add ``metrics_path="/metrics/cadvisor"`` when the kubelet's
    resource endpoint is scraped too (it exposes a different series under the same name)."""
    max_sample_age_s: float = SAMPLE_AGE_S

    @property
    def raw_series(self) -> tuple[str, ...]:
        return (self.metric,)

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """Usage by (namespace, pod, container), plus the newest sample timestamp per pod."""
        series = f"{self.metric}{{{join_matchers(self.extra_matchers, selector(leases).both)}}}"
        usage = f"sum by (namespace, pod, container) (rate({series}[{duration(self.window_s)}]))"
        newest = tag(f"max by (namespace, pod) (timestamp({series}))", "ts")
        return f"{usage} or {newest}"

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """Sum the containers; one series per container; stale if the newest sample is too old."""
        if not series.values:
            return no_value(series, eval_time, self.max_sample_age_s)
        containers: dict[str, float] = {}
        for sample in series.values:
            name = sample.labels.get("container", "")
            if name in containers:
                return MultiSeries(len(series.values))
            containers[name] = sample.value
        total = sum(containers.values())
        if (stale := staleness(series, eval_time, self.max_sample_age_s, total)) is not None:
            return stale
        if not math.isfinite(total):
            return NotFinite(total)
        return Ok(total, containers)
