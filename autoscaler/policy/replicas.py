"""Per-metric replica proposals, with the upstream HPA's exact arithmetic.

A re-statement of ``pkg/controller/podautoscaler/replica_calculator.go``: integer milli-unit sums,
utilisation truncated to a whole percent, per-direction tolerance, the grouping of pods into
ready / unready / missing / ignored (with the CPU initialisation period and the initial readiness
delay), the "missing pods count as 100 % on a scale-down and 0 % on a scale-up" rebalancing, and
the guards that refuse a change of direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler.policy.types import (
    MetricInput,
    MetricResult,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    TargetType,
    Tolerances,
)

INT32_MAX = 2**31 - 1


class MetricError(Exception):
    """The metric could not produce a proposal (upstream returns an error here)."""


def _ceil_i32(x: float) -> int:
    if x > INT32_MAX:
        return INT32_MAX
    return math.ceil(x)


@dataclass(slots=True)
class _Groups:
    ready: int
    unready: set[str]
    missing: set[str]
    ignored: set[str]


def _group_pods(
    pods: tuple[Pod, ...],
    metrics: dict[str, int],
    samples: dict[str, PodSample],
    cpu: bool,
    now: float,
    cpu_init_s: float,
    readiness_delay_s: float,
) -> _Groups:
    g = _Groups(0, set(), set(), set())
    for pod in pods:
        if pod.deleting or pod.phase == PodPhase.FAILED:
            g.ignored.add(pod.name)
            continue
        if pod.phase == PodPhase.PENDING:
            g.unready.add(pod.name)
            continue
        if pod.name not in metrics:
            g.missing.add(pod.name)
            continue
        if cpu:
            if pod.ready is None or pod.start_time is None:
                unready = True
            else:
                transition = pod.ready_transition_time if pod.ready_transition_time is not None else 0.0
                if pod.start_time + cpu_init_s > now:
                    # Still initialising: ignore the sample if unready or if one full metric
                    # window has not passed since the last readiness transition.
                    s = samples.get(pod.name)
                    ts = s.timestamp if s is not None and s.timestamp is not None else now
                    window = s.window_s if s is not None else 0.0
                    unready = (not pod.ready) or ts < transition + window
                else:
                    # Ignore only if unready and never been ready.
                    unready = (not pod.ready) and pod.start_time + readiness_delay_s > transition
            if unready:
                g.unready.add(pod.name)
                continue
        g.ready += 1
    return g


def _pod_metrics(metric: MetricInput) -> tuple[dict[str, int], dict[str, PodSample]]:
    """Per-pod values in milli-units, omitting pods whose sample is missing."""
    values: dict[str, int] = {}
    by_pod: dict[str, PodSample] = {}
    resource_like = metric.type in (MetricType.RESOURCE, MetricType.CONTAINER_RESOURCE)
    for s in metric.samples:
        by_pod[s.pod] = s
        if resource_like and s.containers_milli is not None:
            if metric.container:
                v = s.containers_milli.get(metric.container)
                if v is not None:
                    values[s.pod] = v
            else:
                conts = s.containers_milli
                if conts and all(v is not None for v in conts.values()):
                    values[s.pod] = sum(v for v in conts.values() if v is not None)
        elif s.value_milli is not None:
            values[s.pod] = s.value_milli
    return values, by_pod


def _requests(pods: tuple[Pod, ...], resource: str, container: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in pods:
        reqs = pod.requests_milli.get(resource, {})
        total = 0
        found = False
        for cname in pod.containers:
            if container is None or container == cname:
                if cname not in reqs:
                    raise MetricError(f"missing request for {resource} in container {cname} of Pod {pod.name}")
                total += reqs[cname]
            if container == cname:
                found = True
                break
        if container is not None and not found:
            raise MetricError(f"container {container} not found in Pod {pod.name}")
        out[pod.name] = total
    return out


def _utilization_ratio(metrics: dict[str, int], requests: dict[str, int], target: int) -> tuple[float, int, int]:
    total = 0
    req_total = 0
    n = 0
    for name, v in metrics.items():
        r = requests.get(name)
        if r is None:
            continue
        total += v
        req_total += r
        n += 1
    if req_total == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = (total * 100) // req_total  # Go int64 division; values are non-negative
    return utilization / target, utilization, total // n


def _usage_ratio(metrics: dict[str, int], target: int) -> tuple[float, int]:
    total = sum(metrics.values())
    usage = int(total / len(metrics)) if total < 0 else total // len(metrics)
    return usage / target, usage


def _observed(metric: MetricInput, pods: tuple[Pod, ...], cpu: bool, now: float, cpu_init_s: float,
              readiness_delay_s: float) -> tuple[dict[str, int], _Groups]:
    """Per-pod values of the pods that count, and the pod groups (upstream's common prelude)."""
    metrics, samples = _pod_metrics(metric)
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    g = _group_pods(pods, metrics, samples, cpu, now, cpu_init_s, readiness_delay_s)
    for name in g.ignored | g.unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    return metrics, g


def _proposal(metrics: dict[str, int], g: _Groups, ratio: float, current: int, tol: Tolerances,
              ratio_of: Callable[[dict[str, int]], float], scale_down_fill: Callable[[str], int]) -> int:
    """Replicas from a usage ratio, rebalancing missing and unready pods as upstream does.

    Missing pods count as ``scale_down_fill(pod)`` on a scale-down and 0 on a scale-up; unready pods
    count as 0 on a scale-up. The result never flips the direction the first ratio pointed to.
    """
    scale_up_with_unready = bool(g.unready) and ratio > 1.0
    if not scale_up_with_unready and not g.missing:
        return current if tol.is_within(ratio) else _ceil_i32(ratio * g.ready)
    if g.missing:
        if ratio < 1.0:
            for name in g.missing:
                metrics[name] = scale_down_fill(name)
        elif ratio > 1.0:
            for name in g.missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in g.unready:
            metrics[name] = 0
    new_ratio = ratio_of(metrics)
    if tol.is_within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    n = _ceil_i32(new_ratio * len(metrics))
    if (new_ratio < 1.0 and n > current) or (new_ratio > 1.0 and n < current):
        return current
    return n


def _resource_utilization(
    metric: MetricInput, current: int, pods: tuple[Pod, ...], tol: Tolerances, now: float,
    cpu_init_s: float, readiness_delay_s: float,
) -> MetricResult:
    target = metric.target.average_utilization
    if target is None or target <= 0:
        raise MetricError("target averageUtilization must be a positive integer")
    metrics, g = _observed(metric, pods, metric.resource == "cpu", now, cpu_init_s, readiness_delay_s)
    requests = _requests(pods, metric.resource, metric.container)
    ratio, util, raw = _utilization_ratio(metrics, requests, target)
    fallback = max(100, target)  # a missing pod on a scale-down: all of its request, or the target if above
    n = _proposal(metrics, g, ratio, current, tol, lambda m: _utilization_ratio(m, requests, target)[0],
                  lambda name: requests[name] * fallback // 100)
    return MetricResult(proposed_replicas=n, usage=raw / 1000.0, utilization=util)


def _plain(
    metric: MetricInput, target: int, current: int, pods: tuple[Pod, ...], tol: Tolerances, now: float,
    cpu: bool, cpu_init_s: float, readiness_delay_s: float,
) -> MetricResult:
    metrics, g = _observed(metric, pods, cpu, now, cpu_init_s, readiness_delay_s)
    ratio, usage_milli = _usage_ratio(metrics, target)
    n = _proposal(metrics, g, ratio, current, tol, lambda m: _usage_ratio(m, target)[0], lambda _name: target)
    return MetricResult(proposed_replicas=n, usage=usage_milli / 1000.0)


def _ready_pods(pods: tuple[Pod, ...]) -> int:
    if not pods:
        raise MetricError("unable to calculate ready pods: no pods returned by selector while calculating replica count")
    return sum(1 for p in pods if p.phase == PodPhase.RUNNING and p.ready is True)


def _usage_ratio_replicas(current: int, ratio: float, pods: tuple[Pod, ...], tol: Tolerances) -> int:
    if current != 0:
        if tol.is_within(ratio):
            return current
        return _ceil_i32(ratio * _ready_pods(pods))
    return _ceil_i32(ratio)  # scale from/to zero on the ratio alone


def _whole_value(metric: MetricInput) -> int:
    if metric.value_milli is None:
        raise MetricError(f"unable to get metric {metric.name or metric.type}: no value")
    return metric.value_milli


def _positive(v: int | None, what: str) -> int:
    if v is None or v <= 0:
        raise MetricError(f"target {what} must be positive")
    return v


def compute_metric(
    metric: MetricInput, current: int, status_replicas: int, pods: tuple[Pod, ...], tol: Tolerances,
    now: float, cpu_init_s: float, readiness_delay_s: float,
) -> MetricResult:
    """Replica proposal for one metric; raises :class:`MetricError` where upstream errors."""
    if metric.error is not None:
        raise MetricError(metric.error)
    t = metric.target
    if metric.type in (MetricType.RESOURCE, MetricType.CONTAINER_RESOURCE):
        if t.type == TargetType.UTILIZATION:
            return _resource_utilization(metric, current, pods, tol, now, cpu_init_s, readiness_delay_s)
        if t.type == TargetType.AVERAGE_VALUE:
            target = _positive(t.average_value_milli, "averageValue")
            return _plain(metric, target, current, pods, tol, now, metric.resource == "cpu",
                          cpu_init_s, readiness_delay_s)
        raise MetricError(f"invalid target type {t.type} for a {metric.type} metric")
    if metric.type == MetricType.PODS:
        if t.type != TargetType.AVERAGE_VALUE:
            raise MetricError(f"invalid target type {t.type} for a Pods metric")
        target = _positive(t.average_value_milli, "averageValue")
        return _plain(metric, target, current, pods, tol, now, False, cpu_init_s, readiness_delay_s)
    if metric.type in (MetricType.OBJECT, MetricType.EXTERNAL):
        usage = _whole_value(metric)
        if t.type == TargetType.VALUE:
            target = _positive(t.value_milli, "value")
            n = _usage_ratio_replicas(current, usage / target, pods, tol)
            return MetricResult(proposed_replicas=n, usage=usage / 1000.0)
        if t.type == TargetType.AVERAGE_VALUE:
            target = _positive(t.average_value_milli, "averageValue")
            n = status_replicas
            denom = float(target) * float(n)
            ratio = usage / denom if denom else math.inf
            if not tol.is_within(ratio):
                n = _ceil_i32(usage / target)
            per_pod = math.ceil(usage / status_replicas) if status_replicas else usage
            return MetricResult(proposed_replicas=n, usage=per_pod / 1000.0)
        raise MetricError(f"invalid target type {t.type} for an {metric.type} metric")
    raise MetricError(f"unknown metric source type {metric.type}")
