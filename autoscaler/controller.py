"""The control loop: observe -> decide -> act, for every lease, every interval.

Observe: watch-based caches of Deployments, Pods and the policy ConfigMap (no list per loop) and ONE
PromQL query per metric kind in use, whatever the number of leases. Decide: the pure core
(``autoscaler.policy``) per lease, isolated (one bad lease never stalls the others), plus the
controller's safety rules on top: no scale-down on imputed or absent data, a fallback after N
consecutive failed loops, a human's ``kubectl scale`` taken as the new current count. Act: only the
leader writes; a merge patch of ``/scale`` carrying the resourceVersion the decision saw (409 -> re-read;
if the count changed, the next loop decides from it, else retry once); Events with HPA reasons,
deduplicated; the status and state annotations written only when they change.

Concurrency: everything runs on one event loop. Caches are mutated only by their watch tasks between
awaits; a tick snapshots what it needs at its start, so a watch event landing mid-tick is seen next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import math
import os
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import numpy as np

from autoscaler import ANNOTATION_PREFIX
from autoscaler.config import (
    CONTROLLER_ANNOTATIONS,
    DEFAULT_POLICY,
    LEADER_LEASE,
    POLICY_CONFIGMAP,
    POLICY_KEY,
    POLICY_NAMESPACE,
    PREDICTIVE_STATE_ANNOTATION,
    STATE_ANNOTATION,
    STATUS_ANNOTATION,
    ClusterPolicy,
    EffectiveMetric,
    LeasePolicy,
    Mode,
    PolicyError,
    Resolution,
    Severity,
    load_policy,
    parse_policy,
    resolve_lease,
)
from autoscaler.kube.api import KubeApi, KubeError
from autoscaler.kube.cache import WatchCache, obj_key
from autoscaler.kube.events import EventRecorder, rfc3339
from autoscaler.kube.leader import LeaderElector
from autoscaler.kube.promobjects import PrometheusObjects
from autoscaler.kube.selectors import Selector
from autoscaler.kube.workloads import (
    annotations_of,
    compact_json,
    deployment_path,
    deployments_path,
    max_num_seqs,
    patch_annotations,
    patch_scale,
    pods_path,
    slim_deployment,
)
from autoscaler.logs import RELOG_S
from autoscaler.metrics import (
    BatchResult,
    ClientSettings,
    InstantVector,
    LeaseTarget,
    MetricKind,
    PrometheusClient,
    QueryError,
    fetch_all,
)
from autoscaler.metrics.kinds.request_stats import RequestStats
from autoscaler.metrics.registry import MetricRegistry, default_registry, kind_for
from autoscaler.metrics.wake import Wake, idle_history, read_wakes
from autoscaler.observe import (
    LIMIT_WORDS,
    MetricObservation,
    PodBatch,
    learned_batch,
    lease_parts,
    measured_startup_s,
    metric_input,
    note_batches,
    parse_time,
    part_by_pod,
    pod_from_k8s,
    predictive_observation,
    reported_slots,
    resolve_slots,
    sized_wake,
    slim_pod,
    slot_limit,
)
from autoscaler.policy import (
    Behavior,
    Decision,
    DecisionState,
    Pod,
    Recommendation,
    Snapshot,
    decide,
    state_without_event,
)
from autoscaler.policy.batch import decide_many
from autoscaler.policy.behavior import compact_state
from autoscaler.policy.idle import IdleState, decide_idle, idle_message
from autoscaler.policy.predictive import (
    SETTLE_RATE_WINDOWS,
    PredictiveDecision,
    PredictiveParams,
    PredictiveReason,
    PredictiveState,
    decide_predictive,
    seed_cycle,
    seed_season,
)
from autoscaler.statestore import (
    EMPTY,
    Persisted,
    PredictivePersisted,
    needs_write,
    parse,
    parse_predictive,
    predictive_needs_write,
    predictive_significant,
    restore,
    restore_predictive,
    significant,
)
from autoscaler.telemetry import LeaseSeries, Telemetry, make_app, serve

log = logging.getLogger("autoscaler.controller")
_T = TypeVar("_T")



@dataclass
class Settings:
    """Everything ``autoscaler run`` can set (flags and ``AUTOSCALER_*`` environment variables)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = POLICY_NAMESPACE  # where the policy ConfigMap and the leader Lease live
    configmap: str = POLICY_CONFIGMAP
    configmap_key: str = POLICY_KEY
    policy_file: str | None = None  # used until/unless the ConfigMap exists
    prometheus_url: str | None = None  # overrides the policy's prometheus.url
    interval_s: float | None = None  # overrides the policy's loopIntervalSeconds
    dry_run: bool = False
    leader_election: bool = True
    lease_name: str = LEADER_LEASE
    identity: str | None = None
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    state_granularity_s: float = 30.0
    status_min_interval_s: float = 30.0
    write_concurrency: int = 32
    history: int = 20


@dataclass
class LeaseRuntime:
    """In-memory per-lease bookkeeping between loops."""

    state: DecisionState | None = None
    persisted: Persisted = EMPTY
    restored: bool = False
    failures: int = 0
    last_seen_replicas: int | None = None
    last_written_replicas: int | None = None
    last_scale_time: float | None = None
    status_key: tuple[Any, ...] = ()
    status_written_at: float = -math.inf
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    last: dict[str, Any] = field(default_factory=dict)
    predictive: PredictiveState | None = None  # the predictive algorithm's state
    predictive_params: PredictiveParams | None = None  # the parameters it was last decided with
    predictive_persisted: PredictivePersisted | None = None  # what the predictive-state annotation holds
    history_due: bool = False  # a new predictive state: read its load and rate history from Prometheus
    cycle_seed: np.ndarray | None = None  # (bucket start, largest load) rows read, for the next decision
    season_seed: np.ndarray | None = None  # (bucket start, mean request rate) rows read, for the next decision
    rates: tuple[float, float] | None = None  # predictive: the rate seen and the rate sized for (on /metrics)
    batches: dict[str, PodBatch] = field(default_factory=dict)  # pod: what it ran while saturated
    batch_history: bool = False  # the pods' saturated batches of the last hour were asked of Prometheus
    learned_slots: int | None = None  # the learnt slots last announced in a SlotsLearned Event
    fits: dict[str, PodBatch] = field(default_factory=dict)  # pod: what its KV cache holds at its requests' sizes
    estimated_slots: int | None = None  # the KV-cache slots last announced in a SlotsEstimated Event
    slots: tuple[int, str] | None = None  # predictive: the slots per replica sized with, and their source (/metrics)
    outside_changes: list[float] = field(default_factory=list)  # when replicas changed outside us, last FIGHT_WINDOW_S
    idle: IdleState = field(default_factory=IdleState)  # scale to zero: when demand was last seen
    zero: tuple[float, float] | None = None  # scale to zero: the last wake value (NaN: none) and seconds idle

    def slots_news(self, slots: int, source: str, learned: int | None) -> str | None:
        """The Event to post for the slots the lease is sized with now (``SlotsLearned``, ``SlotsEstimated``; None:
        nothing new), noting them as announced: learnt or estimated slots that are new or moved by more than
        ``LEARNED_CHANGE``. Once learnt, a later estimate is new again (a rollout's pods, whose batches are not
        known); once the learnt batches are forgotten (``learned`` None), so is a later learnt figure."""
        if learned is None:
            self.learned_slots = None
        if source == "learnt" and _moved(slots, self.learned_slots):
            self.learned_slots, self.estimated_slots = slots, None
            return "SlotsLearned"
        if source == "kv-cache" and _moved(slots, self.estimated_slots):
            self.estimated_slots = slots
            return "SlotsEstimated"
        return None

    def leave_predictive(self) -> None:
        """The lease is decided by another algorithm now: its predictive state goes (with its /metrics series, and
        the annotation is removed), so that coming back starts afresh, as after a restart, not from a stale state."""
        self.predictive = self.predictive_params = self.predictive_persisted = None
        self.history_due, self.cycle_seed, self.season_seed, self.rates, self.slots = False, None, None, None, None


@dataclass(slots=True)
class _LeaseSpec:
    """What a lease's loop needs from its Deployment that changes only with the Deployment (its
    resourceVersion), the policy (its version) or the pods of its namespace (a generation counter)."""

    rv: str
    policy_version: int
    user: tuple[tuple[str, str], ...]  # the lease annotations the resolution was made from
    resolution: Resolution
    selector: Selector
    gen: Any = None  # the Deployment's metadata.generation the resolution was made at (its spec)
    pod_gen: int = -1  # namespace pod generation `pods` and `target` were matched at (-1: not yet)
    pods: tuple[Pod, ...] = ()
    target: LeaseTarget | None = None  # None without pods (nothing to query)


# A lease between `_begin` (no metric needed) and `_snapshot`: Deployment, lease, pods, runtime, state.
_Begun = tuple[dict[str, Any], LeasePolicy, tuple[Pod, ...], LeaseRuntime, DecisionState]
_YIELD_EVERY = 250  # leases prepared between two yields to the event loop while the query runs
_LIMIT_REASONS = frozenset({PredictiveReason.TOO_MANY_REPLICAS, PredictiveReason.TOO_FEW_REPLICAS,
                           PredictiveReason.SCALE_DOWN_LIMIT})  # the predictive reasons that name a limit
