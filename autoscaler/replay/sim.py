"""The replay simulator: a cluster of replicas, its metrics pipeline and one policy, in 1 s steps.

Why it looks like this: a week of 1 s steps is 604,800 steps, and a policy decides every 2-15 s, so
neither a per-request simulation nor a Python loop per step per replica is affordable. The serving
side is :class:`autoscaler.serving.FleetState` (the same model as the live sandbox), advanced in
*blocks* of up to 64 s during which the set of replicas that receive traffic is fixed. A policy's
decisions inside a block only change that set when a pod becomes Ready or starts draining; a
scale-up creates pods that become Ready ``startup_s`` later, so most decisions leave the block
intact. When one does change routing inside the block (a scale-down, or a start-up shorter than the
block), the fleet is restored from the block's start and re-run up to that instant: decisions are
made exactly where they would be, at the cost of re-running a few blocks.

The cluster
-----------
* Pods are created at the decision, become Ready ``startup_s`` later (before that they are
  ``Pending``: image pull and model load), and cost GPU-seconds from creation to termination.
* Requests are spread evenly over Ready, non-terminating pods (round robin, as a Service does).
* Scale-down picks victims like a ReplicaSet: not-yet-Ready pods first (gone at once), then the
  most recently Ready. A Ready victim stops getting traffic at once, finishes its backlog and is gone
  when idle, or after ``termination_grace_s`` with the rest counted as dropped.
* Conservation: ``arrived = served + queued + dropped`` at every step (requests that arrive with no
  Ready pod are dropped, as a Service with no endpoints refuses them; with an activator in front, ``hold_s`` of a
  policy under scale to zero, they are held, counted as violations, and join the Ready pods' queues when there are
  some, or are dropped after ``hold_s``).

The metrics pipeline (what a policy can see)
--------------------------------------------
Each Ready pod is scraped every ``scrape_interval_s`` with its own phase; scraped counters are
Triton's (``nv_inference_request_success``, ``nv_inference_queue_duration_us``,
``nv_inference_compute_infer_duration_us``, ``nv_inference_request_duration_us``,
``nv_inference_request_failure``) and gauges (``nv_gpu_utilization`` 0-1, pending and in-flight
requests). :class:`ClusterView` answers like Prometheus at that instant: ``rate()`` over
``rate_window_s`` with Prometheus's extrapolation (:mod:`autoscaler.replay.promql`), the queue-time
recording rule evaluated every ``rule_interval_s``, gauges at their last scrape. Knative's own
per-second concurrency scrape of its queue-proxies is :meth:`ClusterView.inflight_history`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from autoscaler.policy.types import Pod, PodPhase
from autoscaler.replay.policies import ReplayPolicy, ReplaySettings
from autoscaler.replay.promql import rate_from_ends
from autoscaler.replay.workload import Workload
from autoscaler.serving import FleetState, StepResult, split_evenly

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BLOCK_S = 64
RING = 256  # seconds of per-pod history kept (>= block + rate window + scrape interval + rule interval)

COUNTERS = {  # Triton counter: (its per-step increment in StepResult, its running total in FleetState.counters)
    "nv_inference_request_success": ("served", "success"),
    "nv_inference_queue_duration_us": ("queue_time_us", "queue_us"),
    "nv_inference_compute_infer_duration_us": ("compute_us", "compute_infer_us"),
    "nv_inference_request_duration_us": ("request_us", "request_us"),
    "nv_inference_request_failure": ("dropped", "failure_rejected"),
}
GAUGES = ("nv_gpu_utilization", "nv_inference_pending_request_count", "inflight")
HIST_ROW = {name: i for i, name in enumerate((*COUNTERS, *GAUGES))}
"""Row of each counter and gauge in :attr:`Simulation.hist_all`."""


@dataclass(slots=True)
class PodRecord:
    """One pod's life in the replay (times in seconds since the start of the trace)."""

    index: int
    name: str
    slot: int
    created: float
    ready_at: float
    scrape_offset: float
    drain_at: float = math.inf
    gone_at: float = math.inf
    row: int = -1
    k8s: dict[int, Pod] = field(default_factory=dict)
    """The pod's HPA view per state (ready, deleting), built once."""

    def alive(self, t: float) -> bool:
        return self.created <= t < self.gone_at

    def routed(self, t: float) -> bool:
        return self.ready_at <= t < self.drain_at and t < self.gone_at


