"""`gpuUtilization`: GPU busy percent per pod, from DCGM (either label style) or from Triton.

dcgm-exporter labels a GPU with the pod it is allocated to. Scraped with ``honorLabels: true`` the
labels are ``namespace``/``pod``; with the Helm chart's default ``honorLabels: false`` they arrive as
``exported_namespace``/``exported_pod`` while ``namespace``/``pod`` name the exporter itself. With
``label_style="both"`` the query averages each style per pod and joins them with ``or``: a pod
answered by the first style is never counted again from the second (no double counting). A pod on
several GPUs gets the average (or max) over its GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from autoscaler.metrics.kinds.base import SAMPLE_AGE_S, PodSeries, join_matchers, single_value
from autoscaler.metrics.promql import LeaseTarget, selector, tag
from autoscaler.metrics.results import Outcome


def _from_exported(expr: str) -> str:
    """Copy exported_namespace/exported_pod onto namespace/pod (the exported_* labels stay, so no
    two series collapse into one labelset)."""
    inner = f'label_replace({expr}, "namespace", "$1", "exported_namespace", "(.+)")'
    return f'label_replace({inner}, "pod", "$1", "exported_pod", "(.+)")'


@dataclass(frozen=True)
class GpuUtilization:
    """Percent 0-100 per pod."""

    name: str = "gpuUtilization"
    unit: str = "percent"
    source: Literal["dcgm", "triton"] = "dcgm"
    label_style: Literal["pod", "exported", "both"] = "both"
    """DCGM only: which pod labels to read; "both" prefers ``pod``/``namespace``."""
    aggregation: Literal["avg", "max"] = "avg"
    dcgm_metric: str = "DCGM_FI_DEV_GPU_UTIL"
    """0-100. (``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` is a 0-1 ratio: use a custom metric for it.)"""
    triton_metric: str = "nv_gpu_utilization"
    """0-1, multiplied by 100 here."""
    extra_matchers: str = ""
    max_sample_age_s: float = SAMPLE_AGE_S

    def __post_init__(self) -> None:
        if self.source not in ("dcgm", "triton"):
            raise ValueError(f"gpuUtilization source must be dcgm or triton, got {self.source!r}")
        if self.label_style not in ("pod", "exported", "both"):
            raise ValueError("gpuUtilization label_style must be pod, exported or both, "
                             f"got {self.label_style!r}")
        if self.aggregation not in ("avg", "max"):
            raise ValueError(f"gpuUtilization aggregation must be avg or max, got {self.aggregation!r}")

    @property
    def raw_series(self) -> tuple[str, ...]:
        return (self.triton_metric,) if self.source == "triton" else (self.dcgm_metric,)

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """Per-pod aggregate over the pod's GPUs, plus the oldest sample timestamp per pod."""
        agg = self.aggregation
        if self.source == "triton":
            series = f"{self.triton_metric}{{{join_matchers(self.extra_matchers, selector(leases).both)}}}"
            value = f"100 * {agg} by (namespace, pod) ({series})"
            oldest = f"min by (namespace, pod) (timestamp({series}))"
            return f"({value}) or {tag(oldest, 'ts')}"
        values: list[str] = []
        stamps: list[str] = []
        if self.label_style in ("pod", "both"):
            series = f"{self.dcgm_metric}{{{join_matchers(self.extra_matchers, selector(leases).both)}}}"
            values.append(f"{agg} by (namespace, pod) ({series})")
            stamps.append(f"min by (namespace, pod) (timestamp({series}))")
        if self.label_style in ("exported", "both"):
            sel = selector(leases, namespace_label="exported_namespace", pod_label="exported_pod")
            series = f"{self.dcgm_metric}{{{join_matchers(self.extra_matchers, sel.both)}}}"
            values.append(f"{agg} by (namespace, pod) ({_from_exported(series)})")
            stamps.append(f"min by (namespace, pod) ({_from_exported(f'timestamp({series})')})")
        return f"({' or '.join(values)}) or {tag(' or '.join(stamps), 'ts')}"

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """One value per pod, finite and fresh."""
        return single_value(series, eval_time, self.max_sample_age_s)
