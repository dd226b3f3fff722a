"""``kpa``: Knative's Pod Autoscaler (stable / panic windows on in-flight requests), with its defaults.

Why: Knative Serving (and KServe on it) is the other common way to autoscale model servers. This is
``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``) with the ``config-autoscaler`` defaults:

* the metric is concurrency: in-flight requests (queued + executing) per pod, as its queue-proxies
  report every second, summed over Ready pods;
* ``stable-window`` 60 s; ``panic-window-percentage`` 10 (a 6 s panic window);
  ``panic-threshold-percentage`` 200; ``max-scale-up-rate`` 1000; ``max-scale-down-rate`` 2;
  ``scale-down-delay`` 0; decisions every 2 s (the autoscaler's tick);
* the target per pod is ``containerConcurrency x target-utilization-percentage`` (70 %). A model
  server has a known number of execution slots, which is what a Knative user sets as
  ``containerConcurrency``; so here ``containerConcurrency`` = the replica's slots (8 by default).
  (With ``containerConcurrency: 0`` Knative would target 100 x 0.7 = 70 in-flight requests per pod,
  meaningless for a GPU replica.)
* desired = ceil(stable average / target), bounded by the rates; panic mode starts when the panic
  window's desired count reaches twice the Ready pods, lasts at least a stable window after the last
  trigger, and never scales down while it lasts;
* scale to zero is off (``min-scale`` = ``--min-replicas``, default 1), as for every policy here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoscaler.replay.policies import PolicyContext, ReplayPolicy, register_policy
from autoscaler.replay.sim import ClusterView


@dataclass
class KpaPolicy:
    name: str
    target_per_pod: float
    min_replicas: int
    max_replicas: int
    interval_s: float = 2.0
    stable_window_s: int = 60
    panic_window_percentage: float = 10.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    panic_since: float | None = None
    max_panic_pods: int = 0

    def decide(self, view: ClusterView) -> int:
        ready = max(1, view.ready_replicas)
        hist = view.inflight_history(self.stable_window_s)
        if hist.size == 0:
            return view.spec_replicas
        panic_n = max(1, int(self.stable_window_s * self.panic_window_percentage / 100.0))
        stable = float(np.mean(hist))
        panic = float(np.mean(hist[-panic_n:]))
        max_up = math.ceil(self.max_scale_up_rate * ready)
        max_down = math.floor(ready / self.max_scale_down_rate)
        dspc = math.ceil(stable / self.target_per_pod)
        dppc = math.ceil(panic / self.target_per_pod)
        desired_stable = min(max(dspc, max_down), max_up)
        desired_panic = min(max(dppc, max_down), max_up)
        over = dppc / ready >= self.panic_threshold
        now = view.now
        if over:
            if self.panic_since is None:
                self.max_panic_pods = ready  # entering panic: never below the pods we have
            self.panic_since = now  # start, or extend, panic mode
        elif self.panic_since is not None and now >= self.panic_since + self.stable_window_s:
            self.panic_since = None
            self.max_panic_pods = 0
        desired = desired_stable
        if self.panic_since is not None:
            # provision for the larger of the two windows, and never below the panic high-water mark
            self.max_panic_pods = max(self.max_panic_pods, desired_panic, desired_stable)
            desired = self.max_panic_pods
        return max(self.min_replicas, min(self.max_replicas, desired))


@register_policy("kpa")
def make_kpa(ctx: PolicyContext) -> ReplayPolicy:
    s = ctx.settings
    util = ctx.options.get("kpa.targetUtilization", 0.7)
    cc = ctx.options.get("kpa.containerConcurrency", float(s.serving.slots))
    return KpaPolicy("kpa", cc * util, s.min_replicas, s.max_replicas)
