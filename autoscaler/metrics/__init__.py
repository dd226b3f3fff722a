"""Prometheus side of the autoscaler: batched PromQL per metric kind and a strict async client.

Typical use (one query per kind, whatever the number of leases)::

    async with PrometheusClient(ClientSettings(url="http://prometheus:9090")) as client:
        kind = default_registry().create("queueTime")
        result = await fetch(client, kind, [LeaseTarget.of("inference", ["triton-0", "triton-1"])])
        match result.for_pod(PodTarget("inference", "triton-0")):
            case Ok(value): ...
            case NoTraffic(): ...          # 0 only if the pod is ready
            case other: ...                # Empty, MultiSeries, NotFinite, Stale, QueryError

This package does not depend on `autoscaler.config`; the controller adapts its models to these
plain dataclasses.
"""

from autoscaler.metrics.batch import fetch, fetch_all, split
from autoscaler.metrics.client import ClientSettings, Observer, PrometheusClient, QueryStats
from autoscaler.metrics.kinds import (
    CpuUtilization,
    CustomPromQL,
    GpuUtilization,
    KvCacheUsage,
    MetricKind,
    PodSeries,
    QueueTime,
)
from autoscaler.metrics.promql import LeaseTarget, PodTarget, quote, regex_quote, selector
from autoscaler.metrics.registry import MetricRegistry, default_registry
from autoscaler.metrics.results import (
    BatchResult,
    Empty,
    InstantVector,
    MultiSeries,
    NotFinite,
    NoTraffic,
    Ok,
    Outcome,
    QueryError,
    Sample,
    Stale,
)

__all__ = [
    "BatchResult", "ClientSettings", "CpuUtilization", "CustomPromQL", "Empty", "GpuUtilization",
    "InstantVector", "KvCacheUsage", "LeaseTarget", "MetricKind", "MetricRegistry", "MultiSeries",
    "NoTraffic", "NotFinite", "Observer", "Ok", "Outcome", "PodSeries", "PodTarget", "PrometheusClient",
    "QueryError", "QueryStats", "QueueTime", "Sample", "Stale", "default_registry", "fetch", "fetch_all",
    "quote", "regex_quote", "selector", "split",
]
