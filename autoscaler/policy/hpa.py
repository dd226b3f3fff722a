"""``decide``: one HPA reconcile for one lease, as a pure function.

Re-states upstream ``reconcileAutoscaler`` + ``computeReplicasForMetrics``: the initial
recommendation, scaling disabled at zero replicas, the out-of-bounds corrections, the maximum over
metric proposals, "if any metric failed, do not scale down", then the behaviour (or legacy)
normalisation. The result names the condition that decided it (HPA reasons) and carries the new
state; the caller persists it and, if it applies the change, it is already recorded in the state
(use :func:`decide_without_event` semantics via ``Decision.state_if_not_applied``).
"""

from __future__ import annotations

from autoscaler.policy.behavior import normalize_legacy, normalize_with_behavior, record_scale_event
from autoscaler.policy.replicas import MetricError, compute_metric
from autoscaler.policy.types import (
    FAILED_REASON,
    Condition,
    Decision,
    DecisionState,
    MetricResult,
    Reason,
    Recommendation,
    Snapshot,
)


def _metric_label(snapshot: Snapshot, i: int) -> str:
    m = snapshot.metrics[i]
    if m.type in ("Resource", "ContainerResource"):
        return f"{m.resource} resource" + (f" of container {m.container}" if m.container else "")
    return f"{m.type.lower()} metric {m.name}"


def decide(snapshot: Snapshot, state: DecisionState, now: float | None = None) -> Decision:
    """Decide the replica count for one lease. Pure: time comes from ``now`` (default ``snapshot.now``)."""
    t = snapshot.now if now is None else now
    b = snapshot.behavior
    current = snapshot.current_replicas
    recs = state.recommendations
    if recs is None:  # recordInitialRecommendation
        recs = (Recommendation(t, current),)
    min_r, max_r = snapshot.min_replicas, snapshot.max_replicas

    def finish(desired: int, reason: str, message: str, results: tuple[MetricResult, ...],
               new_recs: tuple[Recommendation, ...], conditions: tuple[Condition, ...], **extra: object) -> Decision:
        events = record_scale_event(b, state.scale_events, current, desired, t)
        return Decision(
            desired_replicas=desired, reason=reason, message=message, metrics=results,
            state=DecisionState(new_recs, events), conditions=conditions, current_replicas=current,
            **extra,  # type: ignore[arg-type]
        )

    if current == 0 and min_r != 0:
        cond = Condition("ScalingActive", False, Reason.SCALING_DISABLED,
                         "scaling is disabled since the replica count of the target is zero")
        return finish(0, cond.reason, cond.message, (), recs, (cond,))
    if current > max_r:
        msg = "Current number of replicas above Spec.MaxReplicas"
        return finish(max_r, Reason.TOO_MANY_REPLICAS, msg, (), recs,
                      (Condition("ScalingLimited", True, Reason.TOO_MANY_REPLICAS, msg),), limited_by="maxReplicas")
    if current < min_r:
        msg = "Current number of replicas below Spec.MinReplicas"
        return finish(min_r, Reason.TOO_FEW_REPLICAS, msg, (), recs,
                      (Condition("ScalingLimited", True, Reason.TOO_FEW_REPLICAS, msg),), limited_by="minReplicas")

    # computeReplicasForMetrics
    results: list[MetricResult] = []
    replicas = 0
    metric_name = ""
    invalid = 0
    first_error: tuple[str, str] | None = None
    for i, m in enumerate(snapshot.metrics):
        try:
            r = compute_metric(m, current, snapshot.status_replicas, snapshot.pods, b.tolerances, t,
                               b.cpu_initialization_period_s, b.initial_readiness_delay_s)
        except MetricError as exc:
            results.append(MetricResult(proposed_replicas=None, error=str(exc)))
            if first_error is None:
                first_error = (FAILED_REASON[m.type], f"unable to compute {_metric_label(snapshot, i)}: {exc}")
            invalid += 1
            continue
        results.append(r)
        assert r.proposed_replicas is not None
        if replicas == 0 or r.proposed_replicas > replicas:
            replicas = r.proposed_replicas
            metric_name = _metric_label(snapshot, i)
    out = tuple(results)
    n_metrics = len(snapshot.metrics)
    if n_metrics == 0 or invalid >= n_metrics or (invalid > 0 and replicas < current):
        reason, detail = first_error or (Reason.FAILED_GET_RESOURCE_METRIC, "no metrics configured")
        msg = f"invalid metrics ({invalid} invalid out of {n_metrics}), first error is: {detail}"
        if invalid and replicas < current and invalid < n_metrics:
            msg += " (not scaling down while a metric is failing)"
        cond = Condition("ScalingActive", False, reason, msg)
        return finish(current, reason, msg, out, recs, (cond,), metric_replicas=None)

    desired = replicas if replicas > 0 else 0
    active = Condition("ScalingActive", True, Reason.VALID_METRIC_FOUND,
                       f"the HPA was able to successfully calculate a replica count from {metric_name}")
    if b.legacy:
        norm = normalize_legacy(b.legacy_downscale_window_s, current, desired, min_r, max_r, recs, t)
    else:
        norm = normalize_with_behavior(b, current, desired, min_r, max_r, recs, state.scale_events, t)
    able = Condition("AbleToScale", True, norm.stabilize_reason, norm.stabilize_message)
    limited = Condition("ScalingLimited", norm.desired != norm.stabilized, norm.limit_reason, norm.limit_message)
    if norm.desired != norm.stabilized:
        reason, message, limited_by = norm.limit_reason, norm.limit_message, norm.limit_reason
    elif norm.stabilized != desired:
        reason, message, limited_by = norm.stabilize_reason, norm.stabilize_message, norm.stabilize_reason
    else:
        reason, message, limited_by = norm.limit_reason, norm.limit_message, ""
    if desired > current and reason == Reason.DESIRED_WITHIN_RANGE:
        message = f"{metric_name} above target"
    elif desired < current and reason == Reason.DESIRED_WITHIN_RANGE:
        message = "All metrics below target"
    return finish(norm.desired, reason, message, out, norm.recommendations, (able, active, limited),
                  metric_replicas=desired, stabilized_replicas=norm.stabilized, metric_name=metric_name,
                  limited_by=limited_by)


def state_without_event(decision: Decision, previous: DecisionState) -> DecisionState:
    """The state to persist when the decided change was *not* applied (e.g. a failed patch)."""
    return DecisionState(decision.state.recommendations, previous.scale_events)
