"""``keda``: a KEDA ScaledObject with the Prometheus scaler on queue time, over the HPA it creates.

Why as well as ``hpa``: KEDA is what most teams reach for to scale on a Prometheus metric. Its
semantics (KEDA 2.x defaults, https://keda.sh/docs/latest/reference/scaledobject-spec/ and the
Prometheus scaler):

* KEDA owns an HPA with one External metric. The HPA (15 s sync, default behaviour) asks KEDA's
  metrics adapter, which runs the PromQL query at that moment (``useCachedMetrics: false``), so the
  HPA sees a fresh query result every 15 s. The query is the lease-wide request-weighted mean::

      sum(rate(nv_inference_queue_duration_us[1m])) / sum(rate(nv_inference_request_success[1m]))

  with ``metricType: Value`` and ``threshold`` = the target queue time (``AverageValue``, KEDA's
  default, divides a *total* by the replica count and is wrong for a mean).
* ``ignoreNullValues: true``: an empty or 0/0 answer is 0.
* ``pollingInterval`` (30 s), ``activationThreshold`` (0) and ``cooldownPeriod`` (300 s) govern the
  0 <-> 1 transitions only, which need ``minReplicaCount: 0``. KEDA's default *is* 0, but a metric
  emitted by the pods themselves can never wake a deployment from zero (no pod, no series), so the
  replay uses the same floor as every other policy (``--min-replicas``, default 1); the activation
  logic is implemented and used when the floor is 0.
* ``fallback`` (``failureThreshold`` 3): after that many failed polls, ``fallback.replicas``. With
  ``ignoreNullValues`` the query never fails in a replay, so this never triggers; it is kept so the
  semantics are complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autoscaler.policy import decide
from autoscaler.policy.types import (
    Behavior,
    DecisionState,
    MetricInput,
    MetricType,
    Snapshot,
    Target,
    TargetType,
    to_milli,
)
from autoscaler.replay.policies import PolicyContext, ReplayPolicy, register_policy
from autoscaler.replay.sim import ClusterView


@dataclass
class KedaPolicy:
    name: str
    threshold_us: float
    min_replicas: int
    max_replicas: int
    interval_s: float = 15.0  # the HPA's sync period; KEDA's polling is a multiple of it
    polling_interval_s: float = 30.0
    activation_threshold: float = 0.0
    cooldown_s: float = 300.0
    fallback_failures: int = 3
    fallback_replicas: int | None = None
    ignore_null_values: bool = True
    state: DecisionState = field(default_factory=DecisionState)
    failures: int = 0
    last_active: float = 0.0

    def query(self, view: ClusterView) -> float | None:
        """The scaler's value; None is a failed query."""
        r = view.lease_rates(("nv_inference_queue_duration_us", "nv_inference_request_success"))
        q, s = r["nv_inference_queue_duration_us"], r["nv_inference_request_success"]
        if q is None or s is None or s == 0 or not math.isfinite(q / s):
            return 0.0 if self.ignore_null_values else None
        return q / s

    def decide(self, view: ClusterView) -> int:
        value = self.query(view)
        current = view.spec_replicas
        if value is None:
            self.failures += 1
            if self.failures >= self.fallback_failures and self.fallback_replicas is not None:
                return self.fallback_replicas
            return current
        self.failures = 0
        poll = math.isclose(view.now % self.polling_interval_s, 0.0, abs_tol=1e-9)
        if value > self.activation_threshold:
            self.last_active = view.now
        if self.min_replicas == 0 and poll:
            if current == 0:
                return 1 if value > self.activation_threshold else 0
            if view.now - self.last_active >= self.cooldown_s:
                return 0
        if current == 0:
            return 0
        snap = Snapshot(now=view.now, current_replicas=current, status_replicas=view.status_replicas,
                        min_replicas=max(1, self.min_replicas), max_replicas=self.max_replicas, behavior=Behavior(),
                        pods=view.k8s_pods(),
                        metrics=(MetricInput(MetricType.EXTERNAL, Target(TargetType.VALUE,
                                                                         value_milli=to_milli(self.threshold_us)),
                                             name="s0-prometheus", value_milli=to_milli(value)),))
        d = decide(snap, self.state)
        self.state = d.state
        return d.desired_replicas


@register_policy("keda")
def make_keda(ctx: PolicyContext) -> ReplayPolicy:
    s = ctx.settings
    return KedaPolicy("keda", s.target_queue_time_us, s.min_replicas, s.max_replicas)
