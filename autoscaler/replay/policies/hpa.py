"""``hpa``, ``hpa-gpu`` and the ``hpa`` algorithm of ``default``: the project's decision core under replay.

Why: the replay must measure the code that runs in the controller, not a re-implementation. Each
decision builds a :class:`~autoscaler.policy.types.Snapshot` exactly as the controller's observation
adapter does (``autoscaler/observe.py``: a value per pod with a series, 0 for a Ready pod without
traffic, missing otherwise; Pods metrics with AverageValue targets) and calls
:func:`autoscaler.policy.decide` with the carried :class:`DecisionState`.

* ``hpa``: the Kubernetes HPA with its defaults (15 s sync, tolerance 0.1, scale-up max(+4 pods,
  +100 %) per 15 s, scale-down 100 % per 15 s after a 300 s stabilisation window) on the queue-time
  recording rule, target ``--target-queue-time-us``.
* ``hpa-gpu``: the same on GPU utilisation (``nv_gpu_utilization`` as a per-pod Pods metric), target
  the cluster policy's ``gpuUtilization`` threshold (TMS default 90 %).
* algorithm ``hpa`` (what ``default`` resolves to while the cluster policy says ``algorithm: hpa``):
  the cluster policy's enabled metrics, thresholds and behaviour, at its ``loopIntervalSeconds``.

:func:`snapshot_to_json` writes a snapshot in the ``autoscaler decide`` contract, so a replayed
decision can be checked against the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autoscaler.policy import decide
from autoscaler.policy.snapshot_json import state_to_json
from autoscaler.policy.types import (
    Behavior,
    Decision,
    DecisionState,
    MetricInput,
    MetricType,
    PodSample,
    Snapshot,
    Target,
    TargetType,
    to_milli,
)
from autoscaler.replay.policies import PolicyContext, ReplayPolicy, register_algorithm, register_policy
from autoscaler.replay.sim import ClusterView

QUEUE_TIME = "queueTime"
GPU_UTILIZATION = "gpuUtilization"


@dataclass
class HpaPolicy:
    """The decision core on per-pod metrics (``queueTime`` µs and/or ``gpuUtilization`` %)."""

    name: str
    interval_s: float
    targets: dict[str, float]
    behavior: Behavior
    min_replicas: int
    max_replicas: int
    state: DecisionState = field(default_factory=DecisionState)
    record: list[tuple[Snapshot, DecisionState, Decision]] | None = None
    """When a list, every (snapshot, state in, decision) is appended (for tests and explain)."""

    def snapshot(self, view: ClusterView) -> Snapshot:
        pods = view.k8s_pods()
        metrics: list[MetricInput] = []
        window = view.settings.rate_window_s
        for metric, target in self.targets.items():
            if metric == QUEUE_TIME:
                values = view.queue_time_by_pod()
                at = view.rule_eval_time()
            elif metric == GPU_UTILIZATION:
                names, util = view.pod_gauge("nv_gpu_utilization")
                values = {n: float(u) * 100.0 for n, u in zip(names, util, strict=True)}
                at = view.now
            else:  # pragma: no cover - guarded at construction
                raise ValueError(metric)
            have = [(p.name, v) for p in pods if (v := values.get(p.name)) is not None]
            samples = tuple(PodSample(pod=n, value_milli=to_milli(v), timestamp=at, window_s=window)
                            for n, v in have)
            metrics.append(MetricInput(MetricType.PODS, Target(TargetType.AVERAGE_VALUE,
                                                               average_value_milli=max(1, to_milli(target))),
                                       name=metric, samples=samples))
        return Snapshot(now=view.now, current_replicas=view.spec_replicas, status_replicas=view.status_replicas,
                        min_replicas=self.min_replicas, max_replicas=self.max_replicas, behavior=self.behavior,
                        pods=pods, metrics=tuple(metrics))

    def decide(self, view: ClusterView) -> int:
        snap = self.snapshot(view)
        before = self.state
        d = decide(snap, before)
        self.state = d.state
        if self.record is not None:
            self.record.append((snap, before, d))
        return d.desired_replicas


def _check_metrics(targets: dict[str, float]) -> dict[str, float]:
    unknown = set(targets) - {QUEUE_TIME, GPU_UTILIZATION}
    if unknown:
        raise ValueError(f"replay supports the queueTime and gpuUtilization metrics, not {sorted(unknown)}")
    if not targets:
        raise ValueError("the cluster policy enables no metric the replay can simulate")
    return targets


@register_policy("hpa")
def make_hpa(ctx: PolicyContext) -> ReplayPolicy:
    s = ctx.settings
    return HpaPolicy("hpa", 15.0, {QUEUE_TIME: s.target_queue_time_us}, Behavior(), s.min_replicas, s.max_replicas)


@register_policy("hpa-gpu")
def make_hpa_gpu(ctx: PolicyContext) -> ReplayPolicy:
    s = ctx.settings
    target = ctx.options.get("hpa-gpu.targetPercent",
                             ctx.cluster_policy.autoscaling.metrics[GPU_UTILIZATION].threshold.default)
    return HpaPolicy("hpa-gpu", 15.0, {GPU_UTILIZATION: target}, Behavior(), s.min_replicas, s.max_replicas)


@register_algorithm("hpa")
def make_configured_hpa(ctx: PolicyContext) -> ReplayPolicy:
    """The shipped policy while it names ``algorithm: hpa``: its enabled metrics, behaviour and loop."""
    a = ctx.cluster_policy.autoscaling
    s = ctx.settings
    targets = {name: (s.target_queue_time_us if name == QUEUE_TIME else m.threshold.default)
               for name, m in a.metrics.items() if m.enabled and name in (QUEUE_TIME, GPU_UTILIZATION)}
    return HpaPolicy("hpa-configured", a.loop_interval_s, _check_metrics(targets), a.behavior.to_behavior(),
                     s.min_replicas, s.max_replicas)


# ------------------------------------------------------------------------------------ JSON contract


def _rules_json(r: Any) -> dict[str, Any]:
    return {"stabilizationWindowSeconds": r.stabilization_window_s, "selectPolicy": str(r.select_policy),
            "policies": [{"type": str(p.type), "value": p.value, "periodSeconds": p.period_s} for p in r.policies]}


def snapshot_to_json(snap: Snapshot, state: DecisionState) -> dict[str, Any]:
    """A snapshot and state in the ``autoscaler decide`` input format (docs/decide.md).

    Covers what the replay produces (Pods / External metrics, behaviour with rules); values are
    written as milli-units / 1000 so the CLI reads back the same integers.
    """
    b = snap.behavior
    behavior: dict[str, Any] | None = None
    if not b.legacy:
        assert b.scale_up is not None and b.scale_down is not None
        behavior = {"tolerance": {"scaleUp": b.tolerances.scale_up, "scaleDown": b.tolerances.scale_down},
                    "cpuInitializationPeriodSeconds": b.cpu_initialization_period_s,
                    "initialReadinessDelaySeconds": b.initial_readiness_delay_s,
                    "scaleUp": _rules_json(b.scale_up), "scaleDown": _rules_json(b.scale_down)}
    metrics: list[dict[str, Any]] = []
    for m in snap.metrics:
        t = m.target
        target: dict[str, Any] = {"type": str(t.type)}
        if t.average_value_milli is not None:
            target["averageValue"] = t.average_value_milli / 1000
        if t.value_milli is not None:
            target["value"] = t.value_milli / 1000
        if t.average_utilization is not None:
            target["averageUtilization"] = t.average_utilization
        doc: dict[str, Any] = {"type": str(m.type), "name": m.name, "target": target, "error": m.error,
                               "samples": [{"pod": s.pod, "timestamp": s.timestamp, "windowSeconds": s.window_s,
                                            "value": None if s.value_milli is None else s.value_milli / 1000}
                                           for s in m.samples]}
        if m.value_milli is not None:
            doc["value"] = m.value_milli / 1000
        metrics.append(doc)
    return {
        "now": snap.now, "currentReplicas": snap.current_replicas, "statusReplicas": snap.status_replicas,
        "minReplicas": snap.min_replicas, "maxReplicas": snap.max_replicas, "behavior": behavior,
        "pods": [{"name": p.name, "phase": str(p.phase), "deleting": p.deleting, "startTime": p.start_time,
                  "ready": p.ready, "readyTransitionTime": p.ready_transition_time} for p in snap.pods],
        "metrics": metrics,
        "state": state_to_json(state),
    }
