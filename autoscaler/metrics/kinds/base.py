"""The contract every metric kind implements, and the shared interpretation of per-pod series.

A kind turns a batch of leases into ONE PromQL query whose answer is keyed by (namespace, pod), and
turns the series answered for one pod into a typed `Outcome`. Besides its value series a query may
add auxiliary series labelled ``autoscaler_part`` (see `promql.tag`):

* ``ts``: the newest/oldest raw sample timestamp of the pod, so lingering samples become `Stale`
  (an instant query reports every value at the evaluation time, so staleness needs `timestamp()`);
* ``rate``: a request rate, so a 0/0 average becomes `NoTraffic` instead of `NotFinite`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autoscaler.metrics.promql import LeaseTarget
from autoscaler.metrics.results import Empty, MultiSeries, NotFinite, Ok, Outcome, Sample, Stale
from autoscaler.policy.types import is_quantity

SAMPLE_AGE_S = 120.0
"""Default max sample age: a DCGM exporter at its default 30 s collect interval plus scrape jitter."""


@dataclass(frozen=True)
class PodSeries:
    """All series the answer holds for one pod, split into value series and auxiliary parts."""

    values: tuple[Sample, ...]
    parts: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)


class MetricKind(Protocol):
    """A metric source plug-in (one module per kind, registered in `registry`)."""

    @property
    def name(self) -> str:
        """The policy's metric name, e.g. ``queueTime``."""
        ...

    @property
    def unit(self) -> str:
        """Unit of `Ok.value`, e.g. ``percent``, ``us``, ``cores``."""
        ...

    @property
    def raw_series(self) -> tuple[str, ...]:
        """The exporter's metric names the query reads (for diagnosis; empty for custom PromQL)."""
        ...

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """One PromQL query for every pod of every lease in the batch."""
        ...

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """The outcome for one pod, from the series answered for it."""
        ...


def staleness(series: PodSeries, eval_time: float, max_age_s: float, value: float) -> Stale | None:
    """`Stale` if the pod's ``ts`` part says its sample is older than `max_age_s` at `eval_time`."""
    stamps = [s.value for s in series.parts.get("ts", ()) if math.isfinite(s.value)]
    if not stamps:
        return None
    age = eval_time - min(stamps)
    return Stale(age_s=age, max_age_s=max_age_s, value=value) if age > max_age_s else None


def no_value(series: PodSeries, eval_time: float, max_age_s: float | None) -> Stale | Empty:
    """No value series: `Stale` when raw samples exist but are too old (e.g. rate() found fewer than
    two samples in its window), else `Empty`."""
    if max_age_s is not None and (stale := staleness(series, eval_time, max_age_s, math.nan)) is not None:
        return stale
    return Empty("no value series")


def single_value(series: PodSeries, eval_time: float, max_age_s: float | None) -> Outcome:
    """The usual rule: exactly one value series, finite, not stale."""
    if not series.values:
        return no_value(series, eval_time, max_age_s)
    if len(series.values) > 1:
        return MultiSeries(len(series.values))
    value = series.values[0].value
    if max_age_s is not None and (stale := staleness(series, eval_time, max_age_s, value)) is not None:
        return stale
    if not is_quantity(value):
        return NotFinite(value)
    return Ok(value)


def join_matchers(*parts: str) -> str:
    """Comma-join non-empty matcher fragments (admin-provided extra matchers may be empty)."""
    return ", ".join(p.strip() for p in parts if p.strip())