@dataclass
class PolicyRun:
    """Per-step outcome of one policy on one workload (arrays of length ``steps``)."""

    policy: str
    arrived: FloatArray
    served: FloatArray
    dropped: FloatArray
    violations: FloatArray
    queue_wait_sum_us: FloatArray
    """Sum over the step's arrivals of their expected queue time (µs)."""
    spec_replicas: FloatArray
    ready_replicas: FloatArray
    gpu_seconds: float
    """Pod-seconds from creation to termination (start-up and draining included)."""
    scale_events: int
    queued_end: float
    end_s: float
    wall_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class ClusterView:
    """What a policy sees at one decision instant: the pods and Prometheus's answers. Read-only."""

    def __init__(self, sim: Simulation, now: float) -> None:
        self._sim = sim
        self.now = now
        self.settings = sim.settings
        self.spec_replicas = sim.spec
        self._pods = [p for p in sim.live if p.created <= now < p.gone_at]
        self._k8s: tuple[Pod, ...] | None = None
        self._arr: tuple[FloatArray, FloatArray, IntArray] | None = None
        self._scr: dict[float, tuple[npt.NDArray[np.bool_], FloatArray, FloatArray, IntArray]] = {}
        self._rate: dict[tuple[float, float, str], FloatArray] = {}

    # -- the API server's view ---------------------------------------------------------------------

    @property
    def ready_replicas(self) -> int:
        """Ready, non-terminating pods (the endpoints of the Service)."""
        return sum(1 for p in self._pods if p.routed(self.now))

    @property
    def starting_replicas(self) -> int:
        """Pods created but not Ready yet (capacity on its way)."""
        return sum(1 for p in self._pods if p.ready_at > self.now)

    @property
    def status_replicas(self) -> int:
        """Non-terminating pods (``scale.status.replicas``)."""
        return sum(1 for p in self._pods if p.drain_at > self.now)

    def k8s_pods(self) -> tuple[Pod, ...]:
        """The pods as the HPA lists them (Pending while starting, ``deleting`` while terminating)."""
        if self._k8s is None:
            now = self.now
            out = []
            for p in self._pods:
                key = (p.ready_at <= now) + 2 * (p.drain_at <= now)
                pod = p.k8s.get(key)
                if pod is None:
                    ready = p.ready_at <= now
                    pod = Pod(name=p.name, phase=PodPhase.RUNNING if ready else PodPhase.PENDING,
                              deleting=p.drain_at <= now, start_time=p.created, ready=ready,
                              ready_transition_time=p.ready_at if ready else p.created)
                    p.k8s[key] = pod
                out.append(pod)
            self._k8s = tuple(out)
        return self._k8s

    # -- Prometheus's view -------------------------------------------------------------------------

    def _arrays(self) -> tuple[FloatArray, FloatArray, IntArray]:
        """First scrape time, scrape offset and history slot of each pod."""
        if self._arr is None:
            iv = self.settings.scrape_interval_s
            ready = np.array([p.ready_at for p in self._pods])
            off = np.array([p.scrape_offset for p in self._pods])
            first = off + np.ceil((ready - off) / iv) * iv
            self._arr = (first, off, np.array([p.slot for p in self._pods], dtype=np.int64))
        return self._arr

    def _scrapes(self, at: float) -> tuple[npt.NDArray[np.bool_], FloatArray, FloatArray, IntArray]:
        """Which pods have been scraped by ``at``, and for those: first and last scrape time, history slot.
        Cached per instant (a decision reads several counters and windows at the same instant)."""
        got = self._scr.get(at)
        if got is None:
            first, off, slot = self._arrays()
            mask = first <= at
            off_m = off[mask]
            last = off_m + np.floor((at - off_m) / self.settings.scrape_interval_s) * self.settings.scrape_interval_s
            got = self._scr[at] = (mask, first[mask], last, slot[mask])
        return got

    def _rates(self, counters: Sequence[str], window_s: float | None,
               at: float) -> tuple[npt.NDArray[np.bool_], list[FloatArray]]:
        """Which pods are scraped at ``at``, and ``rate(counter[window])`` of each, per counter; cached per instant,
        window and counter (a decision reads the same series for several purposes).

        A pod's samples in the window are its scrapes ``last - k x interval`` at or after its first scrape, inside
        ``(at - window, at]`` and still in the history ring: the newest ``n`` of them, so the first and the last
        are found by counting, and every counter of the pod shares them (:func:`rate_from_ends`)."""
        window = self.settings.rate_window_s if window_s is None else window_s
        mask, first, last, slot = self._scrapes(at)
        if not slot.size:
            return mask, [np.zeros(0) for _ in counters]
        missing = [c for c in counters if (at, window, c) not in self._rate]
        if missing:
            iv = self.settings.scrape_interval_s
            k = np.arange(math.ceil(window / iv) + 1, dtype=np.float64)
            t = last[:, None] - k[None, :] * iv
            n = ((t >= first[:, None]) & (t > max(at - window, at - RING + 2))).sum(axis=1)
            t_first = last - (n - 1) * iv
            i_first = np.where(n > 0, t_first, last).astype(np.int64) % RING
            i_last = last.astype(np.int64) % RING
            rows = np.array([HIST_ROW[c] for c in missing])[:, None]
            hist = self._sim.hist_all
            rates = rate_from_ends(t_first, last, n, hist[rows, slot, i_first], hist[rows, slot, i_last], at, window)
            rates.setflags(write=False)  # shared by every reader of the instant
            for c, r in zip(missing, rates, strict=True):
                self._rate[(at, window, c)] = r
        return mask, [self._rate[(at, window, c)] for c in counters]

    def pod_rates(self, counters: Sequence[str], window_s: float | None = None,
                  at: float | None = None) -> tuple[list[str], dict[str, FloatArray]]:
        """``rate(counter[window])`` per scraped pod at time ``at`` (default now); NaN = no result."""
        mask, rates = self._rates(counters, window_s, self.now if at is None else at)
        names = [p.name for p, m in zip(self._pods, mask, strict=True) if m]
        return names, {c: rates[i] for i, c in enumerate(counters)}

    def pod_gauge(self, gauge: str, at: float | None = None) -> tuple[list[str], FloatArray]:
        """A gauge per scraped pod at its last scrape at or before ``at``."""
        mask, _first, last, slot = self._scrapes(self.now if at is None else at)
        names = [p.name for p, m in zip(self._pods, mask, strict=True) if m]
        if not names:
            return [], np.zeros(0)
        vals: FloatArray = self._sim.hist[gauge][slot, last.astype(np.int64) % RING]
        return names, vals

    def rule_eval_time(self) -> float:
        """When the recording rules last ran (every ``rule_interval_s``)."""
        iv = self.settings.rule_interval_s
        return math.floor(self.now / iv) * iv

    def queue_time_by_pod(self, recorded: bool = True) -> dict[str, float | None]:
        """Per pod, ``inference_autoscaler:queue_time_us:rate1m`` as the controller maps it: the value,
        0 for a Ready pod with no traffic (0/0), None when the series is missing."""
        at = self.rule_eval_time() if recorded else self.now
        names, r = self.pod_rates(("nv_inference_queue_duration_us", "nv_inference_request_success"), at=at)
        q, s = r["nv_inference_queue_duration_us"], r["nv_inference_request_success"]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(s > 0, q / s, np.where(q == 0, 0.0, np.nan))  # 0/0 of a scraped (Ready) pod: no traffic
        return {n: (x if x == x else None) for n, x in zip(names, v.tolist(), strict=True)}

    def lease_rates(self, counters: Sequence[str], window_s: float | None = None) -> dict[str, float | None]:
        """``sum(rate(counter[window]))`` over the lease's pods, per counter; None for an empty answer."""
        _mask, rates = self._rates(counters, window_s, self.now)
        out: dict[str, float | None] = {}
        for c, r in zip(counters, rates, strict=True):
            v = r[np.isfinite(r)]
            out[c] = float(v.sum()) if v.size else None
        return out

    def gateway_rate(self, window_s: float | None = None) -> float:
        """The lease's arrival rate in front of its pods, as a gateway's request counter reads in Prometheus:
        scraped every ``scrape_interval_s``, ``rate()`` over ``window_s`` (default ``rate_window_s``) at the last
        scrape (arrivals, whether or not a pod took them: the wake value of scale to zero)."""
        s = self.settings
        window = s.rate_window_s if window_s is None else window_s
        last = min(int(math.floor(self.now / s.scrape_interval_s) * s.scrape_interval_s), self._sim.T)
        lo = max(0, int(last - window))
        cum = self._sim.arrived_cum
        return float(cum[last] - cum[lo]) / window if last > lo else 0.0

    def inflight_history(self, seconds: int) -> FloatArray:
        """Total in-flight requests (queued + executing) over Ready pods, per second, for the last
        ``seconds`` seconds up to now (Knative's queue-proxy scrape, 1 s buckets)."""
        t = int(self.now)
        lo = max(0, t - seconds)
        out: FloatArray = self._sim.inflight_total[lo:t]
        return out


