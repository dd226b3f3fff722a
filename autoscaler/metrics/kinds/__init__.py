"""Metric kinds: one module per source, each a small frozen dataclass implementing `MetricKind`."""

from autoscaler.metrics.kinds.base import MetricKind, PodSeries
from autoscaler.metrics.kinds.cpu import CpuUtilization
from autoscaler.metrics.kinds.custom import CustomPromQL
from autoscaler.metrics.kinds.gpu import GpuUtilization
from autoscaler.metrics.kinds.kv_cache import KvCacheUsage
from autoscaler.metrics.kinds.queue_time import QueueTime

__all__ = ["CpuUtilization", "CustomPromQL", "GpuUtilization", "KvCacheUsage", "MetricKind", "PodSeries",
           "QueueTime"]
