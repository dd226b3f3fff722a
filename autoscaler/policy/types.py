"""Typed, frozen values that flow into and out of the decision core.

Everything the HPA algorithm needs is passed in explicitly: the pods as the controller saw them, the
metric samples, the behaviour, the previous stabilisation state and the current time. Nothing in
this package reads a clock or talks to a server, so every decision can be replayed and explained.

Quantities are kept in *milli-units* (int) inside the core, exactly as the upstream HPA does with
``resource.Quantity.MilliValue()``; conversion from natural units happens at the edges
(:func:`to_milli`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

MAX_QUANTITY = 9.2e15
"""Largest magnitude whose milli-value fits in 64 bits (a Kubernetes Quantity's ``MilliValue()``): bigger values,
like NaN and infinities, are not metric values."""


def is_quantity(value: float) -> bool:
    """Finite, with a milli-value that fits in 64 bits (what :func:`to_milli` can convert)."""
    return math.isfinite(value) and abs(value) <= MAX_QUANTITY


def to_milli(value: float) -> int:
    """Natural units -> milli-units, rounding up like ``Quantity.MilliValue()``.

    The inner ``round`` removes binary floating-point noise (0.3 * 1000 = 300.00000000000006)
    before the ceiling, so decimal inputs map to the milli value a Kubernetes quantity would.
    """
    return math.ceil(round(value * 1000.0, 6))


class MetricType(StrEnum):
    RESOURCE = "Resource"
    CONTAINER_RESOURCE = "ContainerResource"
    PODS = "Pods"
    OBJECT = "Object"
    EXTERNAL = "External"


class TargetType(StrEnum):
    UTILIZATION = "Utilization"
    AVERAGE_VALUE = "AverageValue"
    VALUE = "Value"


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class Reason(StrEnum):
    """HPA condition reasons, reused verbatim so operators recognise them."""

    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    READY_FOR_NEW_SCALE = "ReadyForNewScale"
    SCALING_DISABLED = "ScalingDisabled"
    VALID_METRIC_FOUND = "ValidMetricFound"
    FAILED_GET_RESOURCE_METRIC = "FailedGetResourceMetric"
    FAILED_GET_CONTAINER_RESOURCE_METRIC = "FailedGetContainerResourceMetric"
    FAILED_GET_PODS_METRIC = "FailedGetPodsMetric"
    FAILED_GET_OBJECT_METRIC = "FailedGetObjectMetric"
    FAILED_GET_EXTERNAL_METRIC = "FailedGetExternalMetric"


FAILED_REASON = {
    MetricType.RESOURCE: Reason.FAILED_GET_RESOURCE_METRIC,
    MetricType.CONTAINER_RESOURCE: Reason.FAILED_GET_CONTAINER_RESOURCE_METRIC,
    MetricType.PODS: Reason.FAILED_GET_PODS_METRIC,
    MetricType.OBJECT: Reason.FAILED_GET_OBJECT_METRIC,
    MetricType.EXTERNAL: Reason.FAILED_GET_EXTERNAL_METRIC,
}


# --------------------------------------------------------------------------------------------- pods


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod as the HPA sees it. ``ready is None`` means the pod has no Ready condition at all."""

    name: str
    phase: PodPhase = PodPhase.RUNNING
    deleting: bool = False
    start_time: float | None = None
    ready: bool | None = True
    ready_transition_time: float | None = None
    # container name -> request in milli-units, per resource name ("cpu", "memory", ...);
    # a container absent from the inner map has no request for that resource.
    requests_milli: dict[str, dict[str, int]] = field(default_factory=dict)
    containers: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True, slots=True)
class Target:
    type: TargetType
    average_utilization: int | None = None  # percent, Utilization targets
    average_value_milli: int | None = None
    value_milli: int | None = None


@dataclass(frozen=True, slots=True)
class PodSample:
    """One pod's sample. ``value_milli is None`` means missing for that pod.

    For Resource metrics ``containers_milli`` holds per-container usage (None = missing container
    sample) and ``value_milli`` is ignored.
    """

    pod: str
    value_milli: int | None = None
    containers_milli: dict[str, int | None] | None = None
    timestamp: float | None = None
    window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class MetricInput:
    """One metric of a lease with the data fetched for it.

    ``error`` set means fetching failed (the HPA's "unable to get metric ..."); the metric then
    counts as invalid.
    """

    type: MetricType
    target: Target
    name: str = ""
    resource: str = ""
    container: str | None = None
    samples: tuple[PodSample, ...] = ()
    value_milli: int | None = None  # Object / External: the (summed) value
    error: str | None = None


# ----------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_s: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    stabilization_window_s: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_s=0,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(PolicyType.PODS, 4, 15), ScalingPolicy(PolicyType.PERCENT, 100, 15)),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_s=300,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
)


@dataclass(frozen=True, slots=True)
class Tolerances:
    scale_down: float = 0.1
    scale_up: float = 0.1

    def is_within(self, ratio: float) -> bool:
        # Same comparison as upstream: (1-down) <= ratio <= (1+up), in float64.
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


@dataclass(frozen=True, slots=True)
class Behavior:
    """HPA ``spec.behavior`` plus the controller-level knobs that shape the calculation.

    ``scale_up`` / ``scale_down`` of ``None`` select the legacy (no-behaviour) HPA path, with
    ``legacy_downscale_window_s`` as its stabilisation window.
    """

    scale_up: ScalingRules | None = DEFAULT_SCALE_UP
    scale_down: ScalingRules | None = DEFAULT_SCALE_DOWN
    tolerances: Tolerances = Tolerances()
    cpu_initialization_period_s: float = 300.0
    initial_readiness_delay_s: float = 30.0
    legacy_downscale_window_s: int = 300

    @property
    def legacy(self) -> bool:
        return self.scale_up is None or self.scale_down is None


# ------------------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Recommendation:
    timestamp: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A past rescale; ``change`` > 0 for a scale-up, < 0 for a scale-down."""

    timestamp: float
    change: int


@dataclass(frozen=True, slots=True)
class DecisionState:
    """Stabilisation bookkeeping carried from one decision to the next.

    ``recommendations is None`` means "never decided" (the HPA then records the current replica
    count as an initial recommendation); an empty tuple means "decided before, nothing kept".
    """

    recommendations: tuple[Recommendation, ...] | None = None
    scale_events: tuple[ScaleEvent, ...] = ()


# ----------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class MetricResult:
    proposed_replicas: int | None
    usage: float | None = None  # natural units (average per pod where the HPA reports one)
    utilization: int | None = None  # percent, Utilization targets only
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    type: str  # AbleToScale | ScalingActive | ScalingLimited
    status: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one decision for one lease needs."""

    now: float
    current_replicas: int  # scale.spec.replicas
    status_replicas: int  # scale.status.replicas
    min_replicas: int
    max_replicas: int
    behavior: Behavior
    pods: tuple[Pod, ...]
    metrics: tuple[MetricInput, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    desired_replicas: int
    reason: str
    message: str
    metrics: tuple[MetricResult, ...]
    state: DecisionState  # state to persist; includes the scale event if desired != current
    conditions: tuple[Condition, ...] = ()
    metric_replicas: int | None = None  # max over metric proposals, before behaviour
    stabilized_replicas: int | None = None
    metric_name: str = ""
    limited_by: str = ""  # which rule changed the stabilised recommendation, if any

    @property
    def rescale(self) -> bool:
        return self.desired_replicas != self.current_replicas

    current_replicas: int = 0