ProgressFn = Callable[[float], None]


class Simulation:
    """One policy replayed on one workload. Use :meth:`run`."""

    def __init__(self, workload: Workload, policy: ReplayPolicy, settings: ReplaySettings) -> None:
        self.workload = workload
        self.policy = policy
        self.settings = settings
        self.T = workload.steps
        s = settings
        self.fleet = FleetState(s.serving, replicas=0, slo_target_us=s.target_queue_time_us)
        self.pods: list[PodRecord] = []
        self.live: list[PodRecord] = []  # pods not yet gone (pruned at block starts)
        self.row_pods: list[PodRecord] = []
        self.spec = 0
        self.scale_events = 0
        self._free_slots: list[int] = []
        self._n_slots = 0
        self.hist: dict[str, FloatArray] = {}
        self.hist_all: npt.NDArray[np.float64] = np.zeros((0, 0, RING))
        self._grow_slots(max(8, 2 * s.max_replicas + 8))
        T = self.T
        self.arrived = workload.counts.astype(np.float64)
        self.arrived_cum = np.concatenate([[0.0], np.cumsum(self.arrived)])
        self.floor = 0 if getattr(policy, "scales_to_zero", False) else s.min_replicas
        """The fewest replicas: the replay's minimum, or 0 for a policy under the scale-to-zero layer."""
        self.served = np.zeros(T)
        self.dropped = np.zeros(T)
        self.violations = np.zeros(T)
        self.wait_sum = np.zeros(T)
        self.inflight_total = np.zeros(T)
        self.spec_events: list[tuple[float, int]] = []
        self._rng = np.random.default_rng(s.seed)
        self._emptied_at: dict[int, float] = {}
        self._unrouted: FloatArray | None = None
        """The arrivals of the block last run, when no pod was Ready to take them (None: there was one)."""
        self.hold_s = float(getattr(policy, "hold_s", 0.0))
        """An activator in front of the pods holds requests that find no Ready pod this long (0: none, dropped)."""
        self.held: list[tuple[int, float]] = []
        """Requests held now: (arrival step, count)."""

    # -- pods --------------------------------------------------------------------------------------

    def _grow_slots(self, n: int) -> None:
        old = self._n_slots
        stacked = np.zeros((len(HIST_ROW), n, RING))  # one array, so a query gathers all its counters at once
        if old:
            stacked[:, :old] = self.hist_all
        self.hist_all = stacked
        self.hist = {name: stacked[i] for name, i in HIST_ROW.items()}  # views: writes go to hist_all
        self._free_slots.extend(range(n - 1, old - 1, -1))
        self._n_slots = n

    def _new_pod(self, t: float, ready_at: float) -> PodRecord:
        if not self._free_slots:
            self._grow_slots(self._n_slots * 2)
        slot = self._free_slots.pop()
        self.hist_all[:, slot] = 0.0
        i = len(self.pods)
        iv = max(1, round(self.settings.scrape_interval_s))
        p = PodRecord(index=i, name=f"pod-{i}", slot=slot, created=t, ready_at=ready_at,
                      scrape_offset=float(self._rng.integers(0, iv)))
        self.pods.append(p)
        self.live.append(p)
        return p

    def _release(self, p: PodRecord, t: float) -> None:
        p.gone_at = t
        self._free_slots.append(p.slot)

    def _set_spec(self, t: float, n: int) -> None:
        if n != self.spec:
            self.spec = n
            self.spec_events.append((t, n))

    def apply(self, t: float, desired: int) -> float:
        """Scale to ``desired`` at ``t``; returns when traffic routing first changes (inf: never)."""
        s = self.settings
        desired = max(self.floor, min(s.max_replicas, int(desired)))
        if desired == self.spec:
            return math.inf
        self.scale_events += 1
        change = math.inf
        if desired > self.spec:
            for _ in range(desired - self.spec):
                self._new_pod(t, t + s.startup_s)
            change = t + s.startup_s
        else:
            victims = [p for p in self.live if p.alive(t) and p.drain_at > t]
            # ReplicaSet ranking: not Ready before Ready, then the most recently Ready / created first
            victims.sort(key=lambda p: (p.ready_at <= t, -p.ready_at, -p.created))
            for p in victims[: self.spec - desired]:
                if p.ready_at > t:
                    self._release(p, t)
                else:
                    p.drain_at = t
                    change = t
        self._set_spec(t, desired)
        return change

    # -- the fleet ---------------------------------------------------------------------------------

    def _sync_rows(self, t: float) -> None:
        """At a block start: add pods that became Ready, remove those that finished draining."""
        self.live = [p for p in self.live if p.gone_at > t]
        new = [p for p in self.live if p.row < 0 and p.ready_at <= t]
        if new:
            rows = self.fleet.add(len(new))
            for p, r in zip(new, rows, strict=True):
                p.row = int(r)
                self.row_pods.append(p)
        gone: list[int] = []
        for p in self.row_pods:
            if p.drain_at > t:
                continue
            if self.fleet.idle[p.row] or t >= p.drain_at + self.settings.termination_grace_s:
                lost = float(self.fleet.queue[p.row])
                if lost > 0 and t > 0:
                    self.dropped[int(t) - 1] += lost
                self._release(p, t if lost > 0 else min(t, self._emptied_at.get(p.index, t)))
                gone.append(p.row)
        if gone:
            self.fleet.remove(gone)
            self.row_pods = [p for p in self.row_pods if p.row not in gone]
            for i, p in enumerate(self.row_pods):
                p.row = i

    def _run_block(self, t0: int, t1: int) -> StepResult:
        L, R = t1 - t0, self.fleet.replicas
        routed = [p.row for p in self.row_pods if p.drain_at > t0]
        counts = self.arrived[t0:t1]
        a = np.zeros((L, R))
        if routed:
            a[:, routed] = split_evenly(counts, len(routed))
        # no Ready pod: dropped, counted when the block is finished (a block cut short is run again up to the cut,
        # and its arrivals must be counted once)
        self._unrouted = None if routed else counts.copy()
        w = self.workload
        p = o = None
        if w.prompt_per_request is not None:
            p = a * w.prompt_per_request[t0:t1, None]
        if w.output_per_request is not None:
            o = a * w.output_per_request[t0:t1, None]
        base = {c: self.fleet.counters[k].copy() for c, (_f, k) in COUNTERS.items()}
        res = self.fleet.run(a, 1.0, p, o)
        # per-pod history for the metrics pipeline: cumulative counters at t0..t1, gauges per step
        if R:
            slots = np.array([pp.slot for pp in self.row_pods])
            cols = np.arange(t0, t1 + 1) % RING
            for c, (field_name, _k) in COUNTERS.items():
                inc = getattr(res, field_name)
                cum = np.vstack([np.zeros((1, R)), np.cumsum(inc, axis=0)]) + base[c][None, :]
                self.hist[c][slots[:, None], cols[None, :]] = cum.T
            gcols = cols[1:]
            self.hist["nv_gpu_utilization"][slots[:, None], gcols[None, :]] = res.busy.T
            self.hist["nv_inference_pending_request_count"][slots[:, None], gcols[None, :]] = res.pending.T
            inflight = res.running + res.pending
            self.hist["inflight"][slots[:, None], gcols[None, :]] = inflight.T
            mask = np.zeros(R, dtype=bool)
            mask[routed] = True
            self.inflight_total[t0:t1] = inflight[:, mask].sum(axis=1)
        else:
            self.inflight_total[t0:t1] = 0.0
        return res

    def _release_held(self, t: int) -> None:
        """At a block start: held requests past the hold timeout are dropped (the activator's 504); the rest go to the
        Ready pods' queues at once, if there are any, and their wait so far is queue time."""
        expired = [(ta, c) for ta, c in self.held if t - ta > self.hold_s]
        for ta, c in expired:
            self.violations[ta] -= c
            self.dropped[ta] += c
        self.held = [(ta, c) for ta, c in self.held if t - ta <= self.hold_s]
        routed = [p.row for p in self.row_pods if p.drain_at > t]
        if not self.held or not routed:
            return
        for ta, c in self.held:
            self.wait_sum[ta] += c * (t - ta) * 1e6
        self.fleet.queue[routed] += sum(c for _, c in self.held) / len(routed)
        self.held = []

    def _save(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, dict[str, FloatArray]]:
        f = self.fleet
        return (f.queue.copy(), f.rate.copy(), f.svc.copy(), f.tokens.copy(),
                {k: v.copy() for k, v in f.counters.items()})

    def _restore(self, saved: tuple[FloatArray, FloatArray, FloatArray, FloatArray, dict[str, FloatArray]]) -> None:
        f = self.fleet
        f.queue, f.rate, f.svc, f.tokens, f.counters = saved

    def _finish_block(self, t0: int, t1: int, res: StepResult) -> None:
        """Count the block last run, ``[t0, t1)``."""
        self.served[t0:t1] = res.served.sum(axis=1)
        self.dropped[t0:t1] += res.dropped.sum(axis=1)
        self.violations[t0:t1] = res.slo_violations.sum(axis=1)
        self.wait_sum[t0:t1] = (res.arrived * res.mean_queue_time_us).sum(axis=1)
        if self._unrouted is not None and self.hold_s > 0:  # an activator holds them: late, so violations
            self.violations[t0:t1] += self._unrouted
            self.held += [(t0 + int(i), float(self._unrouted[i])) for i in np.flatnonzero(self._unrouted > 0)]
        elif self._unrouted is not None:
            self.dropped[t0:t1] += self._unrouted
        self._emptied_at = {}
        for p in self.row_pods:
            if p.drain_at <= t0:
                empty = np.nonzero(res.queued[:, p.row] <= 1e-9)[0]
                if empty.size:
                    self._emptied_at[p.index] = float(t0 + empty[0] + 1)

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, progress: ProgressFn | None = None) -> PolicyRun:
        s = self.settings
        w = self.workload
        n0 = s.initial_replicas
        if n0 is None:
            first = float(w.counts[:60].mean()) if w.steps else 0.0
            n0 = math.ceil(first / w.replica_capacity_rps)
        n0 = max(self.floor, min(s.max_replicas, n0))
        for _ in range(n0):
            self._new_pod(0.0, 0.0)
        self._set_spec(0.0, n0)
        self._emptied_at = {}
        interval = float(self.policy.interval_s)
        next_tick = interval
        t = 0
        T = self.T
        while t < T:
            self._sync_rows(float(t))
            if self.held:
                self._release_held(t)
            end = min(T, t + BLOCK_S)
            for p in self.live:
                if p.gone_at > t:  # _sync_rows may have released some just now
                    if p.ready_at > t:
                        end = min(end, math.ceil(p.ready_at))
                    if p.row >= 0 and p.drain_at <= t:
                        end = min(end, math.ceil(p.drain_at + s.termination_grace_s))
            end = max(end, t + 1)
            saved = self._save()
            res = self._run_block(t, end)
            cut = end
            while next_tick <= end:
                tau = next_tick
                desired = self.policy.decide(ClusterView(self, tau))
                change = self.apply(tau, desired)
                next_tick += interval
                if change < end:
                    cut = max(t + 1, math.ceil(change)) if change > t else t
                    break
            if cut < end:
                self._restore(saved)
                if cut > t:
                    res = self._run_block(t, cut)
                    self._finish_block(t, cut, res)
                t = cut
            else:
                self._finish_block(t, end, res)
                t = end
            if progress is not None:
                progress(t / T)
        return self._result()

    def _result(self) -> PolicyRun:
        T = self.T
        spec = np.zeros(T)
        for i, (ts, n) in enumerate(self.spec_events):
            lo = int(ts)
            hi = int(self.spec_events[i + 1][0]) if i + 1 < len(self.spec_events) else T
            spec[lo:hi] = n
        diff = np.zeros(T + 1)
        for p in self.pods:
            lo = math.ceil(p.ready_at)
            hi = math.ceil(min(T, p.drain_at, p.gone_at))
            if lo < hi:
                diff[lo] += 1
                diff[hi] -= 1
        ready = np.cumsum(diff[:T])
        return PolicyRun(
            policy=self.policy.name, arrived=self.arrived, served=self.served, dropped=self.dropped,
            violations=self.violations, queue_wait_sum_us=self.wait_sum, spec_replicas=spec, ready_replicas=ready,
            gpu_seconds=float(sum(min(p.gone_at, T) - p.created for p in self.pods)), scale_events=self.scale_events,
            queued_end=float(self.fleet.queue.sum()) + sum(c for _, c in self.held), end_s=float(T))



def simulate(workload: Workload, policy: ReplayPolicy, settings: ReplaySettings,
             progress: ProgressFn | None = None) -> PolicyRun:
    """Replay one policy on one workload."""
    return Simulation(workload, policy, settings).run(progress)
