"""The ``predictive`` algorithm under replay: a thin adapter from the cluster view to the pure policy.

It builds a :class:`~autoscaler.policy.predictive.PredictiveObservation` from exactly what the
controller would query from Prometheus (see ``docs/predictive.md``):

* request rate: ``sum(rate(nv_inference_request_success[W])) + sum(rate(nv_inference_request_failure[W]))``
  over the lease's pods, ``W`` = the policy's ``rateWindowSeconds`` (30 s);
* service time: ``sum(rate(nv_inference_compute_infer_duration_us[1m])) / sum(rate(..._success[1m]))``;
* queue time: the same ratio for ``nv_inference_queue_duration_us``;
* pending: ``sum(nv_inference_pending_request_count)``;
* ready / starting / spec replicas from the API server, slots from the serving annotation, the
  start-up delay as measured (here: the replay's ``--startup-seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autoscaler.policy.predictive import (
    PredictiveDecision,
    PredictiveObservation,
    PredictiveParams,
    PredictiveReason,
    PredictiveState,
    decide_predictive,
    pod_queue_times_matter,
    queue_time_without,
    stuck_backlog,
    unmeasured_ready,
    wake_replicas_needed,
)
from autoscaler.replay.policies import PolicyContext, ReplayPolicy, register_algorithm, register_policy
from autoscaler.replay.policies.hpa import make_configured_hpa
from autoscaler.replay.sim import ClusterView

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
COMPUTE = "nv_inference_compute_infer_duration_us"
QUEUE = "nv_inference_queue_duration_us"


def observe(view: ClusterView, rate_window_s: float, min_replicas: int, max_replicas: int,
            drain_s: float = 0.0) -> PredictiveObservation:
    """The policy's observation from the simulated cluster's Prometheus and API server, as
    :func:`autoscaler.observe.predictive_observation` makes it from PromQL (a stuck backlog and the Ready pods
    without a request rate included)."""
    scraped, short = view.pod_rates((SUCCESS, FAILURE), window_s=rate_window_s)
    measured = np.isfinite(short[SUCCESS])
    fail = short[FAILURE][np.isfinite(short[FAILURE])]
    rate = float(short[SUCCESS][measured].sum() + fail.sum()) if measured.any() else None
    have = {n for n, m in zip(scraped, measured, strict=True) if m}
    unmeasured = unmeasured_ready(view.k8s_pods(), have, view.now, rate_window_s)
    long = view.lease_rates((SUCCESS, COMPUTE, QUEUE))
    s_long, c_long, q_long = long[SUCCESS], long[COMPUTE], long[QUEUE]
    svc = c_long / s_long / 1e6 if s_long and c_long is not None else None
    qt = q_long / s_long if s_long and q_long is not None else None
    names, pend = view.pod_gauge("nv_inference_pending_request_count")
    drainable = None
    if pend.size and drain_s > 0 and float(pend.sum()) > 0:
        waiting = pend.tolist()
        drainable, stuck = stuck_backlog(waiting, svc, view.settings.serving.slots, drain_s)
        if pod_queue_times_matter(stuck, waiting):
            pods, r = view.pod_rates((SUCCESS, QUEUE))
            assert pods == names  # the scraped pods of the same instant, in the same order
            qt = queue_time_without(stuck, r[QUEUE].tolist(), r[SUCCESS].tolist(), waiting, qt,
                                    view.settings.serving.slots / svc if svc else None)
    return PredictiveObservation(
        now=view.now, current_replicas=view.spec_replicas, ready_replicas=view.ready_replicas,
        starting_replicas=view.starting_replicas, min_replicas=min_replicas, max_replicas=max_replicas,
        request_rate_rps=rate, service_time_s=svc, slots_per_replica=view.settings.serving.slots,
        startup_s=view.settings.startup_s, queue_time_us=qt, pending_requests=float(pend.sum()) if pend.size else None,
        drainable_pending=drainable, unmeasured_ready=unmeasured)


@dataclass
class PredictivePolicy:
    """Replay adapter: observe, decide, carry the state."""

    name: str
    interval_s: float
    params: PredictiveParams
    rate_window_s: float
    min_replicas: int
    max_replicas: int
    fallback: ReplayPolicy | None = None
    """What decides while the lease has no request data (``MissingData``): the configured HPA core, as in the
    controller, which decides every lease with it every loop so that its windows are current."""
    state: PredictiveState = field(default_factory=PredictiveState)
    record: list[tuple[PredictiveObservation, PredictiveDecision]] | None = None

    def decide(self, view: ClusterView) -> int:
        hpa = None if self.fallback is None else self.fallback.decide(view)
        obs = observe(view, self.rate_window_s, self.min_replicas, self.max_replicas, self.params.drain_s)
        d = decide_predictive(obs, self.state, self.params)
        self.state = d.state
        if self.record is not None:
            self.record.append((obs, d))
        if hpa is not None and d.reason == PredictiveReason.MISSING_DATA:
            return hpa
        return d.desired_replicas

    def wake_need(self, rate_rps: float, view: ClusterView) -> int | None:
        """The replicas the request rate in front of the lease needs, as this policy sizes it (``+zero`` with
        ``zero.wakeTargetPerReplica=auto``): its last service time and the serving model's slots."""
        return wake_replicas_needed(rate_rps, self.state, view.settings.serving.slots, self.params, self.max_replicas)


@register_algorithm("predictive")
@register_policy("predictive")
def make_predictive(ctx: PolicyContext) -> ReplayPolicy:
    """The predictive policy: by name, and as ``default`` when the cluster policy says ``algorithm: predictive``."""
    s = ctx.settings
    cfg = ctx.cluster_policy.autoscaling.predictive
    overrides = {k.removeprefix("predictive."): v for k, v in ctx.options.items() if k.startswith("predictive.")}
    if overrides:  # --policy-option predictive.violationTarget=0.05
        cfg = cfg.with_options(overrides)
    params = cfg.to_params(s.target_queue_time_us)
    try:
        fallback = make_configured_hpa(ctx)
    except ValueError:  # no metric the replay simulates is enabled: without request data the count holds
        fallback = None
    return PredictivePolicy("predictive", ctx.cluster_policy.autoscaling.loop_interval_s, params, cfg.rate_window_s,
                            s.min_replicas, s.max_replicas, fallback)
