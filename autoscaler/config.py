"""Configuration models: the cluster policy (ConfigMap), the lease spec (annotations), their resolution.

The cluster policy's ``autoscaling:`` block accepts NVIDIA Triton Management Service's
``server.autoscaling`` Helm values verbatim, with TMS's defaults (autoscaling off, every metric
disallowed), plus this project's extensions (``kvCacheUsage``, custom PromQL metrics, HPA-style
``behavior`` defaults, the loop interval, the Prometheus connection and a failure fallback).

A lease opts in with ``inference-autoscaler.io/enabled: "true"`` on its Deployment. Its annotations
are resolved against the policy with TMS semantics (:func:`resolve_lease`); every adjustment and every
malformed value becomes a :class:`LeaseIssue` naming the annotation key, the value and the rule, so
the controller can post them as Warning Events. Malformed values make the lease invalid (left
untouched); out-of-range values are clamped to the nearest bound and reported.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoscaler import ANNOTATION_PREFIX
from autoscaler.policy.predictive import PredictiveParams
from autoscaler.policy.types import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    Tolerances,
)

BUILTIN_METRICS = ("cpuUtilization", "gpuUtilization", "queueTime", "kvCacheUsage")


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name a mistyped one is closest to (case, a letter, a plural), if one is close."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.75)
    return by_lower[close[0]] if close else None


def _did_you_mean(name: str | None) -> str:
    return f", did you mean {name!r}?" if name else ""


STATUS_ANNOTATION = ANNOTATION_PREFIX + "status"
STATE_ANNOTATION = ANNOTATION_PREFIX + "state"
PREDICTIVE_STATE_ANNOTATION = ANNOTATION_PREFIX + "predictive-state"
POLICY_NAMESPACE = "inference-autoscaler"
"""Where the cluster policy ConfigMap (and the controller's leader Lease) live by default."""
POLICY_CONFIGMAP = "inference-autoscaler-policy"
LEADER_LEASE = "inference-autoscaler"
"""The controller's leader-election Lease, in the policy namespace."""
POLICY_KEY = "policy.yaml"
"""The ConfigMap key that holds the policy YAML."""
CONTROLLER_ANNOTATIONS = frozenset({STATUS_ANNOTATION, STATE_ANNOTATION, PREDICTIVE_STATE_ANNOTATION})
"""The annotations the controller writes (never read as lease settings)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# ------------------------------------------------------------------------------ cluster policy


class ReplicaDefaults(_Strict):
    minimum: int = Field(1, ge=0, description="minimum replicas when a lease names none")
    maximum: int = Field(5, ge=1, description="maximum replicas when a lease names none")


class MinimumLimits(_Strict):
    lower_bound: int = Field(1, alias="lowerBound", ge=0, description="lowest minimum a lease may ask for")
    upper_bound: int = Field(2, alias="upperBound", ge=0, description="highest minimum a lease may ask for")

    @model_validator(mode="after")
    def _ordered(self) -> MinimumLimits:
        if self.lower_bound > self.upper_bound:
            raise ValueError(f"lowerBound ({self.lower_bound}) is greater than upperBound ({self.upper_bound})")
        return self


class ReplicaLimits(_Strict):
    maximum: int = Field(10, ge=1, description="the most replicas any lease may ask for")
    minimum: MinimumLimits = MinimumLimits()


class Replicas(_Strict):
    default: ReplicaDefaults = ReplicaDefaults()
    limits: ReplicaLimits = ReplicaLimits()

    @model_validator(mode="after")
    def _consistent(self) -> Replicas:
        if self.default.minimum > self.default.maximum:
            raise ValueError(f"default.minimum ({self.default.minimum}) is greater than default.maximum "
                             f"({self.default.maximum})")
        if self.default.maximum > self.limits.maximum:
            raise ValueError(f"default.maximum ({self.default.maximum}) is greater than limits.maximum "
                             f"({self.limits.maximum})")
        return self


class Threshold(_Strict):
    default: float = Field(description="target used when the lease names none")
    minimum: float = Field(0.0, description="lowest target a lease may ask for")
    maximum: float = Field(0.0, description="highest target a lease may ask for; 0 means no upper bound")

    def clamp(self, value: float) -> float:
        lo = self.minimum
        hi = self.maximum if self.maximum > 0 else math.inf
        return min(max(value, lo), hi)


class MetricPolicy(_Strict):
    allowed: bool = Field(False, description="a lease may turn this metric on itself")
    enabled: bool = Field(False, description="used for every lease that names no metrics")
    threshold: Threshold
    query: str | None = Field(
        None,
        description="custom metrics only: PromQL template giving one value per pod, with {{namespace}} and "
                    "{{pods}} placeholders (label matchers), aggregated `by (namespace, pod)`",
    )
    unit: str = Field("", description="unit of the threshold, for messages and status (e.g. 'us', '%')")


def _default_metrics() -> dict[str, MetricPolicy]:
    # TMS defaults (all off), plus kvCacheUsage (percent of the KV cache, NIM/vLLM).
    return {
        "cpuUtilization": MetricPolicy(threshold=Threshold(default=90, minimum=50, maximum=100), unit="%"),
        "gpuUtilization": MetricPolicy(threshold=Threshold(default=90, minimum=50, maximum=100), unit="%"),
        "queueTime": MetricPolicy(threshold=Threshold(default=10000, minimum=10000, maximum=0), unit="us"),
        "kvCacheUsage": MetricPolicy(threshold=Threshold(default=80, minimum=10, maximum=100), unit="%"),
    }


Server = Literal["triton", "vllm", "nim"]
SERVER_NAMES: tuple[Server, ...] = ("triton", "vllm", "nim")


class PrometheusSettings(_Strict):
    pod_monitor_labels: dict[str, str] = Field(default_factory=lambda: {"release": "prometheus"},
                                               alias="podMonitorLabels")
    rule_labels: dict[str, str] = Field(default_factory=lambda: {"release": "prometheus"}, alias="ruleLabels")
    create_objects: bool = Field(False, alias="createObjects",
                                 description="create a PodMonitor and PrometheusRule per lease (TMS feature)")
    metrics_port: str = Field("metrics", alias="metricsPort", description="Triton metrics port name for PodMonitors")
    url: str = Field("http://prometheus-operated.monitoring.svc:9090", description="Prometheus base URL")
    bearer_token_file: str | None = Field(None, alias="bearerTokenFile")
    ca_file: str | None = Field(None, alias="caFile")
    insecure_skip_verify: bool = Field(False, alias="insecureSkipVerify")
    timeout_s: float = Field(5.0, alias="timeoutSeconds", gt=0)
    max_sample_age_s: float = Field(120.0, alias="maxSampleAgeSeconds", gt=0,
                                    description="older samples are treated as stale (missing)")
    queue_time_rule: bool = Field(True, alias="queueTimeRecordingRule",
                                  description="read queue time from the shipped recording rule (1m window)")
    rate_window_s: float = Field(60.0, alias="rateWindowSeconds", gt=0,
                                 description="rate() window for CPU and raw queue-time queries")
    servers: list[Server] = Field(
        default_factory=lambda: list(SERVER_NAMES), min_length=1,
        description="whose request series queueTime (raw) and the predictive algorithm read, each pod from the "
                    "first it has (nim: NIM for LLMs' un-prefixed names, for pods without vLLM's): [triton] spares "
                    "Prometheus the vLLM and NIM selectors in a Triton-only cluster")


class PolicyIn(_Strict):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=1800)


class RulesIn(_Strict):
    stabilization_window_seconds: int | None = Field(None, alias="stabilizationWindowSeconds", ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = Field("Max", alias="selectPolicy")
    policies: list[PolicyIn] | None = None
    tolerance: float | None = Field(None, ge=0, le=1)

    def to_rules(self, default: ScalingRules) -> ScalingRules:
        return ScalingRules(
            stabilization_window_s=(default.stabilization_window_s if self.stabilization_window_seconds is None
                                    else self.stabilization_window_seconds),
            select_policy=SelectPolicy(self.select_policy),
            policies=default.policies if not self.policies else tuple(
                ScalingPolicy(PolicyType(p.type), p.value, p.period_seconds) for p in self.policies),
        )


class BehaviorSettings(_Strict):
    """HPA-style ``behavior`` defaults applied to every lease."""

    scale_up: RulesIn = Field(default_factory=RulesIn, alias="scaleUp")
    scale_down: RulesIn = Field(default_factory=RulesIn, alias="scaleDown")
    tolerance: float = Field(0.1, ge=0, le=1)
    cpu_initialization_period_s: float = Field(300.0, alias="cpuInitializationPeriodSeconds", ge=0)
    initial_readiness_delay_s: float = Field(30.0, alias="initialReadinessDelaySeconds", ge=0)

    def to_behavior(self) -> Behavior:
        up = self.scale_up.to_rules(DEFAULT_SCALE_UP)
        down = self.scale_down.to_rules(DEFAULT_SCALE_DOWN)
        tol = Tolerances(
            scale_down=self.scale_down.tolerance if self.scale_down.tolerance is not None else self.tolerance,
            scale_up=self.scale_up.tolerance if self.scale_up.tolerance is not None else self.tolerance,
        )
        return Behavior(scale_up=up, scale_down=down, tolerances=tol,
                        cpu_initialization_period_s=self.cpu_initialization_period_s,
                        initial_readiness_delay_s=self.initial_readiness_delay_s)


class Fallback(_Strict):
    """What to do after ``failureThreshold`` consecutive failed decisions (KEDA-style)."""

    failure_threshold: int = Field(3, alias="failureThreshold", ge=1)
    action: Literal["hold", "replicas"] = Field("hold", description="hold the current count, or go to `replicas`")
    replicas: int | None = Field(None, ge=0, description="replica count for action `replicas` (clamped to bounds)")

    @model_validator(mode="after")
    def _needs_replicas(self) -> Fallback:
        if self.action == "replicas" and self.replicas is None:
            raise ValueError("fallback action 'replicas' needs 'replicas'")
        return self



class PredictiveSettings(_Strict):
    """The ``predictive`` algorithm's parameters (extension; docs/predictive.md). Every field has a safe default."""

    violation_target: float = Field(0.04, alias="violationTarget", gt=0, lt=1,
                                    description="allowed probability that a request queues longer than the "
                                                "queueTime threshold, at the forecast rate")
    arrival_cv2: float = Field(1.0, alias="arrivalCv2", gt=0, le=100,
                               description="squared CV of inter-arrival times for the queueing formula (1 = Poisson)")
    service_time_cv: float = Field(0.0, alias="serviceTimeCv", ge=0, le=10,
                                   description="CV of service times for the queueing formula (0 = constant)")
    rate_window_s: float = Field(30.0, alias="rateWindowSeconds", ge=2, le=600,
                                 description="rate() window of the request-rate query, seconds")
    burst_window_s: float = Field(600.0, alias="burstWindowSeconds", ge=0, le=3600,
                                  description="keep the capacity the largest offered load (rate x service time) of this "
                                              "window needed, seconds (0: off)")
    trend_window_s: float = Field(300.0, alias="trendWindowSeconds", ge=0, le=3600,
                                  description="window of the rate's linear-trend fit, seconds (0: no trend)")
    trend_damping: float = Field(0.5, alias="trendDamping", ge=0, le=1,
                                 description="fraction of the fitted trend extrapolated over the start-up horizon")
    lag_s: float = Field(30.0, alias="lagSeconds", ge=0, le=600,
                         description="metric delay added to the start-up horizon, seconds")
    startup_s: float = Field(120.0, alias="startupSeconds", gt=0, le=3600,
                             description="pod creation-to-Ready delay when none has been measured yet, seconds")
    slots_per_replica: int = Field(1, alias="slotsPerReplica", ge=1, le=4096,
                                   description="requests one replica executes at once (instances x max batch) when "
                                               "the lease's slots-per-replica annotation and its pods (NIM's "
                                               "num_request_max) do not say; the default 1 (Triton's default "
                                               "model configuration) is not applied to vLLM pods")
    seasonal: bool = Field(True, description="use the lease's daily shape (FFT) once a full period of history exists")
    season_period_s: float = Field(86400.0, alias="seasonPeriodSeconds", ge=600,
                                   description="period of the seasonality, seconds")
    season_bucket_s: float = Field(600.0, alias="seasonBucketSeconds", ge=60, le=3600,
                                   description="resolution of the seasonal history, seconds")
    season_harmonics: int = Field(4, alias="seasonHarmonics", ge=1, le=48,
                                  description="daily harmonics kept from the FFT")
    season_history_periods: int = Field(7, alias="seasonHistoryPeriods", ge=1, le=28,
                                        description="periods of history kept for the seasonal fit")
    cycle_correlation: float = Field(0.6, alias="cycleCorrelation", ge=0, le=1,
                                     description="recurring load: when the load history repeats with a period "
                                                 "(detrended autocorrelation at least this at its peak), the load "
                                                 "the last two periods saw at the horizon is a forecast (0: off)")
    cycle_bucket_s: float = Field(60.0, alias="cycleBucketSeconds", ge=5, le=3600,
                                  description="resolution of the recurring-load history, seconds")
    cycle_history_s: float = Field(21600.0, alias="cycleHistorySeconds", ge=0, le=7 * 86400,
                                   description="recurring-load history kept, seconds (periods up to half of it)")
    cycle_min_period_s: float = Field(600.0, alias="cycleMinPeriodSeconds", gt=0, le=86400,
                                      description="shortest period looked for, seconds")
    cycle_tolerance_s: float = Field(60.0, alias="cycleToleranceSeconds", ge=0, le=3600,
                                     description="how far a recurrence may drift from the period, seconds")
    drain_s: float = Field(60.0, alias="drainSeconds", ge=0, le=3600,
                           description="drain the pending backlog within this time, seconds (0: ignore it); a "
                                       "pod with more of its own work than this is stuck: its backlog counts only "
                                       "as far as it can serve it in this time, and its queue time is left out")
    scale_down_window_s: float = Field(120.0, alias="scaleDownWindowSeconds", ge=0, le=3600,
                                       description="scale down only to the largest target of this window, seconds")
    scale_down_max_fraction: float = Field(0.5, alias="scaleDownMaxFraction", gt=0, le=1,
                                           description="largest fraction of the replicas removed per decision")
    reactive_queue_factor: float = Field(1.0, alias="reactiveQueueFactor", ge=0, le=100,
                                         description="no scale-down while queue time exceeds this multiple of the "
                                                     "threshold (0: off)")
    growth_window_s: float = Field(30.0, alias="growthWindowSeconds", ge=0, le=600,
                                   description="demand = served rate + growth of the pending backlog over this "
                                               "window, seconds (0: served rate only)")
    panic_queue_factor: float = Field(100.0, alias="panicQueueFactor", ge=0, le=100000,
                                      description="panic while queue time exceeds this multiple of the threshold "
                                                  "and requests are pending (0: never)")
    panic_growth: float = Field(2.0, alias="panicGrowth", ge=1, le=10,
                                description="in panic, at least this factor times the current replicas per decision")
    reactive_floor_factor: float = Field(1.1, alias="reactiveFloorFactor", ge=0, le=1000,
                                         description="while queue time exceeds this multiple of the threshold for "
                                                     "the whole floor window, ceil(ready x queue time / threshold) "
                                                     "is a floor (0: off)")
    reactive_floor_max_growth: float = Field(4.0, alias="reactiveFloorMaxGrowth", ge=1, le=100,
                                             description="the reactive floor asks for at most this factor times the "
                                                         "ready replicas")
    reactive_floor_window_s: float = Field(60.0, alias="reactiveFloorWindowSeconds", ge=0, le=3600,
                                           description="the reactive floor uses the smallest queue time and Ready "
                                                       "count of this window, seconds: only a sustained excess "
                                                       "raises it (0: the current values)")
    calibration_window_s: float = Field(1200.0, alias="calibrationWindowSeconds", ge=0, le=86400,
                                        description="time constant of the share of queue-time readings above the "
                                                    "threshold; while over calibrationGrowShare are, the demand "
                                                    "is scaled up (0: off)")
    calibration_max: float = Field(4.0, alias="calibrationMax", ge=1, le=100,
                                   description="largest factor the calibration scales the demand by")
    calibration_grow_share: float = Field(0.35, alias="calibrationGrowShare", gt=0, lt=1,
                                          description="the calibration's headroom grows while the smoothed share "
                                                      "of queue-time readings above the threshold is over this")
    calibration_relax_share: float = Field(0.2, alias="calibrationRelaxShare", ge=0, lt=1,
                                           description="...and relaxes towards 1 while that share is under this "
                                                       "(below calibrationGrowShare); in between it holds")
    spike_roughness: float = Field(0.75, alias="spikeRoughness", gt=0, le=10,
                                   description="the arrivals are rough when the request rate's readings over the "
                                               "rate history move in spikes: their absolute successive changes "
                                               "over their sum, scaled so that isolated one-second spikes give 1 "
                                               "(Poisson, steps, ramps: under 0.15)")
    spike_hold_s: float = Field(1800.0, alias="spikeHoldSeconds", ge=0, le=86400,
                                description="while the arrivals are rough, scale down no lower than "
                                            "spikeHoldFraction x the largest target of this window, seconds "
                                            "(0: off)")
    spike_hold_fraction: float = Field(0.7, alias="spikeHoldFraction", gt=0, le=1,
                                       description="fraction of that largest target the spike hold keeps")
    envelope_trend_fit: float = Field(0.5, alias="envelopeTrendFit", ge=0, le=1,
                                      description="on a falling trend whose linear fit explains at least this "
                                                  "share of the rate's variance (R²) over the trend window, the "
                                                  "burst envelope counts each past load at the level the fall "
                                                  "brings it to now (0: off)")
    envelope_trend_half_share: float = Field(0.3, alias="envelopeTrendHalfShare", ge=0, le=1,
                                             description="...only where the fall is sustained: the slope over each "
                                                         "half of the trend window is at least this share of the "
                                                         "whole window's (a step down is not)")
    one_off_hold_startups: float = Field(1.0, alias="oneOffHoldStartups", ge=0, le=100,
                                         description="after a fall of the load not seen to come back within "
                                                     "recurrenceMemorySeconds, the burst envelope spans only this "
                                                     "many start-up delays (0: always the whole burst window)")
    recurrence_memory_s: float = Field(3600.0, alias="recurrenceMemorySeconds", gt=0, le=7 * 86400,
                                       description="how long a return of the load to a level it fell from marks "
                                                   "the lease's bursts as recurring, seconds")
    recurrence_share: float = Field(0.5, alias="recurrenceShare", gt=0, lt=1,
                                    description="a fall: the offered load under this share of the burst envelope; "
                                                "a return: back over this share of the envelope it fell from")

    @model_validator(mode="after")
    def _bucket_divides_period(self) -> PredictiveSettings:
        if self.season_period_s < 2 * self.season_bucket_s:
            raise ValueError(f"predictive.seasonPeriodSeconds ({self.season_period_s}) must be at least twice "
                             f"seasonBucketSeconds ({self.season_bucket_s})")
        return self

    @model_validator(mode="after")
    def _cycle_buckets(self) -> PredictiveSettings:
        if self.cycle_min_period_s < 2 * self.cycle_bucket_s:
            raise ValueError(f"predictive.cycleMinPeriodSeconds ({self.cycle_min_period_s}) must be at least twice "
                             f"cycleBucketSeconds ({self.cycle_bucket_s})")
        return self

    @model_validator(mode="after")
    def _calibration_band(self) -> PredictiveSettings:
        if self.calibration_relax_share >= self.calibration_grow_share:
            raise ValueError(f"predictive.calibrationRelaxShare ({self.calibration_relax_share}) must be below "
                             f"calibrationGrowShare ({self.calibration_grow_share})")
        return self

    @property
    def stated_slots(self) -> int | None:
        """``slotsPerReplica`` when the policy states it, None when it is the default (which vLLM pods do not get)."""
        return self.slots_per_replica if "slots_per_replica" in self.model_fields_set else None

    def to_params(self, target_queue_time_us: float) -> PredictiveParams:
        """The pure policy's parameters, with the lease's queue-time target (µs). Every parameter of the policy
        is a setting of the same name; the settings only the controller uses (start-up delay, slots) stay here (the
        rate window is both: the controller queries with it, the policy's roughness accounts for it)."""
        shared = {f.name: getattr(self, f.name) for f in fields(PredictiveParams)
                  if f.name in type(self).model_fields}
        return PredictiveParams(target_queue_time_us=target_queue_time_us, **shared)

    def with_options(self, overrides: dict[str, float]) -> PredictiveSettings:
        """These settings with fields overridden by camelCase key (``--policy-option predictive.KEY=V``)."""
        return self.model_validate({**self.model_dump(by_alias=True), **overrides})


MAX_IDLE_S = 7 * 86400.0  # the longest idle period before zero, policy or annotation


class ScaleToZero(_Strict):
    """Scale to zero (extension): what wakes a lease whose minimum is 0, and how long it idles first."""

    wake_query: str | None = Field(
        None, alias="wakeQuery",
        description="PromQL template of a lease's demand seen in front of its pods (its gateway's or ingress's "
                    "request rate), one value, with {{namespace}} and {{name}} (the Deployment's) placeholders; over "
                    "wakeThreshold it wakes a lease at zero replicas and keeps one with replicas from idling. A "
                    "lease may have a minimum of 0 only when this is set")
    idle_s: float = Field(900.0, alias="idleSeconds", gt=0, le=MAX_IDLE_S,
                          description="a lease whose minimum is 0 goes to zero replicas once its wake value has "
                                      "stayed at or under wakeThreshold this long, seconds (a lease's idle-seconds "
                                      "annotation overrides it)")
    wake_threshold: float = Field(0.0, alias="wakeThreshold", ge=0,
                                  description="wake values at or under this are no demand")
    wake_replicas: int = Field(1, alias="wakeReplicas", ge=1,
                               description="replicas a lease is woken to (a lease's wake-replicas annotation "
                                           "overrides it; at most its maximum), as Knative's activation-scale")
    wake_target: Annotated[float, Field(gt=0)] | Literal["auto"] | None = Field(
        None, alias="wakeTargetPerReplica",
        description="the wake value one replica serves (e.g. requests/s per replica when the wake query is a "
                    "request rate): a lease at zero is then woken to as many replicas as the demand waiting needs, "
                    "at least wakeReplicas, at most its maximum (a lease's wake-target annotation overrides it); "
                    "`auto`: the wake query is a request rate, and a predictive lease is woken to the replicas the "
                    "predictive algorithm sizes it with, from its last service time and its slots (a lease on the "
                    "HPA rule, or one never measured, to wakeReplicas); unset: woken to wakeReplicas whatever the "
                    "demand")

    def render(self, namespace: str, name: str) -> str | None:
        """The lease's wake query (None when scale to zero is not configured)."""
        if not self.wake_query:
            return None
        return self.wake_query.replace("{{namespace}}", namespace).replace("{{name}}", name)


class Autoscaling(_Strict):
    enable: bool = Field(False, validation_alias=AliasChoices("enable", "enabled"),
                         description="autoscaling on for the cluster (TMS: off unless the administrator turns it on)")
    replicas: Replicas = Replicas()
    metrics: dict[str, MetricPolicy] = Field(default_factory=_default_metrics)
    prometheus: PrometheusSettings = PrometheusSettings()
    behavior: BehaviorSettings = BehaviorSettings()
    loop_interval_s: float = Field(5.0, alias="loopIntervalSeconds", gt=0, le=600)
    fallback: Fallback = Fallback()
    algorithm: Literal["hpa", "predictive"] = Field(
        "hpa", description="default decision algorithm for leases: the HPA-exact core or the predictive policy")
    predictive: PredictiveSettings = Field(default_factory=PredictiveSettings,
                                           description="parameters of the predictive algorithm (extension)")
    scale_to_zero: ScaleToZero = Field(default_factory=ScaleToZero, alias="scaleToZero",
                                       description="what wakes a lease whose minimum is 0 (extension)")

    @field_validator("metrics", mode="before")
    @classmethod
    def _merge_defaults(cls, v: Any) -> Any:
        # Partial metric blocks (e.g. only `allowed: true` for queueTime) keep TMS's thresholds.
        if not isinstance(v, dict):
            return v
        merged: dict[str, Any] = {k: m.model_dump(by_alias=True) for k, m in _default_metrics().items()}
        # most likely misspelt built-in ones (gpuUtilisation): say so, before "threshold: Field required"
        misspelt = [f"{name!r} is not a built-in metric{hint}" for name, block in v.items()
                    if name not in merged and isinstance(block, dict) and "query" not in block
                    and (hint := _did_you_mean(closest_name(name, BUILTIN_METRICS)))]
        if misspelt:
            raise ValueError("; ".join(misspelt) + " (a custom metric needs 'query' and 'threshold')")
        for name, block in v.items():
            if isinstance(block, dict) and name in merged:
                base = dict(merged[name])
                th = dict(base["threshold"])
                if isinstance(block.get("threshold"), dict):
                    th.update(block["threshold"])
                base.update({k: val for k, val in block.items() if k != "threshold"})
                base["threshold"] = th
                merged[name] = base
            else:
                merged[name] = block
        return merged

    @model_validator(mode="after")
    def _zero_needs_a_wake_query(self) -> Autoscaling:
        if self.replicas.default.minimum == 0 and not self.scale_to_zero.wake_query:
            raise ValueError("replicas.default.minimum is 0, but nothing could wake a lease at zero replicas: set "
                             "scaleToZero.wakeQuery (its gateway's request rate), or a minimum of 1")
        return self

    @model_validator(mode="after")
    def _custom_need_queries(self) -> Autoscaling:
        for name, m in self.metrics.items():
            if name not in BUILTIN_METRICS and not m.query:
                raise ValueError(f"metrics.{name}: a custom metric needs 'query' (a PromQL template)")
            if m.threshold.maximum > 0 and m.threshold.minimum > m.threshold.maximum:
                raise ValueError(f"metrics.{name}.threshold: minimum ({m.threshold.minimum}) is greater than "
                                 f"maximum ({m.threshold.maximum})")
        return self


class ClusterPolicy(_Strict):
    autoscaling: Autoscaling = Autoscaling()


class PolicyError(ValueError):
    """The cluster policy is invalid; ``errors`` lists each problem with its location."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid cluster policy ({source}):\n  " + "\n  ".join(errors))


def parse_policy(text: str, source: str = "policy.yaml") -> ClusterPolicy:
    """Parse policy YAML; raise :class:`PolicyError` naming every bad field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PolicyError(source, ["the document must be a mapping with an 'autoscaling' key"])
    # Accept the Helm values nesting too: server.autoscaling
    if "server" in doc and isinstance(doc["server"], dict) and "autoscaling" not in doc:
        doc = {"autoscaling": doc["server"].get("autoscaling", {})}
    try:
        return ClusterPolicy.model_validate(doc)
    except ValidationError as exc:
        errs = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"] if p != "function-after[_merge_defaults(), dict[str,MetricPolicy]]")
            msg = e["msg"].removeprefix("Value error, ")
            value = e.get("input")
            shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
            errs.append(f"{loc or '(document)'}: {msg}{shown}")
        raise PolicyError(source, errs) from None


DEFAULT_POLICY = Path(__file__).resolve().parent / "data" / "policy.yaml"
"""The shipped cluster policy (a copy of config/policy.yaml): the fallback without a ConfigMap."""


def load_policy(path: str | Path = DEFAULT_POLICY) -> ClusterPolicy:
    """A cluster policy file (default: the shipped one)."""
    p = Path(path)
    return parse_policy(p.read_text(encoding="utf-8"), source=str(p))


# ------------------------------------------------------------------------------ lease spec


class Mode(StrEnum):
    ENFORCE = "enforce"
    SHADOW = "shadow"


class Severity(StrEnum):
    ADJUSTED = "adjusted"  # value clamped / ignored by a rule: Warning Event, lease proceeds
    INVALID = "invalid"  # malformed: Warning Event, lease left untouched


@dataclass(frozen=True, slots=True)
class LeaseIssue:
    key: str  # full annotation key (or policy key)
    value: str
    rule: str
    severity: Severity
    rename: str = ""  # the full key a mistyped key most likely meant (min-replica -> min-replicas), if any

    @property
    def message(self) -> str:
        return f"{self.key}={self.value!r}: {self.rule}"


@dataclass(frozen=True, slots=True)
class EffectiveMetric:
    name: str  # cpuUtilization | gpuUtilization | queueTime | kvCacheUsage | custom name
    target: float  # in the metric's unit (percent, microseconds, ...)
    unit: str
    query: str | None = None  # custom PromQL template


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The effective policy of one lease after resolution against the cluster policy."""

    namespace: str
    name: str
    min_replicas: int
    max_replicas: int
    metrics: tuple[EffectiveMetric, ...]
    behavior: Behavior
    mode: Mode = Mode.ENFORCE
    paused: bool = False
    algorithm: str = "hpa"
    slots_per_replica: int | None = None  # requests a replica executes at once (predictive algorithm)
    issues: tuple[LeaseIssue, ...] = ()
    wake_query: str | None = None  # scale to zero: the lease's rendered wake query (set when min_replicas is 0)
    wake_replicas: int = 1  # scale to zero: the replicas a lease at zero is woken to
    wake_target: float | None = None  # scale to zero: the wake value one replica serves (sizes the wake-up)
    wake_auto: bool = False  # scale to zero: the wake value is a request rate the predictive algorithm sizes
    idle_s: float = 900.0  # scale to zero: how long without demand before zero (idle-seconds, else the policy's)
    max_num_seqs: int | None = None  # predictive: its pod template's --max-num-seqs (from the Deployment's spec, not
    # an annotation: resolve_lease's max_num_seqs)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def queue_target_us(self, policy: ClusterPolicy) -> float:
        """The queue-time target the predictive algorithm sizes this lease for: its queueTime metric's, else the
        policy's default."""
        return next((m.target for m in self.metrics if m.name == "queueTime"),
                    policy.autoscaling.metrics["queueTime"].threshold.default)

    @property
    def floor(self) -> int:
        """The fewest replicas the algorithm may ask for: the minimum, but at least one (only the scale-to-zero
        layer, :mod:`autoscaler.policy.idle`, goes to zero)."""
        return max(1, self.min_replicas)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Outcome of resolving one Deployment's annotations."""

    lease: LeasePolicy | None  # None: not a lease, or invalid (see issues)
    opted_in: bool
    issues: tuple[LeaseIssue, ...] = field(default_factory=tuple)

    @property
    def invalid(self) -> bool:
        return any(i.severity == Severity.INVALID for i in self.issues)


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}
KNOWN_KEYS = {"enabled", "min-replicas", "max-replicas", "metrics", "paused", "mode", "algorithm", "slots-per-replica",
              "metrics-port", "metrics-path", "wake-replicas", "wake-target", "idle-seconds", "status", "state",
              "predictive-state", "upstream"}
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")