FIGHT_WINDOW_S, FIGHT_CHANGES = 600.0, 3  # this many outside changes of replicas in this window: another writer
_SeedRead = tuple[str, str, bool, Callable[[InstantVector], None]]  # what, PromQL, matrix answer, what to do with it
SEED_CONCURRENCY = 2  # recurring-load histories read from Prometheus at once (a restart reads one per lease)
BATCH_HISTORY_S = 3600.0  # how far back a vLLM lease's saturated batches are read after a (re)start
LEARNED_CHANGE = 0.25  # a SlotsLearned (SlotsEstimated) Event when the learnt (KV-cache) slots move by more than this
# fraction (a KV-bound batch varies)


@dataclass
class _Prepared:
    obj: dict[str, Any]
    lease: LeasePolicy
    pods: tuple[Pod, ...]
    rt: LeaseRuntime
    snap: Snapshot
    observations: list[MetricObservation]
    state: DecisionState


@dataclass
class TickReport:
    leases: int = 0
    decided: int = 0
    invalid: int = 0
    paused: int = 0
    queries: int = 0
    api_writes: int = 0
    rescales: int = 0
    errors: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0


class PolicyHolder:
    """The current cluster policy: last good one wins; a bad ConfigMap is rejected and reported."""

    def __init__(self, fallback: ClusterPolicy, source: str) -> None:
        self.policy = fallback
        self.source = source
        self.version = 0
        self.last_error: str | None = None

    def offer(self, text: str, source: str) -> PolicyError | None:
        try:
            policy = parse_policy(text, source=source)
        except PolicyError as exc:
            self.last_error = str(exc)
            return exc
        if policy != self.policy or source != self.source:
            self.policy = policy
            self.source = source
            self.version += 1
        self.last_error = None
        return None


def partial_data_message(d: PredictiveDecision, params: PredictiveParams) -> str:
    """Why a ``PartialData`` decision holds the count (its Event's message: no figures that change every loop)."""
    return (f"not scaling down: {d.details.get('unmeasured_ready', 0):.0f} pod(s) Ready for over "
            f"{SETTLE_RATE_WINDOWS * params.rate_window_s:.0f}s have no request rate, so the lease's rate leaves "
            "their traffic out (a rate window needs two scrapes of the pod: is predictive.rateWindowSeconds shorter "
            "than two scrape intervals, or is the pod not scraped?)")


def no_request_data_message(pods: int, kind: MetricKind, params: PredictiveParams,
                            metrics: Sequence[EffectiveMetric]) -> str:
    """The ``PredictiveUnavailable`` Event's message: a predictive lease none of whose settled pods has a request rate
    (no figures that change every loop)."""
    counters = kind.success_counters if isinstance(kind, RequestStats) else kind.raw_series[:1]
    series = " nor ".join(counters) or kind.name
    return (f"no request rate: {pods} pod(s) Ready for over {SETTLE_RATE_WINDOWS * params.rate_window_s:.0f}s export "
            f"neither {series} (not a Triton, vLLM or NIM server, or not scraped), so the predictive algorithm cannot "
            "size this lease; "
            f"the HPA rule decides on its metrics ({', '.join(m.name for m in metrics) or 'none'}) instead. Annotate "
            f"{ANNOTATION_PREFIX}algorithm=hpa to choose that explicitly")


def unknown_slots_message(metrics: Sequence[EffectiveMetric]) -> str:
    """The ``PredictiveUnavailable`` Event's message for a predictive lease on vLLM pods whose slots nobody states."""
    return ("the pods serve with vLLM, which runs many requests at once but does not report how many (NIM reports "
            "num_request_max), neither the lease's slots-per-replica annotation nor the policy's "
            "predictive.slotsPerReplica says it, and no pod has yet had a tenth of its KV cache in use (the "
            "controller estimates it then from the requests the cache holds) or requests waiting for a slot long "
            "enough to show the batch it runs (it learns it then), so the predictive algorithm cannot size this "
            f"lease; the HPA rule decides on its metrics ({', '.join(m.name for m in metrics) or 'none'}) until then. "
            "Annotate "
            f"{ANNOTATION_PREFIX}slots-per-replica=<the batch it runs: --max-num-seqs, or fewer when its KV cache "
            "fills first; autoscaler doctor reads it from the pods>, or pass --max-num-seqs in the container's args "
            "(the controller reads it), to size it by its request rate")


def learned_slots_message(learned: int, before: int | None, pods: int, reported: int | None,
                          limit: int | None = None) -> str:
    """The ``SlotsLearned`` Event's message: the slots a vLLM lease is sized with, from its saturated pods."""
    was = f" (was {before})" if before else ""
    most = slot_limit(reported, limit)
    why = (f"fewer than the {most[0]} {LIMIT_WORDS[most[1]]}: their KV cache fills first"
           if most and most[0] > learned else "vLLM does not report the batch it runs")
    return (f"sized on {learned} slots a replica{was}: the requests its pods ran at once while others kept waiting "
            f"for a slot (the median of {pods} pod(s)' mean batch); {why}; annotate "
            f"{ANNOTATION_PREFIX}slots-per-replica to state it instead")


def estimated_slots_message(fitted: int, before: int | None, pods: int, reported: int | None,
                            limit: int | None = None) -> str:
    """The ``SlotsEstimated`` Event's message: the slots a vLLM lease is sized with before any pod was saturated, from
    what its pods' KV cache holds."""
    was = f" (was {before})" if before else ""
    most = slot_limit(reported, limit)
    why = (f"fewer than the {most[0]} {LIMIT_WORDS[most[1]]}, so their KV cache fills first" if most
           else "vLLM does not report the batch it runs; this is more than a pod runs if --max-num-seqs binds first "
           "(pass it in the container's args: the controller reads it)")
    return (f"sized on {fitted} slots a replica{was}: the requests its pods' KV cache holds at the sizes of the "
            f"requests they run now (their running requests over the KV cache's use, the median of {pods} pod(s)); "
            f"{why}; "
            "the first time requests keep waiting for a slot, the batch the pods run then replaces it "
            f"(SlotsLearned); annotate {ANNOTATION_PREFIX}slots-per-replica to state it instead")


def _moved(slots: int, announced: int | None) -> bool:
    """Whether ``slots`` are new or moved by more than ``LEARNED_CHANGE`` from those ``announced`` in an Event."""
    return not announced or abs(slots - announced) > LEARNED_CHANGE * announced


def recurring_load_message(found: float | None, before: float | None, params: PredictiveParams) -> str:
    """The ``RecurringLoad`` Event's message: a period found, changed or gone (no figures that change every loop)."""
    history = f"the last {params.cycle_history_s / 3600:g} h of its load"
    if found is None:
        return (f"the load no longer recurs every {before:.0f}s ({history}): recurring bursts are no longer "
                "provisioned ahead")
    return (f"the load recurs every {found:.0f}s ({history}"
            + (f"; it was {before:.0f}s" if before is not None else "")
            + "): what it reached in each of the last two periods is provisioned a start-up delay ahead of its "
              "return, and a burst's capacity released a start-up delay after it")


def predictive_message(d: PredictiveDecision, params: PredictiveParams) -> str:
    """The predictive decision in a sentence (status annotation, Events, ``autoscaler leases``): the rate, the
    forecast, the capacity target, and what else drove the count. Missing details read as 0."""
    det = d.details
    served, demand = det.get("served_rps", 0.0), det.get("rate_rps", 0.0)
    now_part = f"{demand:.1f} req/s now" + (f" ({served:.1f} served, the rest queued)" if demand > served + 0.05 else "")
    message = (f"predictive: {now_part}, {det.get('forecast_rps', 0):.1f} req/s "
               f"expected in {det.get('horizon_s', 0):.0f}s, {1000 * det.get('service_s', 0):.0f} ms per request"
               + (f" on {det['slots']:.0f} slots a replica" if det.get("slots", 1) > 1 else "")
               + f", {det.get('capacity_target', 0):.0f} replicas meet the queue-time SLO")
    if d.reason == PredictiveReason.BURST_ENVELOPE:
        message += (f"; held for the burst window's peak load, {det.get('envelope_busy_slots', 0):.1f} requests "
                    "in service")
        if det.get("envelope_window_s", params.burst_window_s) < params.burst_window_s:
            why = (f"the load recurs every {det.get('cycle_period_s', 0):.0f}s and came back this soon in neither of "
                   "the last two periods" if "envelope_cycle_quiet" in det else
                   f"the load fell and has not been seen to come back within {params.recurrence_memory_s:.0f}s: "
                   "a one-off")
            message += (f" of the last {det['envelope_window_s']:.0f}s ({why}, held for "
                        f"{params.one_off_hold_startups:g} start-up delay(s), not the whole window)")
        if "envelope_fall_rps_per_s" in det:
            message += (f" (past loads lowered along the falling trend, {60 * det['envelope_fall_rps_per_s']:.1f} "
                        "req/s a minute)")
    if d.reason == PredictiveReason.CYCLE:
        message += (f"; the load recurs every {det.get('cycle_period_s', 0):.0f}s, and in each of the last two "
                    f"periods it reached {det.get('cycle_forecast_rps', 0):.1f} req/s by this time of the period "
                    "plus the horizon: provisioned ahead of its return")
    if "reactive_floor" in det:
        message += f"; the queue time, over the SLO for a whole window, asks at least {det['reactive_floor']:.0f}"
    if "headroom" in det:
        message += ("; the queue time was over the SLO in many recent readings the model does not explain: "
                    f"demand x{det['headroom']:.2f} (calibration)")
    if d.reason == PredictiveReason.PARTIAL_DATA:
        message += "; " + partial_data_message(d, params)
    if d.reason == PredictiveReason.SPIKE_HOLD:
        message += (f"; arrivals come in spikes (roughness {det.get('roughness', 0):.2f}): not below "
                    f"{det.get('spike_floor', 0):.0f}, {params.spike_hold_fraction:g} x the largest target of the "
                    f"last {params.spike_hold_s:.0f}s")
    return message


