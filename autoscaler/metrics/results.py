"""Typed outcomes of a metric query: a value is never silently 0.

Prometheus answers "no data" with an empty vector, "0 requests" with NaN, a vanished exporter with a
lingering old sample, and a broken query with an error envelope. Each of these is its own type here
(KEDA's Prometheus scaler does the same), so the decision core can refuse to scale down on anything
but `Ok` and explain why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NamedTuple

from autoscaler.metrics.promql import LeaseIndex, LeaseTarget, PodTarget


class Sample(NamedTuple):
    """One series of an instant-vector answer. A named tuple, not a frozen dataclass: an answer holds one
    per series (60,000+ for 10,000 predictive leases), and a frozen dataclass's ``__init__`` costs twice as
    much (one ``object.__setattr__`` per field)."""

    labels: Mapping[str, str]
    timestamp: float
    value: float


@dataclass(frozen=True)
class InstantVector:
    """A successful instant query (a scalar answer becomes one unlabelled sample)."""

    samples: tuple[Sample, ...]
    eval_time: float | None
    latency_s: float
    attempts: int = 1
    warnings: tuple[str, ...] = ()


ErrorKind = Literal["connection", "timeout", "http", "prometheus", "bad_response"]


@dataclass(frozen=True)
class QueryError:
    """The whole query failed: no pod of the batch has a value."""

    message: str
    kind: ErrorKind
    status: int | None = None
    attempts: int = 1
    latency_s: float = 0.0


@dataclass(frozen=True)
class Ok:
    """A usable value. `containers` holds the per-container split where the kind has one (CPU);
    `parts` named components where the kind reads several series per pod (request statistics)."""

    value: float
    containers: Mapping[str, float] | None = None
    parts: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.containers is not None:
            object.__setattr__(self, "containers", MappingProxyType(dict(self.containers)))
        if self.parts is not None:
            object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))


@dataclass(frozen=True)
class Empty:
    """No series for this pod (not scraped, not matched, or older than the lookback delta)."""

    reason: str = "no series"


@dataclass(frozen=True)
class MultiSeries:
    """More than one series for a key that should have exactly one: the query is ambiguous."""

    count: int


@dataclass(frozen=True)
class NotFinite:
    """The value is NaN, +/-Inf, or too large to be a quantity (``MAX_QUANTITY``)."""

    value: float


@dataclass(frozen=True)
class Stale:
    """The newest underlying sample is older than the allowed age at the query time."""

    age_s: float
    max_age_s: float
    value: float


@dataclass(frozen=True)
class NoTraffic:
    """A per-request average over a window with zero requests (0/0).

    Queue time is then truly 0 *if* the pod is ready; only the caller knows readiness, so the mapping
    to 0 is the caller's explicit decision.
    """

    requests_per_s: float = 0.0


Outcome = Ok | Empty | MultiSeries | NotFinite | Stale | NoTraffic | QueryError



@dataclass(frozen=True)
class BatchResult:
    """The per-pod outcomes of one batched query for one metric kind."""

    metric: str
    query: str
    outcomes: Mapping[PodTarget, Outcome]
    error: QueryError | None = None
    latency_s: float = 0.0
    eval_time: float | None = None
    unkeyed_series: int = 0
    """Series without namespace/pod labels (a custom template that aggregated them away)."""

    def for_pod(self, pod: PodTarget) -> Outcome:
        """The outcome for one pod: the query error if the query failed, `Empty` if not answered."""
        if self.error is not None:
            return self.error
        return self.outcomes.get(pod, Empty())

    def for_lease(self, lease: LeaseTarget) -> dict[PodTarget, Outcome]:
        """Outcomes for the pods of one lease: every named pod, or every answered pod matching its regex.

        A lease given by regex whose query failed maps to no pods; check `error` for that case.
        """
        if lease.pod_regex is None:
            return {p: self.for_pod(p) for p in (PodTarget(lease.namespace, n) for n in sorted(lease.pods))}
        one = LeaseIndex([lease])
        return {k: v for k, v in self.outcomes.items() if k in one}
