"""Name -> metric kind. Adding a built-in metric is one module plus one line here (docs/metrics.md).

The registry maps the policy's metric names to factories taking keyword options (the kind's
dataclass fields), so the controller can build kinds from configuration without knowing them.
Admin-defined metrics are `CustomPromQL` instances created from the policy, not registered names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from autoscaler.metrics.kinds import CpuUtilization, CustomPromQL, GpuUtilization, KvCacheUsage, MetricKind, QueueTime
from autoscaler.metrics.kinds.request_stats import SERVERS, RequestStats

if TYPE_CHECKING:
    from autoscaler.config import Autoscaling

Factory = Callable[..., MetricKind]
SERVERS_BY_NAME = {s.server: s for s in SERVERS}


class MetricRegistry:
    """Factories of metric kinds by policy name."""

    def __init__(self, factories: Mapping[str, Factory] | None = None) -> None:
        self._factories: dict[str, Factory] = dict(factories or {})

    def register(self, name: str, factory: Factory) -> None:
        """Add a kind; a name can be registered once."""
        if name in self._factories:
            raise ValueError(f"metric kind {name!r} is already registered")
        self._factories[name] = factory

    def create(self, name: str, options: Mapping[str, Any] | None = None) -> MetricKind:
        """A configured kind; unknown names and unknown or bad options raise ValueError naming them."""
        try:
            factory = self._factories[name]
        except KeyError:
            raise ValueError(f"unknown metric kind {name!r} (known: {', '.join(sorted(self))})") from None
        try:
            return factory(**dict(options or {}))
        except TypeError as exc:
            raise ValueError(f"metric kind {name!r}: bad options {dict(options or {})!r}: {exc}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)


def default_registry() -> MetricRegistry:
    """The built-in kinds: cpuUtilization, gpuUtilization, queueTime, kvCacheUsage."""
    return MetricRegistry({
        "cpuUtilization": CpuUtilization,
        "gpuUtilization": GpuUtilization,
        "queueTime": QueueTime,
        "kvCacheUsage": KvCacheUsage,
        "requestStats": RequestStats,
    })


def kind_for(name: str, query: str | None, autoscaling: Autoscaling, registry: MetricRegistry | None = None) -> MetricKind:
    """The metric kind, with its options from the cluster policy, that the controller (and the doctor) query."""
    reg = registry or default_registry()
    prom = autoscaling.prometheus
    if query is not None:
        return CustomPromQL(name=name, template=query)
    if name == "queueTime":
        return reg.create(name, {"source": "recorded" if prom.queue_time_rule else "raw", "window_s": prom.rate_window_s,
                                 "max_sample_age_s": prom.max_sample_age_s,
                                 **({} if "vllm" in prom.servers else {"vllm_histogram": ""}),
                                 **({} if "nim" in prom.servers else {"nim_waiting": ""})})
    if name == "requestStats":
        pred = autoscaling.predictive
        # service and queue time over twice the rate window (60 s with the shipped 30 s)
        return reg.create(name, {"window_s": pred.rate_window_s, "long_window_s": max(2 * pred.rate_window_s, 10.0),
                                 "servers": tuple(SERVERS_BY_NAME[s] for s in prom.servers)})
    if name == "cpuUtilization":
        return reg.create(name, {"window_s": prom.rate_window_s, "max_sample_age_s": prom.max_sample_age_s})
    return reg.create(name, {"max_sample_age_s": prom.max_sample_age_s})
