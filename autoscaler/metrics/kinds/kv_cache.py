"""`kvCacheUsage`: KV-cache usage of vLLM / NIM LLM pods, in percent (0-100).

The exporters report a fraction 0-1 (despite the ``_perc`` names). Policies state thresholds in
percent, like TMS's utilisation thresholds, so the value is multiplied by 100 here. Names are tried in
order per pod with ``or`` (current vLLM, pre-0.12 vLLM, NIM), each aggregated by pod first, so a pod
exposing two names is read once, from the first. Several engines in one pod: the max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.metrics.kinds.base import SAMPLE_AGE_S, PodSeries, join_matchers, single_value
from autoscaler.metrics.promql import LeaseTarget, selector, tag
from autoscaler.metrics.results import Outcome

VLLM_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
"""vLLM's KV-cache usage gauge (fraction 0-1), current name first (the old one before vLLM 0.12)."""
NIM_KV = "gpu_cache_usage_perc"
"""NIM for LLMs' un-prefixed KV-cache usage gauge (fraction 0-1)."""


@dataclass(frozen=True)
class KvCacheUsage:
    """Percent 0-100 per pod."""

    name: str = "kvCacheUsage"
    unit: str = "percent"
    metrics: tuple[str, ...] = (*VLLM_KV, NIM_KV)
    scale: float = 100.0
    """Multiplier from the exported value to the unit (fraction -> percent)."""
    extra_matchers: str = ""
    max_sample_age_s: float = SAMPLE_AGE_S

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("kvCacheUsage needs at least one metric name")

    @property
    def raw_series(self) -> tuple[str, ...]:
        return self.metrics

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """First available name per pod, scaled, plus its oldest sample timestamp."""
        matchers = join_matchers(self.extra_matchers, selector(leases).both)
        values = " or ".join(f"max by (namespace, pod) ({m}{{{matchers}}})" for m in self.metrics)
        stamps = " or ".join(f"min by (namespace, pod) (timestamp({m}{{{matchers}}}))" for m in self.metrics)
        return f"{self.scale:g} * ({values}) or {tag(stamps, 'ts')}"

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """One value per pod, finite and fresh."""
        return single_value(series, eval_time, self.max_sample_age_s)
