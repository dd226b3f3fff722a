"""The control loop: observe -> decide -> act, for every lease, every interval.

Observe: watch-based caches of Deployments, Pods and the policy ConfigMap (no list per loop) and ONE
PromQL query per metric kind in use, whatever the number of leases. Decide: the pure core
(``autoscaler.policy``) per lease, isolated (one bad lease never stalls the others), plus the
controller's safety rules on top: no scale-down on imputed or absent data, a fallback after N
consecutive failed loops, a human's ``kubectl scale`` taken as the new current count. Act: only the
leader writes; a merge patch of ``/scale`` carrying the resourceVersion the decision saw (409 -> re-read,
re-decide, retry once); Events with HPA reasons, deduplicated; the status and state annotations written
only when they change.

Concurrency: everything runs on one event loop. Caches are mutated only by their watch tasks between
awaits; a tick snapshots what it needs at its start, so a watch event landing mid-tick is seen next tick.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoscaler import ANNOTATION_PREFIX
from autoscaler.config import (
    STATE_ANNOTATION,
    STATUS_ANNOTATION,
    ClusterPolicy,
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
    patch_annotations,
    patch_scale,
    pods_path,
)
from autoscaler.metrics import (
    BatchResult,
    ClientSettings,
    CustomPromQL,
    LeaseTarget,
    MetricKind,
    PrometheusClient,
    fetch_all,
)
from autoscaler.metrics.registry import MetricRegistry, default_registry
from autoscaler.observe import (
    MetricObservation,
    measured_startup_s,
    metric_input,
    pod_from_k8s,
    predictive_observation,
)
from autoscaler.policy import Decision, DecisionState, Recommendation, Snapshot, decide, state_without_event
from autoscaler.policy.batch import decide_many
from autoscaler.policy.predictive import PredictiveReason, PredictiveState, decide_predictive
from autoscaler.statestore import EMPTY, Persisted, needs_write, parse, restore, significant
from autoscaler.telemetry import Telemetry, make_app, serve

log = logging.getLogger("autoscaler.controller")

DEFAULT_POLICY = Path(__file__).resolve().parent / "data" / "policy.yaml"


@dataclass
class Settings:
    """Everything ``autoscaler run`` can set (flags and ``AUTOSCALER_*`` environment variables)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = "inference-autoscaler"  # where the policy ConfigMap and the leader Lease live
    configmap: str = "inference-autoscaler-policy"
    configmap_key: str = "policy.yaml"
    policy_file: str | None = None  # used until/unless the ConfigMap exists
    prometheus_url: str | None = None  # overrides the policy's prometheus.url
    interval_s: float | None = None  # overrides the policy's loopIntervalSeconds
    dry_run: bool = False
    leader_election: bool = True
    lease_name: str = "inference-autoscaler"
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
    metric_names: list[str] = field(default_factory=list)
    gauges: dict[tuple[str, str], Any] = field(default_factory=dict)  # labelled gauge children, cached
    predictive: PredictiveState | None = None  # the predictive algorithm's state (in memory)