def metrics_endpoint(annotations: Mapping[str, str] | None) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    """The lease's own metrics port name and path for its PodMonitor (``metrics-port`` / ``metrics-path``; None: the
    policy's ``metricsPort`` and ``/metrics``), and the (key, rule) of each value that is not usable (ignored)."""
    ann = annotations or {}
    port = ann.get(ANNOTATION_PREFIX + "metrics-port")
    path = ann.get(ANNOTATION_PREFIX + "metrics-path")
    bad: list[tuple[str, str]] = []
    if port is not None and not (_PORT_NAME.fullmatch(port.strip()) and not port.strip().isdigit()):
        bad.append(("metrics-port", "must be a container port's name (lowercase letters, digits and '-', at most 15)"))
        port = None
    if path is not None and not (path.strip().startswith("/") and " " not in path.strip()):
        bad.append(("metrics-path", "must be an HTTP path starting with '/'"))
        path = None
    return (port.strip() if port else None), (path.strip() if path else None), bad


def lease_upstream(annotations: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """Where the activator sends a lease's requests (``upstream``: an http(s) URL, ``{namespace}`` and ``{name}`` may
    be filled in; None: the activator's ``--upstream``), and why the value is not usable (then ignored)."""
    raw = (annotations or {}).get(ANNOTATION_PREFIX + "upstream")
    if raw is None:
        return None, None
    url = raw.strip()
    rule = "must be an http:// or https:// URL of the lease's Service, e.g. http://{name}.{namespace}.svc:8000"
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        return None, rule
    try:
        url.format(namespace="ns", name="name")
    except (KeyError, IndexError, ValueError):
        return None, rule + " (only {namespace} and {name} are filled in)"
    return url, None


def _bool(raw: str) -> bool | None:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def _int(raw: str) -> int | None:
    try:
        v = int(raw.strip(), 10)
    except ValueError:
        return None
    return v


def _float(raw: str) -> float | None:
    try:
        return float(raw.strip())
    except ValueError:
        return None


def is_opted_in(annotations: dict[str, str] | None) -> bool:
    raw = (annotations or {}).get(ANNOTATION_PREFIX + "enabled")
    return raw is not None and _bool(raw) is True


def resolve_lease(namespace: str, name: str, annotations: dict[str, str] | None,
                  policy: ClusterPolicy, max_num_seqs: int | None = None) -> Resolution:
    """Resolve a Deployment's annotations against the cluster policy (TMS semantics); ``max_num_seqs``: the
    ``--max-num-seqs`` its pod template passes (``autoscaler.kube.workloads.max_num_seqs``), kept for a predictive
    lease."""
    ann = {k[len(ANNOTATION_PREFIX):]: v for k, v in (annotations or {}).items() if k.startswith(ANNOTATION_PREFIX)}
    issues: list[LeaseIssue] = []

    def issue(key: str, value: str, rule: str, sev: Severity, rename: str | None = None) -> None:
        issues.append(LeaseIssue(ANNOTATION_PREFIX + key, value, rule, sev, ANNOTATION_PREFIX + rename if rename else ""))

    raw_enabled = ann.get("enabled")
    if raw_enabled is None:
        return Resolution(None, False)
    enabled = _bool(raw_enabled)
    if enabled is None:
        issue("enabled", raw_enabled, "must be true or false", Severity.INVALID)
        return Resolution(None, True, tuple(issues))
    if not enabled:
        return Resolution(None, False)
    a = policy.autoscaling
    if not a.enable:
        issues.append(LeaseIssue("policy:autoscaling.enable", "false",
                                 "autoscaling is disabled in the cluster policy; the lease is not scaled",
                                 Severity.INVALID))
        return Resolution(None, True, tuple(issues))

    for key in ann:
        if key not in KNOWN_KEYS and not key.startswith("threshold."):
            meant = closest_name(key, KNOWN_KEYS)
            issue(key, ann[key], "unknown annotation (ignored)" + _did_you_mean(meant) + "; known: " +
                  ", ".join(sorted(KNOWN_KEYS)) + ", threshold.<metric>", Severity.ADJUSTED, meant)

    # --- replicas
    lim = a.replicas.limits
    max_r = a.replicas.default.maximum
    if "max-replicas" in ann:
        v = _int(ann["max-replicas"])
        if v is None or v < 1:
            issue("max-replicas", ann["max-replicas"], "must be a whole number >= 1", Severity.INVALID)
        elif v > lim.maximum:
            issue("max-replicas", ann["max-replicas"],
                  f"above the cluster limit replicas.limits.maximum={lim.maximum}; using {lim.maximum}",
                  Severity.ADJUSTED)
            max_r = lim.maximum
        else:
            max_r = v
    min_r = a.replicas.default.minimum
    if "min-replicas" in ann:
        v = _int(ann["min-replicas"])
        if v is None or v < 0:
            issue("min-replicas", ann["min-replicas"], "must be a whole number >= 0", Severity.INVALID)
        elif v < lim.minimum.lower_bound:
            issue("min-replicas", ann["min-replicas"],
                  f"below replicas.limits.minimum.lowerBound={lim.minimum.lower_bound}; using "
                  f"{lim.minimum.lower_bound}", Severity.ADJUSTED)
            min_r = lim.minimum.lower_bound
        elif v > lim.minimum.upper_bound:
            issue("min-replicas", ann["min-replicas"],
                  f"above replicas.limits.minimum.upperBound={lim.minimum.upper_bound}; using "
                  f"{lim.minimum.upper_bound}", Severity.ADJUSTED)
            min_r = lim.minimum.upper_bound
        else:
            min_r = v
    wake = a.scale_to_zero.render(namespace, name)
    if min_r == 0 and wake is None:
        issue("min-replicas", ann.get("min-replicas", "0"), "0 (scale to zero) needs the policy's "
              "scaleToZero.wakeQuery: nothing could wake the lease at zero replicas; using 1", Severity.ADJUSTED)
        min_r = 1
    if min_r > max_r:
        issue("min-replicas", str(min_r), f"greater than the effective maximum {max_r}; using {max_r}",
              Severity.ADJUSTED)
        min_r = max_r

    # --- metrics
    if "metrics" in ann:
        names = [n.strip() for n in ann["metrics"].split(",") if n.strip()]
        if not names:
            issue("metrics", ann["metrics"], "names no metric", Severity.INVALID)
        chosen = []
        for n in names:
            mp = a.metrics.get(n)
            if mp is None:
                issue("metrics", ann["metrics"], f"unknown metric {n!r} (ignored){_did_you_mean(closest_name(n, a.metrics))}; "
                      "the policy defines: " + ", ".join(sorted(a.metrics)), Severity.ADJUSTED)
            elif not (mp.enabled or mp.allowed):
                issue("metrics", ann["metrics"], f"metric {n!r} is neither enabled nor allowed by the cluster "
                      "policy (ignored)", Severity.ADJUSTED)
            elif n not in chosen:
                chosen.append(n)
    else:
        chosen = [n for n, mp in a.metrics.items() if mp.enabled]

    thresholds: dict[str, float] = {}
    for key, raw in ann.items():
        if not key.startswith("threshold."):
            continue
        mname = key[len("threshold."):]
        mp = a.metrics.get(mname)
        if mp is None:
            meant = closest_name(mname, a.metrics)
            issue(key, raw, f"unknown metric {mname!r} (ignored){_did_you_mean(meant)}; the policy "
                  "defines: " + ", ".join(sorted(a.metrics)), Severity.ADJUSTED, meant and "threshold." + meant)
            continue
        val = _float(raw)
        if val is None:
            issue(key, raw, "must be a number", Severity.INVALID)
            continue
        if not math.isfinite(val) or val <= 0:
            issue(key, raw, "must be a positive finite number", Severity.INVALID)
            continue
        clamped = mp.threshold.clamp(val)
        if clamped != val:
            hi = "none" if mp.threshold.maximum <= 0 else f"{mp.threshold.maximum:g}"
            issue(key, raw, f"outside the allowed range [{mp.threshold.minimum:g}, {hi}]; using {clamped:g}",
                  Severity.ADJUSTED)
        if mname not in chosen:
            issue(key, raw, f"metric {mname!r} is not in use for this lease (ignored)", Severity.ADJUSTED)
        thresholds[mname] = clamped

    metrics = tuple(
        EffectiveMetric(n, thresholds.get(n, a.metrics[n].threshold.clamp(a.metrics[n].threshold.default)),
                        a.metrics[n].unit, a.metrics[n].query)
        for n in chosen
    )
    if not metrics and not any(i.severity == Severity.INVALID for i in issues):
        issue("metrics", ann.get("metrics", ""), "no usable metric: name one that the cluster policy enables or "
              "allows", Severity.INVALID)

    paused = False
    if "paused" in ann:
        p = _bool(ann["paused"])
        if p is None:
            issue("paused", ann["paused"], "must be true or false", Severity.INVALID)
        else:
            paused = p
    mode = Mode.ENFORCE
    if "mode" in ann:
        try:
            mode = Mode(ann["mode"].strip().lower())
        except ValueError:
            issue("mode", ann["mode"], "must be 'enforce' or 'shadow'", Severity.INVALID)
    algorithm: str = a.algorithm
    if "algorithm" in ann:
        if ann["algorithm"].strip() in ("hpa", "predictive"):
            algorithm = ann["algorithm"].strip()
        else:
            issue("algorithm", ann["algorithm"], "must be 'hpa' or 'predictive'", Severity.INVALID)

    def whole(key: str) -> int | None:
        """An annotation that must be a whole number >= 1: its value, None when absent or not one (invalid)."""
        if key not in ann:
            return None
        v = _int(ann[key])
        if v is None or v < 1:
            issue(key, ann[key], "must be a whole number >= 1", Severity.INVALID)
            return None
        return v

    def zero_only(key: str) -> bool:
        """A scale-to-zero annotation: whether the lease may reach zero (else it is ignored, with a Warning)."""
        if min_r != 0:
            issue(key, ann[key], f"the lease never scales to zero (min-replicas is {min_r}): ignored",
                  Severity.ADJUSTED)
        return min_r == 0

    slots = whole("slots-per-replica")
    asked = whole("wake-replicas")
    if asked is not None and zero_only("wake-replicas") and asked > max_r:
        issue("wake-replicas", ann["wake-replicas"], f"above the effective maximum {max_r}; using {max_r}",
              Severity.ADJUSTED)
    wake_replicas = min(asked or a.scale_to_zero.wake_replicas, max_r)
    wake_target = a.scale_to_zero.wake_target
    if "wake-target" in ann:
        per: float | Literal["auto"] | None = ("auto" if ann["wake-target"].strip().lower() == "auto"
                                               else _float(ann["wake-target"]))
        if per is None or (per != "auto" and (not math.isfinite(per) or per <= 0)):
            issue("wake-target", ann["wake-target"], "must be a number > 0 (the wake value one replica serves) or "
                  "auto (a request rate, sized by the predictive algorithm)", Severity.INVALID)
        elif zero_only("wake-target"):
            wake_target = per
            if per == "auto" and algorithm != "predictive":
                issue("wake-target", ann["wake-target"], "auto sizes the wake-up from the predictive algorithm's "
                      f"service time and slots, and this lease's algorithm is {algorithm}: woken to its "
                      "wake-replicas", Severity.ADJUSTED)

    idle_s = a.scale_to_zero.idle_s
    if "idle-seconds" in ann:
        idle = _float(ann["idle-seconds"])
        if idle is None or not math.isfinite(idle) or not 0 < idle <= MAX_IDLE_S:
            issue("idle-seconds", ann["idle-seconds"], f"must be a number of seconds > 0, at most {MAX_IDLE_S:g} "
                  "(7 days)", Severity.INVALID)
        elif zero_only("idle-seconds"):
            idle_s = idle

    for key, rule in metrics_endpoint(annotations)[2]:
        issue(key, ann[key], rule + "; the PodMonitor uses the policy's", Severity.ADJUSTED)
    if (why := lease_upstream(annotations)[1]) is not None:
        issue("upstream", ann["upstream"], why + "; the activator uses its --upstream", Severity.ADJUSTED)

    res_issues = tuple(issues)
    if any(i.severity == Severity.INVALID for i in res_issues):
        return Resolution(None, True, res_issues)
    lease = LeasePolicy(namespace=namespace, name=name, min_replicas=min_r, max_replicas=max_r, metrics=metrics,
                        behavior=a.behavior.to_behavior(), mode=mode, paused=paused, algorithm=algorithm,
                        slots_per_replica=slots, issues=res_issues, wake_query=wake if min_r == 0 else None,
                        wake_replicas=wake_replicas,
                        wake_target=wake_target if min_r == 0 and wake_target != "auto" else None,
                        wake_auto=min_r == 0 and wake_target == "auto" and algorithm == "predictive", idle_s=idle_s,
                        max_num_seqs=max_num_seqs if algorithm == "predictive" else None)
    return Resolution(lease, True, res_issues)
