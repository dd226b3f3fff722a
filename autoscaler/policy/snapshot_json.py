"""The ``autoscaler decide`` JSON contract: parse a snapshot, render a decision (see docs/decide.md).

Pydantic models validate the document and name the bad field; they are converted once into the
frozen core types, which the core then works on without further validation. Quantities arrive in
natural units (cores, microseconds, percent) or as Kubernetes quantity strings ("500m", "2Gi").
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from autoscaler.policy.types import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    MAX_QUANTITY,
    Behavior,
    Decision,
    DecisionState,
    MetricInput,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    PolicyType,
    Recommendation,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    Snapshot,
    Target,
    TargetType,
    Tolerances,
    is_quantity,
    to_milli,
)

_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(v: Any) -> Any:
    """Numbers pass through; Kubernetes quantity strings become floats in base units."""
    if isinstance(v, str):
        m = _QUANTITY.match(v.strip())
        if not m:
            raise ValueError(f"not a number or Kubernetes quantity: {v!r}")
        return float(m.group(1)) * _SUFFIX[m.group(2) or ""]
    return v


def parse_time(v: Any) -> Any:
    """Epoch seconds, or an RFC 3339 timestamp string."""
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise ValueError(f"not epoch seconds or an RFC 3339 time: {v!r}") from exc
    return v


def check_quantity(v: float) -> float:
    """A finite quantity whose milli-value fits in 64 bits."""
    if not is_quantity(v):
        raise ValueError(f"out of range: {v!r} (a quantity must be finite and at most {MAX_QUANTITY:g} in size)")
    return v


Quantity = Annotated[float, BeforeValidator(parse_quantity), AfterValidator(check_quantity)]
Time = Annotated[float, BeforeValidator(parse_time)]


class _M(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ContainerIn(_M):
    name: str
    requests: dict[str, Quantity] = Field(default_factory=dict)


class PodIn(_M):
    name: str
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] = "Running"
    deleting: bool = False
    start_time: Time | None = Field(None, alias="startTime")
    ready: bool | None = True
    ready_transition_time: Time | None = Field(None, alias="readyTransitionTime")
    containers: list[ContainerIn] = Field(default_factory=list)


class TargetIn(_M):
    type: Literal["Utilization", "AverageValue", "Value"]
    average_utilization: int | None = Field(None, alias="averageUtilization", gt=0)
    average_value: Quantity | None = Field(None, alias="averageValue", gt=0)
    value: Quantity | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _needs_its_field(self) -> TargetIn:
        need = {"Utilization": "average_utilization", "AverageValue": "average_value", "Value": "value"}[self.type]
        if getattr(self, need) is None:
            alias = {"average_utilization": "averageUtilization", "average_value": "averageValue"}.get(need, need)
            raise ValueError(f"target type {self.type} needs the field {alias!r}")
        return self


class SampleIn(_M):
    pod: str
    timestamp: Time | None = None
    window_seconds: float = Field(0.0, alias="windowSeconds", ge=0)
    containers: dict[str, Quantity | None] | None = None
    value: Quantity | None = None


class MetricIn(_M):
    type: Literal["Resource", "ContainerResource", "Pods", "Object", "External"]
    resource: str | None = None
    container: str | None = None
    name: str | None = None
    target: TargetIn
    samples: list[SampleIn] = Field(default_factory=list)
    value: Quantity | list[Quantity] | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MetricIn:
        if self.type in ("Resource", "ContainerResource"):
            if not self.resource:
                raise ValueError(f"a {self.type} metric needs 'resource' (e.g. \"cpu\")")
        elif not self.name:
            raise ValueError(f"a {self.type} metric needs 'name'")
        if self.type == "ContainerResource" and not self.container:
            raise ValueError("a ContainerResource metric needs 'container'")
        return self


class PolicyIn(_M):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=1800)


class RulesIn(_M):
    stabilization_window_seconds: int | None = Field(None, alias="stabilizationWindowSeconds", ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(None, alias="selectPolicy")
    policies: list[PolicyIn] | None = None
    tolerance: float | None = Field(None, ge=0)


class ToleranceIn(_M):
    scale_up: float = Field(0.1, alias="scaleUp", ge=0)
    scale_down: float = Field(0.1, alias="scaleDown", ge=0, le=1)


class BehaviorIn(_M):
    tolerance: ToleranceIn | float | None = None
    cpu_initialization_period_seconds: float | None = Field(None, alias="cpuInitializationPeriodSeconds", ge=0)
    initial_readiness_delay_seconds: float | None = Field(None, alias="initialReadinessDelaySeconds", ge=0)
    scale_up: RulesIn | None = Field(None, alias="scaleUp")
    scale_down: RulesIn | None = Field(None, alias="scaleDown")


class RecommendationIn(_M):
    timestamp: Time
    replicas: int


class ScaleEventIn(_M):
    timestamp: Time
    change: int


class StateIn(_M):
    recommendations: list[RecommendationIn] | None = None
    scale_events: list[ScaleEventIn] = Field(default_factory=list, alias="scaleEvents")


class SnapshotIn(_M):
    now: Time
    current_replicas: int = Field(alias="currentReplicas", ge=0)
    status_replicas: int | None = Field(None, alias="statusReplicas", ge=0)
    min_replicas: int = Field(1, alias="minReplicas", ge=0)
    max_replicas: int = Field(alias="maxReplicas", ge=1)
    behavior: BehaviorIn | None = None
    # controller-level settings, for the legacy (behavior: null) path or to override defaults
    tolerance: float | None = Field(None, ge=0)
    cpu_initialization_period_seconds: float | None = Field(None, alias="cpuInitializationPeriodSeconds", ge=0)
    initial_readiness_delay_seconds: float | None = Field(None, alias="initialReadinessDelaySeconds", ge=0)
    downscale_stabilization_window_seconds: int = Field(300, alias="downscaleStabilizationWindowSeconds", ge=0)
    pods: list[PodIn] = Field(default_factory=list)
    metrics: list[MetricIn] = Field(default_factory=list)
    state: StateIn | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SnapshotIn:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})")
        return self


def _rules(r: RulesIn | None, default: ScalingRules) -> ScalingRules:
    if r is None:
        return default
    policies = default.policies if not r.policies else tuple(
        ScalingPolicy(PolicyType(p.type), p.value, p.period_seconds) for p in r.policies)
    return ScalingRules(
        stabilization_window_s=(default.stabilization_window_s if r.stabilization_window_seconds is None
                                else r.stabilization_window_seconds),
        select_policy=SelectPolicy(r.select_policy or "Max"),
        policies=policies,
    )


def _behavior(s: SnapshotIn) -> Behavior:
    base = s.tolerance if s.tolerance is not None else 0.1
    tol = Tolerances(base, base)
    cpu_init = s.cpu_initialization_period_seconds
    delay = s.initial_readiness_delay_seconds
    b = s.behavior
    if b is None:
        return Behavior(scale_up=None, scale_down=None, tolerances=tol,
                        cpu_initialization_period_s=300.0 if cpu_init is None else cpu_init,
                        initial_readiness_delay_s=30.0 if delay is None else delay,
                        legacy_downscale_window_s=s.downscale_stabilization_window_seconds)
    if isinstance(b.tolerance, ToleranceIn):
        tol = Tolerances(b.tolerance.scale_down, b.tolerance.scale_up)
    elif isinstance(b.tolerance, float | int):
        tol = Tolerances(float(b.tolerance), float(b.tolerance))
    # per-direction overrides as in upstream's behavior.scaleUp/scaleDown.tolerance
    if b.scale_up is not None and b.scale_up.tolerance is not None:
        tol = Tolerances(tol.scale_down, b.scale_up.tolerance)
    if b.scale_down is not None and b.scale_down.tolerance is not None:
        tol = Tolerances(b.scale_down.tolerance, tol.scale_up)
    down_default = ScalingRules(s.downscale_stabilization_window_seconds, DEFAULT_SCALE_DOWN.select_policy,
                                DEFAULT_SCALE_DOWN.policies)
    return Behavior(
        scale_up=_rules(b.scale_up, DEFAULT_SCALE_UP),
        scale_down=_rules(b.scale_down, down_default),
        tolerances=tol,
        cpu_initialization_period_s=(b.cpu_initialization_period_seconds if b.cpu_initialization_period_seconds
                                     is not None else (300.0 if cpu_init is None else cpu_init)),
        initial_readiness_delay_s=(b.initial_readiness_delay_seconds if b.initial_readiness_delay_seconds
                                   is not None else (30.0 if delay is None else delay)),
        legacy_downscale_window_s=s.downscale_stabilization_window_seconds,
    )


def _pod(p: PodIn) -> Pod:
    reqs: dict[str, dict[str, int]] = {}
    for c in p.containers:
        for res, q in c.requests.items():
            reqs.setdefault(res, {})[c.name] = to_milli(q)
    return Pod(
        name=p.name, phase=PodPhase(p.phase), deleting=p.deleting, start_time=p.start_time, ready=p.ready,
        ready_transition_time=p.ready_transition_time, requests_milli=reqs,
        containers=tuple(c.name for c in p.containers),
    )


def _metric(m: MetricIn) -> MetricInput:
    t = m.target
    target = Target(
        type=TargetType(t.type),
        average_utilization=t.average_utilization,
        average_value_milli=None if t.average_value is None else to_milli(t.average_value),
        value_milli=None if t.value is None else to_milli(t.value),
    )
    samples = tuple(
        PodSample(
            pod=s.pod,
            value_milli=None if s.value is None else to_milli(s.value),
            containers_milli=(None if s.containers is None else
                              {k: (None if v is None else to_milli(v)) for k, v in s.containers.items()}),
            timestamp=s.timestamp,
            window_s=s.window_seconds,
        )
        for s in m.samples
    )
    if isinstance(m.value, list):
        value: int | None = sum(to_milli(v) for v in m.value)
    else:
        value = None if m.value is None else to_milli(m.value)
    mtype = MetricType(m.type)
    return MetricInput(type=mtype, target=target, name=m.name or "", resource=m.resource or "",
                       container=m.container, samples=samples, value_milli=value, error=m.error)


def _state(s: StateIn | None) -> DecisionState:
    if s is None:
        return DecisionState()
    recs = None if s.recommendations is None else tuple(
        Recommendation(r.timestamp, r.replicas) for r in s.recommendations)
    return DecisionState(recs, tuple(ScaleEvent(e.timestamp, e.change) for e in s.scale_events))


class SnapshotError(ValueError):
    """The snapshot document is invalid; the message names every bad field."""


def parse_snapshot(doc: Any) -> tuple[Snapshot, DecisionState]:
    try:
        s = SnapshotIn.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(document)"
            lines.append(f"{loc}: {e['msg']}")
        raise SnapshotError("invalid snapshot:\n  " + "\n  ".join(lines)) from None
    snap = Snapshot(
        now=s.now,
        current_replicas=s.current_replicas,
        status_replicas=s.current_replicas if s.status_replicas is None else s.status_replicas,
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        behavior=_behavior(s),
        pods=tuple(_pod(p) for p in s.pods),
        metrics=tuple(_metric(m) for m in s.metrics),
    )
    return snap, _state(s.state)


def state_to_json(state: DecisionState) -> dict[str, Any]:
    return {
        "recommendations": (None if state.recommendations is None else
                            [{"timestamp": r.timestamp, "replicas": r.replicas} for r in state.recommendations]),
        "scaleEvents": [{"timestamp": e.timestamp, "change": e.change} for e in state.scale_events],
    }


def state_from_json(doc: Any) -> DecisionState:
    return _state(StateIn.model_validate(doc) if doc is not None else None)


def decision_to_json(d: Decision, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "desiredReplicas": d.desired_replicas,
        "reason": d.reason,
        "message": d.message,
        "currentReplicas": d.current_replicas,
        "metricReplicas": d.metric_replicas,
        "stabilizedReplicas": d.stabilized_replicas,
        "limitedBy": d.limited_by or None,
        "metrics": [
            {
                "type": str(m.type),
                "name": m.name or m.resource,
                "proposedReplicas": r.proposed_replicas,
                "usage": r.usage,
                "utilization": r.utilization,
                "error": r.error,
            }
            for m, r in zip(snapshot.metrics, d.metrics, strict=False)
        ],
        "conditions": [
            {"type": c.type, "status": "True" if c.status else "False", "reason": c.reason, "message": c.message}
            for c in d.conditions
        ],
        "state": state_to_json(d.state),
    }