class Controller:
    def __init__(self, api: KubeApi, settings: Settings, *, prometheus: PrometheusClient | None = None,
                 registry: MetricRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.settings = settings
        self.clock = clock
        fallback_path = settings.policy_file or str(DEFAULT_POLICY)
        self.policy = PolicyHolder(load_policy(fallback_path), fallback_path)
        self.registry = registry or default_registry()
        self._prom_owned = prometheus is None
        self.prometheus = prometheus or self._make_prometheus()
        self.telemetry = Telemetry()
        self.telemetry.watch_api_calls(lambda: dict(self.api.calls))
        self.telemetry.watch_leases(self._lease_series)
        self.events = EventRecorder(api, instance=settings.identity or "")
        self.deployments = WatchCache(api, deployments_path(), name="deployments", transform=slim_deployment)
        self.pods = WatchCache(api, pods_path(), name="pods", transform=slim_pod)
        self.configmaps = WatchCache(api, f"/api/v1/namespaces/{settings.namespace}/configmaps", name="configmap",
                                     field_selector=f"metadata.name={settings.configmap}")
        self.runtime: dict[tuple[str, str], LeaseRuntime] = {}
        self._specs: dict[tuple[str, str], _LeaseSpec] = {}
        self._behaviors: tuple[int, dict[Behavior, Behavior]] = (-1, {})  # policy version, interned behaviours
        self._pod_index: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        self._pod_gens: dict[str, int] = {}  # namespace -> bumped on every pod event there
        self._pod_cache: dict[tuple[str, str], tuple[str, Any, dict[str, str]]] = {}
        self.pods.add_handler(self._on_pod)
        self.configmaps.add_handler(self._on_configmap)
        self.elector: LeaderElector | None = None
        self.stop = asyncio.Event()
        self.last_report = TickReport()
        self.last_tick_at: float | None = None
        self._kinds: dict[tuple[Any, ...], MetricKind] = {}  # (policy version, name, query)
        self._query_failures: dict[str, tuple[str, float, float]] = {}  # kind -> (error, since, last logged)
        self._pparams: dict[tuple[Any, ...], PredictiveParams] = {}  # (policy version, queue-time target)
        self._pending_events: list[Awaitable[None]] = []
        self._seeds: set[asyncio.Future[None]] = set()  # recurring-load histories being read (background)
        self._seed_slots = asyncio.Semaphore(SEED_CONCURRENCY)
        self._query_at: float | None = None  # the tick's pinned PromQL time (tests, benchmarks)
        self._decisions: Counter[tuple[str, str]] = Counter()  # (reason, mode) -> decisions not yet counted
        self.conflicts = 0
        self.bound_port: int | None = None
        self.prom_objects = PrometheusObjects(api)  # per-lease PodMonitor/PrometheusRule (createObjects)

    # ------------------------------------------------------------------------------ set-up

    def _make_prometheus(self) -> PrometheusClient:
        p = self.policy.policy.autoscaling.prometheus
        return PrometheusClient(ClientSettings(
            url=self.settings.prometheus_url or p.url, timeout_s=p.timeout_s,
            bearer_token_file=p.bearer_token_file, ca_file=p.ca_file, insecure_skip_verify=p.insecure_skip_verify,
        ))  # query latency is recorded per kind from each BatchResult in the tick

    @property
    def interval_s(self) -> float:
        return self.settings.interval_s or self.policy.policy.autoscaling.loop_interval_s

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.elector is not None else True

    # ------------------------------------------------------------------------------ caches

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        key = obj_key(obj)
        self._pod_gens[key[0]] = self._pod_gens.get(key[0], 0) + 1
        old = self._pod_cache.pop(key, None)
        if old is not None:
            for k, v in old[2].items():
                self._pod_index.get((key[0], k, v), set()).discard(key)
        if kind == "DELETED":
            return
        md = obj.get("metadata") or {}
        labels = {str(k): str(v) for k, v in (md.get("labels") or {}).items()}
        self._pod_cache[key] = (str(md.get("resourceVersion") or ""), pod_from_k8s(obj), labels)
        for k, v in labels.items():
            self._pod_index.setdefault((key[0], k, v), set()).add(key)

    def pods_for(self, namespace: str, selector: Selector) -> list[Any]:
        """Pods matching a Deployment selector, via the label index (first equality requirement)."""
        eq = next((r for r in selector.requirements if r.op == "In" and len(r.values) == 1), None)
        if eq is not None:
            candidates: Iterable[tuple[str, str]] = self._pod_index.get((namespace, eq.key, next(iter(eq.values))), ())
        else:
            candidates = [k for k in self._pod_cache if k[0] == namespace]
        out = []
        for key in sorted(candidates):
            _, pod, labels = self._pod_cache[key]
            if selector.matches(labels):
                out.append(pod)
        return out

    def _on_configmap(self, kind: str, obj: dict[str, Any]) -> None:
        name = f"configmap/{self.settings.namespace}/{self.settings.configmap}"
        if kind == "DELETED":
            log.warning("policy ConfigMap %s deleted; keeping the last good policy", name)
            return
        text = (obj.get("data") or {}).get(self.settings.configmap_key)
        version, rejected = self.policy.version, self.policy.last_error is not None
        if text is None:
            err: PolicyError | None = PolicyError(name, [f"data has no key {self.settings.configmap_key!r}"])
            self.policy.last_error = str(err)
        else:
            err = self.policy.offer(text, f"{name} key {self.settings.configmap_key}")
        if err is None:
            self.telemetry.policy_reloads.labels("ok").inc()
            log.info("policy loaded from %s (version %d)", name, self.policy.version)
            # an edit, or a fix after a rejected one (not a re-list of the same text after a watch reconnects)
            if self.is_leader and (self.policy.version != version or rejected):
                self._pending_events.append(self.events.record(
                    obj, "Normal", "PolicyLoaded", f"policy version {self.policy.version} in use, from {name}",
                    self.clock(), kind="ConfigMap", api_version="v1"))
            return
        self.telemetry.policy_reloads.labels("rejected").inc()
        log.error("policy ConfigMap rejected, keeping the last good policy: %s", err)
        if self.is_leader:
            self._pending_events.append(self.events.record(
                obj, "Warning", "InvalidPolicy", f"{err}; keeping the last good policy ({self.policy.source})",
                self.clock(), kind="ConfigMap", api_version="v1"))

    # ------------------------------------------------------------------------------ leases

    def _spec(self, key: tuple[str, str], obj: dict[str, Any], policy: ClusterPolicy) -> _LeaseSpec:
        """The Deployment's resolved lease, selector and pods; recomputed only when one of them may differ."""
        version = self.policy.version
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        spec = self._specs.get(key)
        if spec is None or not rv or spec.rv != rv or spec.policy_version != version:
            ann = annotations_of(obj)
            user = tuple(sorted((k, v) for k, v in ann.items() if k.startswith(ANNOTATION_PREFIX)
                                and k not in CONTROLLER_ANNOTATIONS))
            gen = (obj.get("metadata") or {}).get("generation")
            # Our own status writes change the resourceVersion but not the lease annotations, nor the generation (the
            # spec, its pod template's --max-num-seqs among it): keep the resolution.
            if spec is not None and spec.user == user and spec.policy_version == version and spec.gen == gen:
                res = spec.resolution
            else:
                res = self._shared_behavior(resolve_lease(key[0], key[1], ann, policy, max_num_seqs(obj)))
            selector = Selector.from_label_selector((obj.get("spec") or {}).get("selector"))
            spec = self._specs[key] = _LeaseSpec(rv, version, user, res, selector, gen)
        return spec

    def _shared_behavior(self, res: Resolution) -> Resolution:
        """The resolution with its lease's Behavior replaced by an equal one shared by all leases of this policy
        version: the batch core groups leases by behaviour identity before equality, and hashing a Behavior
        per lease per loop is costly."""
        if res.lease is None:
            return res
        if self._behaviors[0] != self.policy.version:
            self._behaviors = (self.policy.version, {})
        shared = self._behaviors[1].setdefault(res.lease.behavior, res.lease.behavior)
        return res if shared is res.lease.behavior else replace(res, lease=replace(res.lease, behavior=shared))

    def _match_pods(self, key: tuple[str, str], spec: _LeaseSpec) -> None:
        """Refresh the spec's pods (and query target) if a pod of its namespace changed since they were matched."""
        gen = self._pod_gens.get(key[0], 0)
        if spec.pod_gen != gen:
            spec.pods = tuple(self.pods_for(key[0], spec.selector))
            spec.target = LeaseTarget.of(key[0], [p.name for p in spec.pods]) if spec.pods else None
            spec.pod_gen = gen

    def _per_policy(self, cache: dict[tuple[Any, ...], _T], key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        """``make()`` once per policy version and key; a reloaded policy empties ``cache``."""
        full = (self.policy.version, *key)
        value = cache.get(full)
        if value is None:
            if cache and next(iter(cache))[0] != self.policy.version:
                cache.clear()
            value = cache[full] = make()
        return value

    def _kind(self, name: str, query: str | None) -> MetricKind:
        """The metric kind for this policy version (a reloaded policy may change its options)."""
        return self._per_policy(self._kinds, (name, query),
                                lambda: kind_for(name, query, self.policy.policy.autoscaling, self.registry))

    def _lease_params(self, lease: LeasePolicy) -> PredictiveParams:
        """A predictive lease's parameters: the policy's, with its queue-time target."""
        return self._predictive_params(lease.queue_target_us(self.policy.policy))

    def _predictive_params(self, target_us: float) -> PredictiveParams:
        """The predictive parameters for this policy version and queue-time target (built once, shared)."""
        return self._per_policy(self._pparams, (target_us,),
                                lambda: self.policy.policy.autoscaling.predictive.to_params(target_us))

    # ------------------------------------------------------------------------------ the tick

    async def tick(self, now: float | None = None, query_at: float | None = None) -> TickReport:
        """One pass over every lease. Never raises for a single lease's problem.

        ``now`` is the decision time (default: the clock); ``query_at`` pins the PromQL evaluation time
        (default: Prometheus's now), for deterministic runs over backfilled data.
        """
        t0, c0 = time.perf_counter(), time.process_time()
        now = self.clock() if now is None else now
        self._query_at = query_at
        writes0 = self.api.writes
        report = TickReport()
        policy = self.policy.policy
        leader = self.is_leader
        self.telemetry.is_leader.set(1 if leader else 0)
        await self._flush_events()

        # Which Deployments are leases, and their pods (cached): no await here, the query should leave early.
        leases: list[tuple[dict[str, Any], LeasePolicy, _LeaseSpec]] = []
        issues: list[tuple[dict[str, Any], Resolution]] = []
        visited: set[tuple[str, str]] = set()
        seen: set[tuple[str, str]] = set()
        invalid_n = paused_n = 0
        enabled_key = ANNOTATION_PREFIX + "enabled"
        for key, obj in list(self.deployments.objects.items()):
            ann = (obj.get("metadata") or {}).get("annotations")
            if not ann or enabled_key not in ann:
                continue
            visited.add(key)
            spec = self._spec(key, obj, policy)
            res = spec.resolution
            if res.issues:
                issues.append((obj, res))
            if res.lease is None:
                if res.opted_in:
                    invalid_n += 1
                continue
            seen.add(key)
            if res.lease.paused:
                paused_n += 1
                continue
            self._match_pods(key, spec)
            leases.append((obj, res.lease, spec))
        for key in self._specs.keys() - visited:
            del self._specs[key]
        report.leases, report.invalid, report.paused = len(leases), invalid_n, paused_n

        # One query per metric kind in use, sent now; what needs no metric value is done while Prometheus works.
        batches: dict[tuple[str, str | None], list[LeaseTarget]] = {}
        for _obj, lease, spec in leases:
            if spec.target is None:
                continue
            for m in lease.metrics:
                batches.setdefault((m.name, m.query), []).append(spec.target)
            if lease.algorithm == "predictive":
                batches.setdefault(("requestStats", None), []).append(spec.target)
        kinds = {key: self._kind(*key) for key in batches}
        report.queries = len(batches)
        fetching = (asyncio.ensure_future(fetch_all(self.prometheus, [(kinds[k], v) for k, v in batches.items()],
                                                    at=query_at)) if batches else None)
        to_wake = {(lease.namespace, lease.name): lease.wake_query for _obj, lease, _spec in leases if lease.wake_query}
        waking = asyncio.ensure_future(read_wakes(self.prometheus, to_wake, query_at)) if to_wake else None
        try:
            if leader:
                await self._report_issues(issues, now)
            self._forget(set(self.runtime) - seen)
            if leader:  # per-lease Prometheus objects (policy prometheus.createObjects); writes only on change
                await self.prom_objects.sync([self.deployments.objects[k] for k in sorted(seen)],
                                             policy.autoscaling.prometheus)
            begun = await self._begin_all(leases, now, leader, report)
            by_name = await fetching if fetching is not None else {}
            wakes = await waking if waking is not None else {}
        except BaseException:
            for task in (fetching, waking):
                if task is not None:
                    task.cancel()  # a failed or cancelled tick must not leave its queries behind
            raise
        results: dict[str, BatchResult] = {}
        for (name, _), kind in kinds.items():
            r = by_name.get(kind.name)
            if r is not None:
                results[name] = r
                self.telemetry.query_seconds.labels(name).observe(r.latency_s)
                if r.error is not None:
                    self.telemetry.errors.labels("prometheus").inc()
                self._log_query_outcome(name, r, now)

        # Observe every lease, decide them all at once (vectorised core), then act with bounded concurrency.
        prepared: list[_Prepared] = []
        for obj, lease, pods, rt, state in begun:
            try:
                snap, observations = self._snapshot(obj, lease, pods, results, now)
            except Exception as exc:  # isolation: one lease's bad data must not stop the loop
                self._lease_failed(report, lease, "could not be observed", exc)
                continue
            self.runtime.setdefault((lease.namespace, lease.name), rt)  # a new lease shows once observed
            prepared.append(_Prepared(obj, lease, pods, rt, snap, observations, state))
        try:
            decisions = decide_many([p.snap for p in prepared], [p.state for p in prepared], now)
        except Exception:
            log.exception("batch decision failed; deciding lease by lease")
            decisions = [decide(p.snap, p.state, now) for p in prepared]
        await self._flush_events()
        # Most leases need no I/O this loop: finish them synchronously; only changes become tasks.
        # Jobs are made into coroutines only when they run: a tick cancelled while writing (shutdown) must not
        # leave never-awaited coroutines behind.
        # Scale writes go first: a loop where many leases write their status (a fresh fleet, a new policy) must not
        # hold a lease that has to scale behind thousands of annotation patches.
        scales: list[tuple[_Prepared, Callable[[], Awaitable[None]]]] = []
        jobs: list[tuple[_Prepared, Callable[[], Awaitable[None]]]] = []
        for p, d in zip(prepared, decisions, strict=True):
            try:
                override = None
                at_zero = bool(p.lease.wake_query) and p.snap.current_replicas == 0  # the idle layer decides alone
                if p.lease.algorithm == "predictive":
                    if not at_zero:  # no pods, nothing to size: its state (season, service time) is kept
                        override = self._predictive(p, results, now)
                elif p.rt.predictive is not None:
                    p.rt.leave_predictive()
                desired, reason, message = self._safety(p, d, override)
                if p.lease.wake_query:
                    desired, reason, message = self._idle(p, desired, reason, message,
                                                          wakes.get((p.lease.namespace, p.lease.name)), now, leader)
                if desired != p.snap.current_replicas and leader:
                    scales.append((p, partial(self._act_io, p, d, desired, reason, message, now, leader, report)))
                    continue
                new_state = d.state if desired == d.desired_replicas else state_without_event(d, p.state)
                if desired != p.snap.current_replicas:  # not the leader: nothing applied
                    new_state = state_without_event(d, p.state)
                changes = self._finish(p, d, new_state, desired, reason, message, False, now, leader, report)
                if changes:
                    jobs.append((p, partial(self._patch_annotations, p.lease, p.rt, changes)))
            except Exception as exc:  # isolation: a lease's bug must not stop the loop
                self._lease_failed(report, p.lease, "failed this loop", exc)
        sem = asyncio.Semaphore(self.settings.write_concurrency)

        async def one(p: _Prepared, job: Callable[[], Awaitable[None]]) -> None:
            async with sem:
                try:
                    await job()
                except Exception as exc:  # isolation: a lease's bug must not stop the loop
                    self._lease_failed(report, p.lease, "failed this loop", exc)

        jobs = scales + jobs
        if jobs:
            await asyncio.gather(*(one(p, job) for p, job in jobs))
        for (reason, mode), n in self._decisions.items():  # one counter update per label pair, not per lease
            self.telemetry.decisions.labels(reason, mode).inc(n)
        self._decisions.clear()
        self.telemetry.leases.labels("active").set(len(leases))
        self.telemetry.leases.labels("invalid").set(invalid_n)
        self.telemetry.leases.labels("paused").set(paused_n)
        report.api_writes = self.api.writes - writes0
        report.wall_s = time.perf_counter() - t0
        report.cpu_s = time.process_time() - c0
        self.telemetry.loop_seconds.observe(report.wall_s)
        self.telemetry.loop_cpu_seconds.set(report.cpu_s)
        self.telemetry.last_tick.set(now)
        self.last_report = report
        self.last_tick_at = time.monotonic()
        return report

    async def _flush_events(self) -> None:
        pending, self._pending_events = self._pending_events, []
        for coro in pending:
            await coro

    def _forget(self, gone: set[tuple[str, str]]) -> None:
        for key in gone:
            self.runtime.pop(key, None)

    def _lease_series(self) -> list[LeaseSeries]:
        """Every decided lease's series for /metrics, from its last decision (called at each scrape)."""
        out = []
        for (ns, name), rt in self.runtime.items():
            e = rt.last
            if e:
                out.append(LeaseSeries(ns, name, e["mode"], e["current"], e["desired"],
                                       tuple((m["name"], m["value"], m["target"]) for m in e["metrics"]),
                                       None if rt.predictive is None else rt.predictive.cycle_period_s or 0.0,
                                       rt.rates, rt.slots, rt.zero))
        return out

    def _lease_failed(self, report: TickReport, lease: LeasePolicy, what: str, exc: Exception) -> None:
        """Per-lease isolation: count, log and go on with the other leases."""
        report.errors += 1
        self.telemetry.errors.labels("lease").inc()
        log.exception("lease %s/%s %s: %s", lease.namespace, lease.name, what, exc)

    async def _report_issues(self, issues: list[tuple[dict[str, Any], Resolution]], now: float) -> None:
        """Warning Events for leases whose annotations were adjusted or rejected (deduplicated by the recorder)."""
        for obj, res in issues:
            for issue in res.issues:
                if not issue.key.startswith(ANNOTATION_PREFIX):
                    reason = "AutoscalingDisabled"
                elif issue.severity == Severity.INVALID:
                    reason = "InvalidAnnotation"
                else:
                    reason = "AnnotationAdjusted"
                await self.events.record(obj, "Warning", reason, issue.message, now)

    def _snapshot(self, obj: dict[str, Any], lease: LeasePolicy, pods: Sequence[Pod],
                  results: dict[str, BatchResult], now: float) -> tuple[Snapshot, list[MetricObservation]]:
        inputs, observations = [], []
        window = self.policy.policy.autoscaling.prometheus.rate_window_s
        for m in lease.metrics:
            mi, ob = metric_input(m, lease.namespace, pods, results.get(m.name) if pods else None, now, window)
            if not pods:
                mi = replace(mi, error=None)
            inputs.append(mi)
            observations.append(ob)
        snap = Snapshot(now=now, current_replicas=_spec_replicas(obj),
                        status_replicas=int((obj.get("status") or {}).get("replicas") or 0),
                        min_replicas=lease.floor, max_replicas=lease.max_replicas, behavior=lease.behavior,
                        pods=tuple(pods), metrics=tuple(inputs))
        return snap, observations

    def _state_for(self, rt: LeaseRuntime, obj: dict[str, Any], current: int, now: float) -> DecisionState:
        if rt.state is not None:
            return rt.state
        persisted = parse(annotations_of(obj).get(STATE_ANNOTATION))
        if persisted is None:
            return DecisionState()
        rt.persisted = persisted
        rt.restored = True
        return restore(persisted, current, now, self.settings.state_granularity_s)

    def _log_query_outcome(self, name: str, result: BatchResult, now: float) -> None:
        """A metric kind's query failing, in one warning line, again only when its error changes or after a minute,
        and its recovery: an outage must show in the log, not only in the leases' status and Events."""
        failing = self._query_failures.get(name)
        if result.error is None:
            if failing is not None:
                log.info("%s query works again (it failed from %s)", name, rfc3339(failing[1]))
                del self._query_failures[name]
            return
        message = result.error.message
        if failing is None or failing[0] != message or now - failing[2] >= RELOG_S:
            log.warning("%s query failed: %s; no lease is scaled down on it while it fails", name, message)
            self._query_failures[name] = (message, failing[1] if failing else now, now)

    async def _begin_all(self, leases: list[tuple[dict[str, Any], LeasePolicy, _LeaseSpec]], now: float,
                         leader: bool, report: TickReport) -> list[_Begun]:
        """`_begin` for every lease, yielding to the event loop now and then so the query task can send its
        request and read the answer meanwhile."""
        begun: list[_Begun] = []
        for i, (obj, lease, spec) in enumerate(leases):
            if i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            try:
                rt, state = self._begin(obj, lease, now, leader)
            except Exception as exc:  # isolation: one lease's bad data must not stop the loop
                self._lease_failed(report, lease, "could not be observed", exc)
                continue
            begun.append((obj, lease, spec.pods, rt, state))
        return begun

    def _begin(self, obj: dict[str, Any], lease: LeasePolicy, now: float,
               leader: bool) -> tuple[LeaseRuntime, DecisionState]:
        """A lease's bookkeeping that needs no metric value: its runtime, and the state to decide from."""
        rt = self.runtime.get((lease.namespace, lease.name))
        if rt is None:  # registered in `runtime` by the tick once the lease is observed
            rt = LeaseRuntime(history=deque(maxlen=self.settings.history))
        current = _spec_replicas(obj)
        state = self._state_for(rt, obj, current, now)
        # A human changed the replica count (not us): take it as the new current value and hold it for the
        # scale-down window instead of fighting back at once.
        if rt.last_seen_replicas is not None and current != rt.last_seen_replicas and current != rt.last_written_replicas:
            state = DecisionState((*(state.recommendations or ()), Recommendation(now, current)), state.scale_events)
            rt.outside_changes = [t for t in rt.outside_changes if t > now - FIGHT_WINDOW_S] + [now]
            if lease.wake_query:  # a human's scale counts as demand: a model warmed by hand gets a whole idle period
                rt.idle = IdleState(now)
            if leader:
                self._pending_events.append(self.events.record(
                    obj, "Normal", "ManualScaleDetected",
                    f"replicas changed from {rt.last_seen_replicas} to {current} outside the autoscaler; "
                    "taking it as the current count", now))
                if len(rt.outside_changes) >= FIGHT_CHANGES:
                    self._pending_events.append(self.events.record(
                        obj, "Warning", "ReplicasFought",
                        f"replicas changed outside the autoscaler {len(rt.outside_changes)} times in "
                        f"{FIGHT_WINDOW_S / 60:.0f} minutes: another writer (a HorizontalPodAutoscaler, KEDA, a GitOps "
                        "sync of spec.replicas) seems to scale this Deployment too; remove it or set "
                        f"{ANNOTATION_PREFIX}paused=true (`autoscaler doctor` lists HPAs on leases and manifests "
                        f"applied with spec.replicas; `kubectl get deployment {lease.name} --show-managed-fields "
                        "-o yaml` shows which manager owns spec.replicas)", now))
        rt.last_seen_replicas = current
        return rt, state

    def _predictive(self, p: _Prepared, results: dict[str, BatchResult], now: float) -> tuple[int, str, str] | None:
        """The predictive algorithm's decision, or None without request data (the HPA core decides then)."""
        settings = self.policy.policy.autoscaling.predictive
        lease, snap = p.lease, p.snap
        pods = list(snap.pods)
        params = self._lease_params(lease)
        stats = results.get("requestStats")
        parts = lease_parts(lease.namespace, pods, stats)
        slots = self._slots(p, parts, now)
        if slots is None:  # vLLM runs many at once and does not say how many: one would be far off
            self._pending_events.append(self.events.record(p.obj, "Normal", "PredictiveUnavailable",
                                                           unknown_slots_message(lease.metrics), now))
            return None
        obs = predictive_observation(
            lease.namespace, pods, stats, now, snap.current_replicas, lease.floor,
            lease.max_replicas, slots,
            measured_startup_s(pods, settings.startup_s), params.drain_s, rate_window_s=params.rate_window_s,
            stagger=lease_stagger(lease.namespace, lease.name), pod_parts=parts)
        state = self._predictive_state(p, params)
        period = state.cycle_period_s
        if p.rt.cycle_seed is not None and state.cycle_end is not None:
            state, p.rt.cycle_seed = seed_cycle(state, p.rt.cycle_seed, params), None
        if p.rt.season_seed is not None and state.season_bucket_end is not None:
            state, p.rt.season_seed = seed_season(state, p.rt.season_seed, params), None
        d = decide_predictive(obs, state, params)
        p.rt.predictive, p.rt.predictive_params = d.state, params
        p.rt.rates = (d.details.get("rate_rps", math.nan), d.details.get("forecast_rps", math.nan))
        found = d.state.cycle_period_s
        if found != period and (found is None or period is None or abs(found - period) > params.cycle_bucket_s):
            self._pending_events.append(self.events.record(p.obj, "Normal", "RecurringLoad",
                                                           recurring_load_message(found, period, params), now))
        if p.rt.history_due:
            p.rt.history_due = False
            self._read_history(lease, p.rt, params, season=not d.state.season_fit)
        if d.reason == PredictiveReason.MISSING_DATA:
            if obs.request_rate_rps is None and obs.unmeasured_ready > 0:
                self._pending_events.append(self.events.record(
                    p.obj, "Normal", "PredictiveUnavailable", no_request_data_message(
                        obs.unmeasured_ready, self._kind("requestStats", None), params, lease.metrics), now))
            return None
        message = predictive_message(d, params)
        if d.reason == PredictiveReason.PARTIAL_DATA:
            self._pending_events.append(self.events.record(p.obj, "Warning", "PartialRequestData",
                                                           partial_data_message(d, params), now))
        return d.desired_replicas, str(d.reason), message

    def _slots(self, p: _Prepared, parts: dict[str, Mapping[str, float]], now: float) -> int | None:
        """The slots per replica a predictive lease is sized with (None: unknown, a vLLM lease nobody sized), from its
        pods' request statistics (``parts``, :func:`lease_parts`): learning the batches its saturated pods run, with a
        SlotsLearned Event when the learnt figure is new or moves, and, once a runtime, reading back what a previous
        controller saw; and, until then, what their KV cache holds at their requests' sizes, with a SlotsEstimated
        Event likewise."""
        lease, rt = p.lease, p.rt
        live = [q.name for q in p.snap.pods if not q.deleting]
        rt.batches = note_batches(rt.batches, part_by_pod(parts, "batch"), now, live)
        rt.fits = note_batches(rt.fits, part_by_pod(parts, "kv_fit"), now, live)
        learned, fitted = learned_batch(rt.batches), learned_batch(rt.fits)
        reported, vllm = reported_slots(parts.values())
        limit = lease.max_num_seqs
        slots, source = resolve_slots(lease.slots_per_replica, reported, vllm,
                                      self.policy.policy.autoscaling.predictive, learned, fitted, limit)
        rt.slots = None if slots is None else (slots, source)
        if slots is not None:
            before = rt.learned_slots if source == "learnt" else rt.estimated_slots
            news = rt.slots_news(slots, source, learned)
            if news is not None:
                message = (learned_slots_message(slots, before, len(rt.batches), reported, limit)
                           if news == "SlotsLearned" else estimated_slots_message(slots, before, len(rt.fits), reported,
                                                                                   limit))
                self._pending_events.append(self.events.record(p.obj, "Normal", news, message, now))
        if learned is None and not lease.slots_per_replica and (vllm or reported) and not rt.batch_history:
            rt.batch_history = True  # once a runtime: what a previous controller saw saturated, if anything
            self._read_batches(lease, rt)
        return slots

    def _predictive_state(self, p: _Prepared, params: PredictiveParams) -> PredictiveState:
        """The lease's predictive state: in memory, else its season restored from its annotation (after a
        restart), else empty. Either way a fresh state holds scale-downs until it has a burst window."""
        if p.rt.predictive is not None:
            return p.rt.predictive
        p.rt.history_due = params.cycle_correlation > 0 or params.seasonal
        persisted = parse_predictive(annotations_of(p.obj).get(PREDICTIVE_STATE_ANNOTATION))
        if persisted is None:
            return PredictiveState()
        p.rt.predictive_persisted = persisted
        return restore_predictive(persisted, params)

    def _read_history(self, lease: LeasePolicy, rt: LeaseRuntime, params: PredictiveParams, season: bool) -> None:
        """Read a new predictive state's history from Prometheus in the background, for the lease's next decision:
        its load over ``cycleHistorySeconds`` (the largest per cycle bucket), so that a period the lease already has
        is known at once after a restart, a failover or when the lease is first seen, instead of two periods later;
        and, with ``season`` (no daily shape of its own, none persisted), its mean request rate per season bucket
        over ``seasonHistoryPeriods`` periods, so that a lease the controller has not seen before has its daily shape
        at once instead of after a day."""
        kind = self._kind("requestStats", None)
        if not isinstance(kind, RequestStats):
            return
        reads: list[_SeedRead] = []
        if params.cycle_correlation > 0:
            b = params.cycle_bucket_s

            def take_cycle(res: InstantVector, b: float = b) -> None:
                rt.cycle_seed = kind.bucket_rows(res.samples, b)
            reads.append(("cycle history", kind.load_history(lease.namespace, lease.name, params.cycle_history_s, b),
                          True, take_cycle))
        if season and params.seasonal:
            b = params.season_bucket_s
            span = params.season_period_s * params.season_history_periods

            def take_season(res: InstantVector, b: float = b) -> None:
                rt.season_seed = kind.bucket_rows(res.samples, b)
            reads.append(("season history", kind.rate_history(lease.namespace, lease.name, span, b), True,
                          take_season))
        self._seed(lease, reads)

    def _read_batches(self, lease: LeasePolicy, rt: LeaseRuntime) -> None:
        """Read in the background the batches the lease's pods ran while requests waited over the last
        ``BATCH_HISTORY_S`` (:meth:`RequestStats.batch_history`), so that a vLLM lease saturated before a restart
        or a failover has its slots at once, not at its next saturation."""
        kind = self._kind("requestStats", None)
        promql = kind.batch_history(lease.namespace, lease.name, BATCH_HISTORY_S) if isinstance(kind, RequestStats) \
            else ""

        def take(res: InstantVector) -> None:
            seen = {pod: s.value for s in res.samples
                    if (pod := s.labels.get("pod")) and math.isfinite(s.value) and s.value >= 1}
            rt.batches = note_batches(rt.batches, seen, time.time())
        if promql:
            self._seed(lease, [("saturated batches", promql, False, take)])

    def _read_idle(self, lease: LeasePolicy, rt: LeaseRuntime, first_seen: float, created: float) -> None:
        """Read in the background how long a lease first seen with replicas and no demand has been idle: its wake
        query over the last idle period, at its scrape-like steps, as the controller would have read it (a
        restarted controller otherwise waits a whole idle period again). Kept only when the query answered at
        nearly every step of the period (else Prometheus lacks the history: the period starts now), and only while
        no demand has been seen since (``rt.idle`` still starts at ``first_seen``); never from before the
        Deployment was ``created`` (a new model gets a whole idle period, whatever its query said before)."""
        if not lease.wake_query:
            return
        history = idle_history(lease.wake_query, lease.idle_s,
                               self.policy.policy.autoscaling.scale_to_zero.wake_threshold)
        covered = [False]

        def take_coverage(res: InstantVector) -> None:
            covered[0] = history.covered(res)

        def take_since(res: InstantVector) -> None:
            if covered[0] and rt.idle.active_at == first_seen:
                idle_for = min(history.idle_for(res), max(0.0, first_seen - created))
                rt.idle = replace(rt.idle, active_at=first_seen - idle_for)
        self._seed(lease, [("idle history (coverage)", history.coverage, False, take_coverage),
                           ("idle history", history.since, False, take_since)])

    def _seed(self, lease: LeasePolicy, reads: list[_SeedRead]) -> None:
        """Run a lease's history ``reads`` (what, PromQL, matrix answer, what to do with it) one after the other in
        the background, at most ``SEED_CONCURRENCY`` queries at a time over all leases; a failed one is logged and
        only means learning from now on."""
        if not reads:
            return
        at, key = self._query_at, f"{lease.namespace}/{lease.name}"

        async def read() -> None:
            for what, promql, matrix, take in reads:
                async with self._seed_slots:
                    res = await self.prometheus.query(promql, at=at, matrix=matrix)
                if isinstance(res, QueryError):
                    log.info("%s of %s not read from Prometheus (%s): learnt from now on", what, key, res.message)
                    continue
                take(res)
                log.debug("%s of %s: %d series points from Prometheus", what, key, len(res.samples))

        task = asyncio.ensure_future(read())
        self._seeds.add(task)
        task.add_done_callback(self._seeds.discard)

    async def histories_read(self) -> None:
        """Wait for the recurring-load histories being read (tests and benchmarks that drive ``tick`` themselves)."""
        while self._seeds:
            await asyncio.gather(*list(self._seeds), return_exceptions=True)

    def _safety(self, p: _Prepared, decision: Decision,
                override: tuple[int, str, str] | None = None) -> tuple[int, str, str]:
        """The controller's safety rules on top of the core's decision: (desired, reason, message)."""
        lease, pods, rt, snap = p.lease, p.pods, p.rt, p.snap
        current = snap.current_replicas
        desired, reason, message = override or (decision.desired_replicas, decision.reason, decision.message)
        all_failed = bool(snap.metrics) and all(m.error is not None for m in decision.metrics)
        rt.failures = rt.failures + 1 if all_failed else 0
        fb = self.policy.policy.autoscaling.fallback
        if all_failed and rt.failures >= fb.failure_threshold and fb.action == "replicas" and fb.replicas is not None:
            target = min(max(fb.replicas, lease.floor), lease.max_replicas)
            if target > current:  # a fallback may raise capacity, never cut it while blind
                desired, reason = target, "FallbackReplicas"
                message = f"{rt.failures} consecutive loops without metrics; fallback to {target} replicas"
        if desired < current:
            imputed = [o for o in p.observations if o.imputed]
            if imputed:
                desired, reason = current, "MissingMetrics"
                message = "not scaling down while metrics are missing for some pods: " + "; ".join(
                    f"{o.name}: {dict(o.missing)}" for o in imputed)
        if not pods and desired < current:
            desired, reason, message = current, "NoPods", "no pods match the Deployment's selector"
        return desired, reason, message

    def _idle(self, p: _Prepared, desired: int, reason: str, message: str, wake: Wake | None,
              now: float, leader: bool) -> tuple[int, str, str]:
        """Scale to zero and back on top of the algorithm's decision (:mod:`autoscaler.policy.idle`)."""
        stz = self.policy.policy.autoscaling.scale_to_zero
        value, why, failed = wake or Wake(None, "not queried")
        if failed:
            self.telemetry.errors.labels("prometheus").inc()
        first = p.rt.idle.active_at is None
        if first and p.snap.current_replicas > 0 and value is not None and value <= stz.wake_threshold:
            created = parse_time((p.obj.get("metadata") or {}).get("creationTimestamp"))
            self._read_idle(p.lease, p.rt, now, now if created is None else created)  # a restart: idle since when?
        need, sized_by = None, ""
        if (p.lease.wake_auto and value is not None and value > stz.wake_threshold
                and (p.snap.current_replicas <= 0 or p.rt.idle.waking)):
            need, sized_by = self._wake_need(p, value)
        d = decide_idle(p.snap.current_replicas, desired, value, now, p.rt.idle, idle_s=p.lease.idle_s,
                        threshold=stz.wake_threshold, wake_replicas=p.lease.wake_replicas,
                        wake_target=p.lease.wake_target, max_replicas=p.lease.max_replicas,
                        ready=sum(1 for pod in p.snap.pods if pod.ready and not pod.deleting),
                        blind=p.rt.failures > 0 or any(o.imputed or o.error for o in p.observations),
                        wake_need=need)
        p.rt.idle, p.rt.zero = d.state, (math.nan if value is None else value, d.idle_for_s)
        if value is None and leader:
            self._pending_events.append(self.events.record(
                p.obj, "Warning", "WakeSignalMissing",
                f"scale to zero: no wake value ({why}); {'staying at zero' if d.desired == 0 else 'not idling'} "
                f"until there is one. Query: {p.lease.wake_query}", now))
        if d.reason is None:
            return d.desired, reason, message
        return d.desired, d.reason.value, idle_message(d, value, p.lease.idle_s, stz.wake_threshold,
                                                       p.lease.wake_target, sized_by)

    def _wake_need(self, p: _Prepared, rate: float) -> tuple[int | None, str]:
        """``wake-target: auto`` (:func:`sized_wake`): from the lease's last service time (in memory, else its
        persisted state) and its slots (as last sized, else its annotation or its pod template's --max-num-seqs)."""
        params = self._lease_params(p.lease)
        state = p.rt.predictive if p.rt.predictive is not None else self._predictive_state(p, params)
        slots = p.rt.slots[0] if p.rt.slots else (p.lease.slots_per_replica or p.lease.max_num_seqs)
        return sized_wake(rate, state, slots, params, p.lease.max_replicas)

    def _finish(self, p: _Prepared, decision: Decision, new_state: DecisionState, desired: int, reason: str,
                message: str, applied: bool, now: float, leader: bool, report: TickReport) -> dict[str, str | None]:
        """Keep the new state, record the decision; return the annotation changes to write (leader only)."""
        p.rt.state = compact_state(new_state)  # same decisions, flat per-loop cost once the windows fill
        report.decided += 1
        failed = [f"{ob.name}: {res.error or ob.error}" for ob, res in zip(p.observations, decision.metrics, strict=False)
                  if res.error or ob.error]
        if failed and leader:  # as the HPA's FailedGetPodsMetric, once per failing metric set (deduplicated)
            self._pending_events.append(self.events.record(
                p.obj, "Warning", "FailedGetMetrics", "unable to get metrics: " + "; ".join(failed), now))
        self._decisions[(reason, p.lease.mode.value)] += 1
        self._record(p.rt, p.lease, p.obj, p.snap, decision, p.observations, desired, reason, message, applied, now)
        return self._annotation_changes(p.obj, p.lease, p.rt, now) if leader else {}

    async def _act_io(self, p: _Prepared, decision: Decision, desired: int, reason: str, message: str, now: float,
                      leader: bool, report: TickReport) -> None:
        """A lease whose replica count should change: patch (enforce) or report (shadow / dry run)."""
        obj, lease, snap, state = p.obj, p.lease, p.snap, p.state
        current = snap.current_replicas
        new_state = decision.state if desired == decision.desired_replicas else state_without_event(decision, state)
        applied = False
        if lease.mode == Mode.ENFORCE and not self.settings.dry_run:
            applied, desired, reason, message, new_state = await self._rescale(
                obj, lease, current, desired, reason, message, new_state, now)
            if not applied:  # a failed patch scaled nothing: its scale event must not rate-limit later ones
                new_state = DecisionState(new_state.recommendations, state.scale_events)
            report.rescales += int(applied)
        else:
            what = "shadow mode" if lease.mode == Mode.SHADOW else "dry run"
            await self.events.record(obj, "Normal", "ShadowRescale",
                                     f"{what}: would scale from {current} to {desired}; reason: {reason}", now)
        if desired != current and not applied:
            new_state = state_without_event(decision, state)
        changes = self._finish(p, decision, new_state, desired, reason, message, applied, now, leader, report)
        if changes:
            await self._patch_annotations(lease, p.rt, changes)

    async def _rescale(self, obj: dict[str, Any], lease: LeasePolicy, current: int, desired: int, reason: str,
                       message: str, new_state: DecisionState, now: float) -> tuple[bool, int, str, str, DecisionState]:
        ns, name = lease.namespace, lease.name
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        for attempt in range(2):
            try:
                await patch_scale(self.api, ns, name, desired, rv)
            except KubeError as exc:
                if exc.conflict and attempt == 0:
                    self.conflicts += 1
                    self.telemetry.errors.labels("conflict").inc()
                    # Someone changed the Deployment since we looked: re-read, never overwrite.
                    try:
                        fresh = await self.api.get(deployment_path(ns, name))
                    except KubeError as exc2:
                        exc = exc2
                    else:
                        self.deployments.apply("MODIFIED", fresh)
                        rv = str((fresh.get("metadata") or {}).get("resourceVersion") or "")
                        new_current = _spec_replicas(fresh)
                        if new_current != current:
                            # The count itself changed: the next loop decides from it with every layer (the
                            # algorithm, the safety rules, scale to zero) and takes it as a human's change.
                            return False, new_current, "ScaleConflict", (
                                f"replicas changed from {current} to {new_current} while deciding (409 Conflict); "
                                f"not writing {desired}, deciding again next loop"), new_state
                        continue  # only the resourceVersion moved (annotations, status): same decision, fresh rv
                self.telemetry.errors.labels("rescale").inc()
                await self.events.record(obj, "Warning", "FailedRescale",
                                         f"New size: {desired}; reason: {reason}; error: {exc}", now)
                return False, current, "FailedRescale", str(exc), new_state
            rt = self.runtime[(ns, name)]
            rt.last_written_replicas = desired
            rt.last_seen_replicas = desired
            rt.last_scale_time = now
            self.telemetry.rescales.labels("up" if desired > current else "down").inc()
            log.info("rescaled %s/%s from %d to %d: %s (%s)", ns, name, current, desired, reason, message)
            await self.events.record(obj, "Normal", "SuccessfulRescale",
                                     f"New size: {desired}; reason: {message}", now)
            return True, desired, reason, message, new_state
        return False, current, reason, message, new_state

    def _record(self, rt: LeaseRuntime, lease: LeasePolicy, obj: dict[str, Any], snap: Snapshot, decision: Decision,
                observations: list[MetricObservation], desired: int, reason: str, message: str, applied: bool,
                now: float) -> None:
        metrics = [{"name": ob.name, "value": None if ob.value is None else round(ob.value, 3), "target": ob.target,
                    "unit": ob.unit, "proposed": res.proposed_replicas, "utilization": res.utilization,
                    "error": res.error or ob.error, "missing": dict(ob.missing) if ob.missing else None}
                   for ob, res in zip(observations, decision.metrics, strict=False)]
        ready = sum(1 for p in snap.pods if p.ready and not p.deleting)
        # The core's limit applies only to its own decision: a predictive lease's or a safety rule's count names
        # its limit in its reason, if it has one.
        if (desired, reason) == (decision.desired_replicas, decision.reason):
            limited_by = decision.limited_by
        else:
            limited_by = reason if reason in _LIMIT_REASONS else ""
        entry = {
            "time": now, "current": snap.current_replicas, "ready": ready, "desired": desired, "reason": reason,
            "message": message, "mode": lease.mode.value, "applied": applied, "metrics": metrics,
            "metricReplicas": decision.metric_replicas, "stabilizedReplicas": decision.stabilized_replicas,
            "limitedBy": limited_by or None, "min": lease.min_replicas, "max": lease.max_replicas,
            "slots": {"perReplica": rt.slots[0], "source": rt.slots[1]}
            if rt.slots is not None and lease.algorithm == "predictive" else None,
        }
        prev = rt.last
        rt.last = entry
        if not prev or (prev["desired"], prev["reason"], prev["current"]) != (desired, reason, snap.current_replicas):
            rt.history.append({k: entry[k] for k in ("time", "current", "desired", "reason", "message", "applied")})

    def _annotation_changes(self, obj: dict[str, Any], lease: LeasePolicy, rt: LeaseRuntime,
                            now: float) -> dict[str, str | None]:
        """Status and state annotations that need writing: only on change, status at most every N seconds."""
        e = rt.last
        changes: dict[str, str | None] = {}
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        full = _status_key(e)
        head = full[0]
        current_ann = ann.get(STATUS_ANNOTATION)
        if not rt.status_key and current_ann is not None:
            # first sight (a restart, a failover): what the annotation already says counts as written, so a new
            # leader rewrites only the statuses that changed instead of every lease's at once
            rt.status_key, rt.status_written_at = _written_status(current_ann)
        if full != rt.status_key or current_ann is None:
            urgent = not rt.status_key or rt.status_key[0] != head or current_ann is None
            if urgent or now - rt.status_written_at >= self.settings.status_min_interval_s:
                status = {
                    "current": e["current"], "ready": e["ready"], "desired": e["desired"], "mode": e["mode"],
                    "reason": e["reason"], "message": e["message"], "min": e["min"], "max": e["max"],
                    "metrics": [{"name": m["name"], "value": _sig(m["value"]), "target": m["target"],
                                 "unit": m["unit"], "proposed": m["proposed"],
                                 **({"error": m["error"]} if m["error"] else {})} for m in e["metrics"]],
                    "limitedBy": e["limitedBy"],
                    **({"slots": e["slots"]} if e["slots"] else {}),
                    "lastScaleTime": rfc3339(rt.last_scale_time) if rt.last_scale_time else None,
                    "recent": list(rt.history)[-5:],
                    "updated": rfc3339(now),
                }
                changes[STATUS_ANNOTATION] = compact_json(status)
                rt.status_key = full
                rt.status_written_at = now
        if rt.state is not None:
            sig = significant(rt.state, e["current"] if not e["applied"] else e["desired"], lease.behavior, now)
            if needs_write(sig, rt.persisted, self.settings.state_granularity_s):
                if sig.recommendations or sig.events:
                    changes[STATE_ANNOTATION] = sig.to_annotation()
                elif STATE_ANNOTATION in ann:
                    changes[STATE_ANNOTATION] = None
                rt.persisted = sig
        if lease.algorithm == "predictive" and rt.predictive is not None and rt.predictive_params is not None:
            psig = predictive_significant(rt.predictive, rt.predictive_params)
            if psig is not None and predictive_needs_write(psig, rt.predictive_persisted):
                changes[PREDICTIVE_STATE_ANNOTATION] = psig.to_annotation()
                rt.predictive_persisted = psig
        elif lease.algorithm != "predictive" and PREDICTIVE_STATE_ANNOTATION in ann:
            changes[PREDICTIVE_STATE_ANNOTATION] = None  # the lease left the predictive algorithm
        return changes

    async def _patch_annotations(self, lease: LeasePolicy, rt: LeaseRuntime, changes: dict[str, str | None]) -> None:
        try:
            fresh = await patch_annotations(self.api, lease.namespace, lease.name, changes)
            self.deployments.apply("MODIFIED", fresh)
        except KubeError as exc:
            rt.status_key = ()  # try again next loop
            self.telemetry.errors.labels("annotation").inc()
            log.warning("could not write status of %s/%s: %s", lease.namespace, lease.name, exc)

    # ------------------------------------------------------------------------------ run

    def lease_view(self) -> list[dict[str, Any]]:
        out = []
        for (ns, name), rt in sorted(self.runtime.items()):
            out.append({"namespace": ns, "name": name, **rt.last, "history": list(rt.history)})
        return out

    def healthy(self) -> tuple[bool, str]:
        if self.last_tick_at is None:
            return True, "starting"
        age = time.monotonic() - self.last_tick_at
        limit = max(60.0, 10 * self.interval_s)
        if age > limit and (self.elector is None or self.elector.is_leader):
            return False, f"last loop {age:.0f}s ago"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        for c in (self.deployments, self.pods, self.configmaps):
            if not c.synced.is_set():
                return False, f"cache {c.name} not synced"
        return True, "ok"

    @staticmethod
    def tune_gc() -> None:
        """Move what is alive now (the synced caches) out of the collector's way, and collect less often.

        With 10,000 Deployments and their pods cached, a full collection walks millions of objects and
        takes hundreds of milliseconds; CPython then runs one every few loops. Frozen objects are never
        scanned again; objects created later are collected as usual.

        The first threshold counts container objects allocated and not yet freed. A loop over 10,000 leases
        holds ~300,000 of them at its peak (the PromQL answer, snapshots, decisions), nearly all freed by
        reference counting when it ends: with the default 700 (or 50,000), young collections ran several
        times per loop, scanning those live objects for nothing (~0.1 s per loop).
        """
        gc.collect()
        gc.freeze()
        gc.set_threshold(500_000, 20, 20)

    async def _caches_synced(self) -> None:
        for cache in (self.deployments, self.pods, self.configmaps):
            await cache.synced.wait()

    async def run_loop(self) -> None:
        # the caches, or a stop before they sync (no API server yet): then there is no tick to finish
        synced, stopping = asyncio.ensure_future(self._caches_synced()), asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([synced, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
            stopping.cancel()
        if self.stop.is_set():
            return
        log.info("caches synced: %d deployments, %d pods", len(self.deployments.objects), len(self.pods.objects))
        self.tune_gc()
        while not self.stop.is_set():
            start = time.monotonic()
            if self.is_leader:
                try:
                    r = await self.tick()
                    log.debug("loop: %s", r)
                except Exception:
                    self.telemetry.errors.labels("loop").inc()
                    log.exception("control loop failed; continuing")
            else:
                self.last_tick_at = time.monotonic()
                self.telemetry.is_leader.set(0)
            delay = max(0.0, self.interval_s - (time.monotonic() - start))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stop.wait()

    async def run(self, *, api_client: Any = None, serve_http: bool = True) -> None:
        """Run everything under one supervisor until ``stop`` is set or a root task dies."""
        if self.settings.leader_election and api_client is not None:
            self.elector = LeaderElector(api_client, namespace=self.settings.namespace, name=self.settings.lease_name,
                                         identity=self.settings.identity, lease_duration_s=self.settings.lease_duration_s,
                                         renew_deadline_s=self.settings.renew_deadline_s,
                                         retry_period_s=self.settings.retry_period_s)
        tasks: dict[str, Awaitable[None]] = {
            "deployments": self.deployments.run(), "pods": self.pods.run(), "configmap": self.configmaps.run(),
        }
        if self.elector is not None:
            tasks["leader"] = self.elector.run()
        runner = None
        if serve_http:
            app = make_app(self.telemetry, healthy=self.healthy, ready=self.ready, leases=self.lease_view)
            runner, port = await serve(app, self.settings.listen_host, self.settings.listen_port)
            self.bound_port = port
            log.info("serving /metrics /healthz /readyz /leases on %s:%d", self.settings.listen_host, port)
        tasks["loop"] = self.run_loop()
        try:
            await supervise(tasks, self.stop)
        finally:
            # Events decided in the last loop (posted at the next loop's start): post them now, for at most 5 s,
            # while the lease is still held, instead of leaving them as never-awaited coroutines
            pending, self._pending_events = self._pending_events, []
            if pending:
                try:
                    async with asyncio.timeout(5.0):
                        await asyncio.gather(*pending, return_exceptions=True)
                except TimeoutError:
                    log.warning("%d Events not posted at shutdown (API server too slow)", len(pending))
            if self.elector is not None and self.elector.held_at_stop:
                await self.elector.release()  # after the loop has stopped: no write can follow the release
            if runner is not None:
                await runner.cleanup()
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the history reads still running in the background and close the Prometheus client this controller
        opened: at the end of :meth:`run`, and for a controller driven by :meth:`tick` (tests, benchmarks), whose
        reads would otherwise fail on the closed client as never-retrieved task errors. Events still pending (a
        tick-driven controller posts a loop's Events at the next tick; :meth:`run` posts them at its end) are
        dropped, not left as never-awaited coroutines."""
        pending, self._pending_events = self._pending_events, []
        for coro in pending:
            if inspect.iscoroutine(coro):
                coro.close()
        if pending:
            log.debug("%d Events of the last loop not posted (the controller was closed without run)", len(pending))
        seeds = list(self._seeds)
        for task in seeds:
            task.cancel()
        await asyncio.gather(*seeds, return_exceptions=True)
        if self._prom_owned:
            await self.prometheus.close()


async def supervise(coros: dict[str, Awaitable[None]], stop: asyncio.Event, grace_s: float = 5.0,
                    drain: tuple[str, ...] = ("loop",), drain_s: float = 15.0) -> None:
    """Root supervisor: if any task ends or fails, or ``stop`` is set, stop the rest and re-raise.

    The tasks named in ``drain`` are not cancelled at once: they see ``stop`` and end on their own within
    ``drain_s`` (the control loop finishes its tick, so a scale it has written gets its Event and log line,
    while the leader election, still running, keeps the lease); then everything left is cancelled and given
    ``grace_s`` to unwind. 15 s covers a 10,000-lease tick on a slow machine and, with the Lease's release,
    stays inside the manifest's 30 s ``terminationGracePeriodSeconds``.
    """
    tasks: dict[asyncio.Future[Any], str] = {asyncio.ensure_future(c): name for name, c in coros.items()}
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        draining = [t for t, name in tasks.items() if name in drain and not t.done()]
        if draining:
            await asyncio.wait(draining, timeout=drain_s)
        for t in [*tasks, stopper]:
            if not t.done():
                t.cancel()
        await asyncio.wait([*tasks, stopper], timeout=grace_s)
    for t in done:
        if t is stopper or t.cancelled():
            continue
        exc = t.exception()
        if exc is not None:
            log.error("root task %s died: %s", tasks[t], exc)
            raise exc
        if tasks.get(t) != "loop":
            raise RuntimeError(f"root task {tasks[t]} ended unexpectedly")


def lease_stagger(namespace: str, name: str) -> float:
    """A lease's fixed place in [0, 1) (a hash of its name): when in each cycle bucket its period search runs, so
    that 10,000 leases' searches spread over the bucket's loops."""
    return zlib.crc32(f"{namespace}/{name}".encode()) / 2**32


def _spec_replicas(obj: dict[str, Any]) -> int:
    """The Deployment's ``spec.replicas`` (the API server defaults it to 1)."""
    raw = (obj.get("spec") or {}).get("replicas")
    return int(raw) if raw is not None else 1


def _status_key(e: dict[str, Any]) -> tuple[Any, ...]:
    """What a status annotation is rewritten for: (counts, reason, mode) and each metric's visible value and
    proposal, and a predictive lease's slots; from a lease's last decision record or from a written status (its
    values are already rounded)."""
    head = (e["current"], e["desired"], e["reason"], e["mode"])
    slots = e.get("slots") or {}
    return (head, tuple((m["name"], _sig(m["value"]), m["proposed"]) for m in e["metrics"]),
            (slots.get("perReplica"), slots.get("source")))


def _written_status(text: str) -> tuple[tuple[Any, ...], float]:
    """The status key of a status annotation, and when it was written; ``((), -inf)`` for anything unreadable
    (it is written again)."""
    try:
        doc = json.loads(text)
        key = _status_key(doc)
        written = parse_time(doc.get("updated"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return (), -math.inf
    return key, -math.inf if written is None else written


def _sig(v: float | None) -> float | None:
    """Two significant digits: status values change the annotation only when they move visibly."""
    if v is None or v == 0 or not math.isfinite(v):
        return v
    return float(f"{v:.2g}")


def settings_from_env(**overrides: Any) -> Settings:
    """Settings from ``AUTOSCALER_*`` environment variables, then explicit overrides."""
    s = Settings()
    for f in s.__dataclass_fields__:
        env = os.environ.get("AUTOSCALER_" + f.upper())
        if env is None:
            continue
        cur = getattr(s, f)
        if isinstance(cur, bool):
            setattr(s, f, env.lower() in ("1", "true", "yes", "on"))
        elif isinstance(cur, int):
            setattr(s, f, int(env))
        elif isinstance(cur, float) or f in ("interval_s",):
            setattr(s, f, float(env))
        else:
            setattr(s, f, env)
    for k, v in overrides.items():
        if v is not None:
            setattr(s, k, v)
    return s
