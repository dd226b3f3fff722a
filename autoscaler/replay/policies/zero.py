"""``NAME+zero``: any replay policy with the controller's scale-to-zero layer on top (``default+zero``, ``hpa+zero``).

Why: scale to zero trades GPU-seconds in idle stretches for the requests that arrive while a lease is at zero or
its woken pod starts (a model server's whole start-up; the replay counts them as dropped, i.e. SLO violations).
Whether that pays depends on how idle the traffic is, so the replay shows it on a team's own trace, side by side
with the same policy floored at one replica.

The layer is the controller's own pure core, :func:`autoscaler.policy.idle.decide_idle`, fed as the controller
feeds it:

* the wake value is the lease's request rate in front of its pods, as a gateway's counter scraped every
  ``scrape_interval_s`` and read with ``rate()`` over ``rate_window_s`` (:meth:`ClusterView.gateway_rate`);
* at zero the wrapped policy is not asked (it has no pods to size, as the controller skips a predictive lease at
  zero); with replicas its decision is floored at one and the layer decides when to go to zero;
* parameters from the cluster policy's ``scaleToZero`` (``idleSeconds``, ``wakeThreshold``, ``wakeReplicas``,
  ``wakeTargetPerReplica``; ``auto``: woken to what the wrapped predictive policy sizes the gateway's rate with),
  each overridable with ``--policy-option zero.idleSeconds=300`` and so on. The replay is
  never blind (every Ready pod is scraped), so ``ScaleToZeroHeld`` does not occur;
* ``zero.holdSeconds=S`` puts the activator in front: the requests that find no Ready pod are held up to S seconds
  (late, so still violations, but not lost) and join the woken pods' queues at once, which then start with that
  backlog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from autoscaler.policy.idle import IdleState, decide_idle
from autoscaler.replay.policies import PolicyContext, ReplayPolicy
from autoscaler.replay.sim import ClusterView

OPTIONS = ("idleSeconds", "wakeThreshold", "wakeReplicas", "wakeTargetPerReplica", "holdSeconds")


@dataclass
class ZeroPolicy:
    """The wrapped policy under the scale-to-zero layer."""

    inner: ReplayPolicy
    name: str
    idle_s: float
    threshold: float = 0.0
    wake_replicas: int = 1
    wake_target: float | None = None
    wake_sizer: Callable[[float, ClusterView], int | None] | None = None
    """``wakeTargetPerReplica: auto``: the wrapped (predictive) policy's sizing of the gateway's rate."""
    max_replicas: int | None = None
    state: IdleState = field(default_factory=IdleState)
    interval_s: float = 5.0
    """The wrapped policy's."""
    scales_to_zero: bool = True
    """Tells the simulator this policy's floor is 0 replicas."""
    hold_s: float = 0.0
    """``zero.holdSeconds``: an activator in front holds the requests that find no Ready pod this long (its
    ``--hold-timeout``), and the woken pods serve them; 0: none, they are dropped."""

    def decide(self, view: ClusterView) -> int:
        current = view.spec_replicas
        desired = self.inner.decide(view) if current > 0 else 0
        wake = view.gateway_rate()
        need = None
        if self.wake_sizer is not None and wake > self.threshold and (current <= 0 or self.state.waking):
            need = self.wake_sizer(wake, view)
        d = decide_idle(current, desired, wake, view.now, self.state, idle_s=self.idle_s,
                        threshold=self.threshold, wake_replicas=self.wake_replicas, wake_target=self.wake_target,
                        max_replicas=self.max_replicas, ready=view.ready_replicas, wake_need=need)
        self.state = d.state
        return d.desired


def with_zero(inner: ReplayPolicy, name: str, ctx: PolicyContext) -> ZeroPolicy:
    """``inner`` under the scale-to-zero layer, with the cluster policy's ``scaleToZero`` and ``zero.*`` options."""
    stz = ctx.cluster_policy.autoscaling.scale_to_zero
    opts = {k.removeprefix("zero."): v for k, v in ctx.options.items() if k.startswith("zero.")}
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option zero.{unknown[0]} (known: {', '.join('zero.' + o for o in OPTIONS)})")
    idle_s = float(opts.get("idleSeconds", stz.idle_s))
    if idle_s <= 0:
        raise ValueError("zero.idleSeconds must be > 0")
    hold_s = float(opts.get("holdSeconds", 0.0))
    if hold_s < 0:
        raise ValueError("zero.holdSeconds must be >= 0 (0: no activator)")
    target = opts.get("wakeTargetPerReplica", stz.wake_target)
    auto = target == "auto"
    sizer = getattr(inner, "wake_need", None) if auto else None
    if auto and sizer is None:
        raise ValueError(f"zero.wakeTargetPerReplica=auto sizes the wake-up as the predictive algorithm does; {name} "
                         "is not on it (use default with algorithm: predictive, or a number)")
    return ZeroPolicy(inner, name, idle_s=idle_s, threshold=float(opts.get("wakeThreshold", stz.wake_threshold)),
                      wake_replicas=max(1, int(opts.get("wakeReplicas", stz.wake_replicas))),
                      wake_target=float(target) if target and not auto else None, wake_sizer=sizer,
                      max_replicas=ctx.settings.max_replicas, interval_s=inner.interval_s, hold_s=hold_s)


__all__ = ["OPTIONS", "ZeroPolicy", "with_zero"]
