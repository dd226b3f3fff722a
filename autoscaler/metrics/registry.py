"""Name -> metric kind. Adding a built-in metric is one module plus one line here (docs/metrics.md).

The registry maps the policy's metric names to factories taking keyword options (the kind's
dataclass fields), so the controller can build kinds from configuration without knowing them.
Admin-defined metrics are `CustomPromQL` instances created from the policy, not registered names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from autoscaler.metrics.kinds import CpuUtilization, GpuUtilization, KvCacheUsage, MetricKind, QueueTime
from autoscaler.metrics.kinds.request_stats import RequestStats

Factory = Callable[..., MetricKind]


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