@dataclass
class _Prepared:
    obj: dict[str, Any]
    lease: LeasePolicy
    pods: list[Any]
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
        self.events = EventRecorder(api, instance=settings.identity or "")
        self.deployments = WatchCache(api, deployments_path(), name="deployments")
        self.pods = WatchCache(api, pods_path(), name="pods")
        self.configmaps = WatchCache(api, f"/api/v1/namespaces/{settings.namespace}/configmaps", name="configmap",
                                     field_selector=f"metadata.name={settings.configmap}")
        self.runtime: dict[tuple[str, str], LeaseRuntime] = {}
        self._resolutions: dict[tuple[str, str], tuple[tuple[Any, ...], Resolution]] = {}
        self._pod_index: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        self._pod_cache: dict[tuple[str, str], tuple[str, Any, dict[str, str]]] = {}
        self.pods.add_handler(self._on_pod)
        self.configmaps.add_handler(self._on_configmap)
        self.elector: LeaderElector | None = None
        self.stop = asyncio.Event()
        self.last_report = TickReport()
        self.last_tick_at: float | None = None
        self._kinds: dict[tuple[str, str | None], MetricKind] = {}
        self._pending_events: list[Awaitable[None]] = []
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
        if text is None:
            err: PolicyError | None = PolicyError(name, [f"data has no key {self.settings.configmap_key!r}"])
            self.policy.last_error = str(err)
        else:
            err = self.policy.offer(text, f"{name} key {self.settings.configmap_key}")
        if err is None:
            self.telemetry.policy_reloads.labels("ok").inc()
            log.info("policy loaded from %s (version %d)", name, self.policy.version)
            return
        self.telemetry.policy_reloads.labels("rejected").inc()
        log.error("policy ConfigMap rejected, keeping the last good policy: %s", err)
        if self.is_leader:
            self._pending_events.append(self.events.record(
                obj, "Warning", "InvalidPolicy", f"{err}; keeping the last good policy ({self.policy.source})",
                self.clock(), kind="ConfigMap", api_version="v1"))

    # ------------------------------------------------------------------------------ leases

    def _resolve(self, obj: dict[str, Any], policy: ClusterPolicy) -> Resolution:
        ns, name = obj_key(obj)
        ann = annotations_of(obj)
        user = tuple(sorted((k, v) for k, v in ann.items() if k.startswith(ANNOTATION_PREFIX)
                            and k not in (STATUS_ANNOTATION, STATE_ANNOTATION)))
        cache_key = (self.policy.version, user)
        hit = self._resolutions.get((ns, name))
        if hit is not None and hit[0] == cache_key:
            return hit[1]
        res = resolve_lease(ns, name, ann, policy)
        self._resolutions[(ns, name)] = (cache_key, res)
        return res

    def _kind(self, name: str, query: str | None) -> MetricKind:
        key = (name, query)
        kind = self._kinds.get(key)
        if kind is None:
            prom = self.policy.policy.autoscaling.prometheus
            if query is not None:
                kind = CustomPromQL(name=name, template=query)
            elif name == "queueTime":
                kind = self.registry.create(name, {"source": "recorded" if prom.queue_time_rule else "raw",
                                                   "window_s": prom.rate_window_s,
                                                   "max_sample_age_s": prom.max_sample_age_s})
            elif name == "requestStats":
                pred = self.policy.policy.autoscaling.predictive
                # service and queue time over twice the rate window (60 s with the shipped 30 s)
                kind = self.registry.create(name, {"window_s": pred.rate_window_s,
                                                   "long_window_s": max(2 * pred.rate_window_s, 10.0)})
            elif name == "cpuUtilization":
                kind = self.registry.create(name, {"window_s": prom.rate_window_s,
                                                   "max_sample_age_s": prom.max_sample_age_s})
            else:
                kind = self.registry.create(name, {"max_sample_age_s": prom.max_sample_age_s})
            self._kinds[key] = kind
        return kind

    # ------------------------------------------------------------------------------ the tick

    async def tick(self, now: float | None = None, query_at: float | None = None) -> TickReport:
        """One pass over every lease. Never raises for a single lease's problem.

        ``now`` is the decision time (default: the clock); ``query_at`` pins the PromQL evaluation time
        (default: Prometheus's now), for deterministic runs over backfilled data.
        """
        t0, c0 = time.perf_counter(), time.process_time()
        now = self.clock() if now is None else now
        writes0 = self.api.writes
        report = TickReport()
        policy = self.policy.policy
        leader = self.is_leader
        self.telemetry.is_leader.set(1 if leader else 0)
        await self._flush_events()

        leases: list[tuple[dict[str, Any], LeasePolicy, list[Any]]] = []
        seen: set[tuple[str, str]] = set()
        invalid_n = paused_n = 0
        enabled_key = ANNOTATION_PREFIX + "enabled"
        for key, obj in list(self.deployments.objects.items()):
            ann = (obj.get("metadata") or {}).get("annotations")
            if not ann or enabled_key not in ann:
                continue
            res = self._resolve(obj, policy)
            if res.issues and leader:
                for issue in res.issues:
                    if not issue.key.startswith(ANNOTATION_PREFIX):
                        reason = "AutoscalingDisabled"
                    elif issue.severity == Severity.INVALID:
                        reason = "InvalidAnnotation"
                    else:
                        reason = "AnnotationAdjusted"
                    await self.events.record(obj, "Warning", reason, issue.message, now)
            if res.lease is None:
                if res.opted_in:
                    invalid_n += 1
                continue
            seen.add(key)
            if res.lease.paused:
                paused_n += 1
                continue
            selector = Selector.from_label_selector((obj.get("spec") or {}).get("selector"))
            leases.append((obj, res.lease, self.pods_for(key[0], selector)))
        self._forget(set(self.runtime) - seen)
        report.leases, report.invalid, report.paused = len(leases), invalid_n, paused_n
        if leader:  # per-lease Prometheus objects (policy prometheus.createObjects); writes only on change
            await self.prom_objects.sync([self.deployments.objects[k] for k in sorted(seen)],
                                         policy.autoscaling.prometheus)

        # One query per metric kind in use.
        batches: dict[tuple[str, str | None], list[LeaseTarget]] = {}
        for _obj, lease, pods in leases:
            if not pods:
                continue
            target = LeaseTarget.of(lease.namespace, [p.name for p in pods])
            for m in lease.metrics:
                batches.setdefault((m.name, m.query), []).append(target)
            if lease.algorithm == "predictive":
                batches.setdefault(("requestStats", None), []).append(target)
        kinds = {key: self._kind(*key) for key in batches}
        results: dict[str, BatchResult] = {}
        if batches:
            by_name = await fetch_all(self.prometheus, [(kinds[k], v) for k, v in batches.items()], at=query_at)
            for (name, _), kind in kinds.items():
                r = by_name.get(kind.name)
                if r is not None:
                    results[name] = r
                    self.telemetry.query_seconds.labels(name).observe(r.latency_s)
                    if r.error is not None:
                        self.telemetry.errors.labels("prometheus").inc()
        report.queries = len(batches)

        # Observe every lease, decide them all at once (vectorised core), then act with bounded concurrency.
        prepared: list[_Prepared] = []
        for obj, lease, pods in leases:
            try:
                prepared.append(self._prepare(obj, lease, pods, results, now, leader))
            except Exception as exc:  # isolation: one lease's bad data must not stop the loop
                report.errors += 1
                self.telemetry.errors.labels("lease").inc()
                log.exception("lease %s/%s could not be observed: %s", lease.namespace, lease.name, exc)
        try:
            decisions = decide_many([p.snap for p in prepared], [p.state for p in prepared], now)
        except Exception:
            log.exception("batch decision failed; deciding lease by lease")
            decisions = [decide(p.snap, p.state, now) for p in prepared]
        await self._flush_events()
        # Most leases need no I/O this loop: finish them synchronously; only changes become tasks.
        jobs: list[tuple[_Prepared, Awaitable[None]]] = []
        for p, d in zip(prepared, decisions, strict=True):
            try:
                override = self._predictive(p, results, now) if p.lease.algorithm == "predictive" else None
                desired, reason, message = self._safety(p, d, override)
                if desired != p.snap.current_replicas and leader:
                    jobs.append((p, self._act_io(p, d, desired, reason, message, now, leader, report)))
                    continue
                new_state = d.state if desired == d.desired_replicas else state_without_event(d, p.state)
                if desired != p.snap.current_replicas:  # not the leader: nothing applied
                    new_state = state_without_event(d, p.state)
                changes = self._finish(p, d, new_state, desired, reason, message, False, now, leader, report)
                if changes:
                    jobs.append((p, self._patch_annotations(p.lease, p.rt, changes)))
            except Exception as exc:  # isolation: a lease's bug must not stop the loop
                report.errors += 1
                self.telemetry.errors.labels("lease").inc()
                log.exception("lease %s/%s failed this loop: %s", p.lease.namespace, p.lease.name, exc)
        sem = asyncio.Semaphore(self.settings.write_concurrency)

        async def one(p: _Prepared, job: Awaitable[None]) -> None:
            async with sem:
                try:
                    await job
                except Exception as exc:  # isolation: a lease's bug must not stop the loop
                    report.errors += 1
                    self.telemetry.errors.labels("lease").inc()
                    log.exception("lease %s/%s failed this loop: %s", p.lease.namespace, p.lease.name, exc)

        if jobs:
            await asyncio.gather(*(one(p, job) for p, job in jobs))
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
            rt = self.runtime.pop(key, None)
            if rt is not None:
                self.telemetry.forget_lease(key[0], key[1], rt.metric_names)

    def _snapshot(self, obj: dict[str, Any], lease: LeasePolicy, pods: list[Any], results: dict[str, BatchResult],
                  now: float) -> tuple[Snapshot, list[MetricObservation]]:
        raw_spec = (obj.get("spec") or {}).get("replicas")
        spec_r = int(raw_spec) if raw_spec is not None else 1
        status_r = int((obj.get("status") or {}).get("replicas") or 0)
        inputs, observations = [], []
        window = self.policy.policy.autoscaling.prometheus.rate_window_s
        for m in lease.metrics:
            mi, ob = metric_input(m, lease.namespace, pods, results.get(m.name) if pods else None, now, window)
            if not pods:
                mi = replace(mi, error=None)
            inputs.append(mi)
            observations.append(ob)
        snap = Snapshot(now=now, current_replicas=spec_r, status_replicas=status_r, min_replicas=lease.min_replicas,
                        max_replicas=lease.max_replicas, behavior=lease.behavior, pods=tuple(pods),
                        metrics=tuple(inputs))
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

    def _prepare(self, obj: dict[str, Any], lease: LeasePolicy, pods: list[Any], results: dict[str, BatchResult],
                 now: float, leader: bool) -> _Prepared:
        """Observe one lease: its snapshot and the state to decide from (pure bookkeeping, no I/O)."""
        key = (lease.namespace, lease.name)
        rt = self.runtime.setdefault(key, LeaseRuntime(history=deque(maxlen=self.settings.history)))
        rt.metric_names = [m.name for m in lease.metrics]
        snap, observations = self._snapshot(obj, lease, pods, results, now)
        current = snap.current_replicas
        state = self._state_for(rt, obj, current, now)
        # A human changed the replica count (not us): take it as the new current value and hold it for the
        # scale-down window instead of fighting back at once.
        if rt.last_seen_replicas is not None and current != rt.last_seen_replicas and current != rt.last_written_replicas:
            state = DecisionState((*(state.recommendations or ()), Recommendation(now, current)), state.scale_events)
            if leader:
                self._pending_events.append(self.events.record(
                    obj, "Normal", "ManualScaleDetected",
                    f"replicas changed from {rt.last_seen_replicas} to {current} outside the autoscaler; "
                    "taking it as the current count", now))
        rt.last_seen_replicas = current
        return _Prepared(obj, lease, pods, rt, snap, observations, state)

    def _predictive(self, p: _Prepared, results: dict[str, BatchResult], now: float) -> tuple[int, str, str] | None:
        """The predictive algorithm's decision, or None without request data (the HPA core decides then)."""
        settings = self.policy.policy.autoscaling.predictive
        lease, snap = p.lease, p.snap
        target_us = next((m.target for m in lease.metrics if m.name == "queueTime"),
                         self.policy.policy.autoscaling.metrics["queueTime"].threshold.default)
        pods = list(snap.pods)
        obs = predictive_observation(
            lease.namespace, pods, results.get("requestStats"), now, snap.current_replicas, lease.min_replicas,
            lease.max_replicas, lease.slots_per_replica or settings.slots_per_replica,
            measured_startup_s(pods, settings.startup_s))
        d = decide_predictive(obs, p.rt.predictive or PredictiveState(), settings.to_params(target_us))
        p.rt.predictive = d.state
        if d.reason == PredictiveReason.MISSING_DATA:
            return None
        det = d.details
        message = (f"predictive: {det.get('rate_rps', 0):.1f} req/s now, {det.get('forecast_rps', 0):.1f} req/s "
                   f"expected in {det.get('horizon_s', 0):.0f}s, {1000 * det.get('service_s', 0):.0f} ms per request, "
                   f"{det.get('capacity_target', 0):.0f} replicas meet the queue-time SLO")
        return d.desired_replicas, str(d.reason), message

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
            target = min(max(fb.replicas, lease.min_replicas), lease.max_replicas)
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

    def _finish(self, p: _Prepared, decision: Decision, new_state: DecisionState, desired: int, reason: str,
                message: str, applied: bool, now: float, leader: bool, report: TickReport) -> dict[str, str | None]:
        """Keep the new state, record the decision; return the annotation changes to write (leader only)."""
        p.rt.state = new_state
        report.decided += 1
        self.telemetry.decisions.labels(reason, p.lease.mode.value).inc()
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
                obj, lease, snap, state, desired, reason, message, new_state, now)
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

    async def _rescale(self, obj: dict[str, Any], lease: LeasePolicy, snap: Snapshot, state: DecisionState,
                       desired: int, reason: str, message: str, new_state: DecisionState,
                       now: float) -> tuple[bool, int, str, str, DecisionState]:
        ns, name = lease.namespace, lease.name
        current = snap.current_replicas
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        for attempt in range(2):
            try:
                await patch_scale(self.api, ns, name, desired, rv)
            except KubeError as exc:
                if exc.conflict and attempt == 0:
                    self.conflicts += 1
                    self.telemetry.errors.labels("conflict").inc()
                    # Someone changed the Deployment since we looked: re-read and re-decide, never overwrite.
                    try:
                        fresh = await self.api.get(deployment_path(ns, name))
                    except KubeError as exc2:
                        exc = exc2
                    else:
                        self.deployments.apply("MODIFIED", fresh)
                        rv = str((fresh.get("metadata") or {}).get("resourceVersion") or "")
                        new_current = int((fresh.get("spec") or {}).get("replicas") or 0)
                        if new_current != current:
                            snap = replace(snap, current_replicas=new_current)
                            d = decide(snap, state, now)
                            current, desired, reason, message = new_current, d.desired_replicas, d.reason, d.message
                            new_state = d.state
                            self.runtime[(ns, name)].last_seen_replicas = new_current
                            if desired == current:
                                return False, desired, reason, message, new_state
                        continue
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

    @staticmethod
    def _gauge(rt: LeaseRuntime, key: tuple[str, str], family: Any, *labels: str) -> Any:
        """The lease's labelled gauge child, looked up once (``labels()`` is costly at 10,000 leases)."""
        child = rt.gauges.get(key)
        if child is None:
            child = rt.gauges[key] = family.labels(*labels)
        return child

    def _record(self, rt: LeaseRuntime, lease: LeasePolicy, obj: dict[str, Any], snap: Snapshot, decision: Decision,
                observations: list[MetricObservation], desired: int, reason: str, message: str, applied: bool,
                now: float) -> None:
        ns, name = lease.namespace, lease.name
        metrics = []
        for ob, res in zip(observations, decision.metrics, strict=False):
            metrics.append({"name": ob.name, "value": None if ob.value is None else round(ob.value, 3),
                            "target": ob.target, "unit": ob.unit, "proposed": res.proposed_replicas,
                            "utilization": res.utilization, "error": res.error or ob.error,
                            "missing": dict(ob.missing) or None})
            self._gauge(rt, ("target", ob.name), self.telemetry.metric_target, ns, name, ob.name).set(ob.target)
            if ob.value is not None:
                self._gauge(rt, ("value", ob.name), self.telemetry.metric_value, ns, name, ob.name).set(ob.value)
        self._gauge(rt, ("current", ""), self.telemetry.current, ns, name).set(snap.current_replicas)
        mode = lease.mode.value
        self._gauge(rt, ("desired", mode), self.telemetry.desired, ns, name, mode).set(desired)
        ready = sum(1 for p in snap.pods if p.ready and not p.deleting)
        entry = {
            "time": now, "current": snap.current_replicas, "ready": ready, "desired": desired, "reason": reason,
            "message": message, "mode": lease.mode.value, "applied": applied, "metrics": metrics,
            "metricReplicas": decision.metric_replicas, "stabilizedReplicas": decision.stabilized_replicas,
            "limitedBy": decision.limited_by or None, "min": lease.min_replicas, "max": lease.max_replicas,
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
        head = (e["current"], e["desired"], e["reason"], e["mode"])
        full = (head, tuple((m["name"], _sig(m["value"]), m["proposed"]) for m in e["metrics"]))
        current_ann = ann.get(STATUS_ANNOTATION)
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
        """
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)

    async def run_loop(self) -> None:
        await asyncio.gather(self.deployments.synced.wait(), self.pods.synced.wait(), self.configmaps.synced.wait())
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
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            except TimeoutError:
                pass

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
            if runner is not None:
                await runner.cleanup()
            if self._prom_owned:
                await self.prometheus.close()


async def supervise(coros: dict[str, Awaitable[None]], stop: asyncio.Event, grace_s: float = 5.0) -> None:
    """Root supervisor: if any task ends or fails, or ``stop`` is set, cancel the rest and re-raise."""
    tasks: dict[asyncio.Future[Any], str] = {asyncio.ensure_future(c): name for name, c in coros.items()}
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
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
