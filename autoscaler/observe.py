"""Observation adapters: Kubernetes objects and PromQL outcomes -> the decision core's input types.

This is the seam between the I/O world (dicts from the API server, typed PromQL outcomes) and the
pure core: pods are converted once per resourceVersion, and each lease's metric outcomes become
``MetricInput``s with explicit missing values. Conservative mapping (STYLE habit 4): only ``Ok`` is a
value; ``NoTraffic`` is 0 only for a Ready pod; Empty, Stale, NaN/Inf and multi-series answers are
*missing* (never 0), and a failed query makes the whole metric an error (the core then refuses to
scale down).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from autoscaler.config import EffectiveMetric, PredictiveSettings
from autoscaler.metrics import BatchResult, Empty, MultiSeries, NotFinite, NoTraffic, Ok, PodTarget, QueryError, Stale
from autoscaler.policy.predictive import (
    PredictiveObservation,
    PredictiveParams,
    PredictiveState,
    pod_queue_times_matter,
    queue_time_without,
    stuck_backlog,
    unmeasured_ready,
    wake_replicas_needed,
)
from autoscaler.policy.snapshot_json import parse_quantity
from autoscaler.policy.types import (
    MetricInput,
    MetricType,
    Pod,
    PodPhase,
    PodSample,
    Target,
    TargetType,
    to_milli,
)

_EMPTY = Empty()
_MISSING = (Empty, Stale, NotFinite, MultiSeries, QueryError)


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_from_k8s(obj: dict[str, Any]) -> Pod:
    """The HPA's view of a pod: phase, deletion, start time, Ready condition, container requests."""
    md = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready: bool | None = None
    transition: float | None = None
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c.get("status") == "True" if c.get("status") in ("True", "False") else None
            transition = parse_time(c.get("lastTransitionTime"))
    try:
        phase = PodPhase(status.get("phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    requests: dict[str, dict[str, int]] = {}
    names = []
    for c in (obj.get("spec") or {}).get("containers") or []:
        cname = str(c.get("name") or "")
        names.append(cname)
        for res, q in ((c.get("resources") or {}).get("requests") or {}).items():
            try:
                requests.setdefault(res, {})[cname] = to_milli(float(parse_quantity(q)))
            except (TypeError, ValueError):
                continue
    return Pod(
        name=str(md.get("name") or ""), phase=phase, deleting=md.get("deletionTimestamp") is not None,
        start_time=parse_time(status.get("startTime")), ready=ready, ready_transition_time=transition,
        requests_milli=requests, containers=tuple(names),
    )


def slim_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a Pod that :func:`pod_from_k8s` and the controller's label index read, and its identity: what
    the controller's pod cache keeps (a real cluster's Pod is mostly spec, managedFields and container statuses)."""
    md = obj.get("metadata") or {}
    status = obj.get("status") or {}
    slim_status = {k: status[k] for k in ("phase", "startTime") if k in status}
    ready = [c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"]
    if ready:
        slim_status["conditions"] = ready
    containers = [{"name": c.get("name"), "resources": {"requests": (c.get("resources") or {}).get("requests") or {}}}
                  for c in (obj.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    return {"metadata": {k: md[k] for k in _POD_METADATA if k in md}, "spec": {"containers": containers},
            "status": slim_status}


_POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp")


@dataclass(slots=True)
class MetricObservation:
    """What one lease's metric looked like this loop, for status, explain and safety rules."""

    name: str
    target: float
    unit: str
    value: float | None = None  # average over pods with a value
    pods_ok: int = 0
    missing: dict[str, int] = field(default_factory=dict)  # outcome kind -> pods
    error: str | None = None

    @property
    def imputed(self) -> bool:
        return bool(self.missing)


@lru_cache(maxsize=1024)
def _target(is_cpu: bool, target: float) -> Target:
    """The core's target for a metric threshold (immutable, so shared by every lease with that threshold)."""
    if is_cpu:
        return Target(TargetType.UTILIZATION, average_utilization=max(1, round(target)))
    return Target(TargetType.AVERAGE_VALUE, average_value_milli=max(1, to_milli(target)))


def metric_input(metric: EffectiveMetric, namespace: str, pods: Sequence[Pod], result: BatchResult | None,
                 eval_time: float, window_s: float) -> tuple[MetricInput, MetricObservation]:
    """Build the core's input for one metric of one lease from the batched query result."""
    obs = MetricObservation(metric.name, metric.target, metric.unit)
    is_cpu = metric.name == "cpuUtilization"
    target = _target(is_cpu, metric.target)
    mtype, resource = (MetricType.RESOURCE, "cpu") if is_cpu else (MetricType.PODS, "")
    if result is None or result.error is not None:
        err = result.error.message if result is not None and result.error is not None else "metric not queried"
        obs.error = err
        return MetricInput(mtype, target, name=metric.name, resource=resource, error=err), obs
    samples: list[PodSample] = []
    total = 0.0
    outcomes = result.outcomes
    for pod in pods:
        # A plain (namespace, pod) tuple finds the PodTarget key (a NamedTuple: equal, same hash) without
        # building one per pod.
        outcome = outcomes.get((namespace, pod.name)) or _EMPTY  # type: ignore[call-overload]
        value: float | None = None
        containers: dict[str, int | None] | None = None
        if isinstance(outcome, Ok):
            value = outcome.value
            if is_cpu:
                conts = outcome.containers or {"": outcome.value}
                containers = {k: to_milli(v) for k, v in conts.items()}
        elif isinstance(outcome, NoTraffic):
            if pod.ready:
                value = 0.0
                containers = {"": 0} if is_cpu else None
            else:
                obs.missing["NoTrafficUnready"] = obs.missing.get("NoTrafficUnready", 0) + 1
        elif isinstance(outcome, _MISSING):
            if pod.phase == PodPhase.RUNNING and not pod.deleting:
                kind = type(outcome).__name__
                obs.missing[kind] = obs.missing.get(kind, 0) + 1
        if value is None:
            continue
        obs.pods_ok += 1
        total += value
        samples.append(PodSample(pod=pod.name, value_milli=None if is_cpu else to_milli(value),
                                 containers_milli=containers, timestamp=eval_time, window_s=window_s))
    if obs.pods_ok:
        obs.value = total / obs.pods_ok
    return MetricInput(mtype, target, name=metric.name, resource=resource, samples=tuple(samples)), obs


def measured_startup_s(pods: list[Pod], default_s: float) -> float:
    """Start-to-Ready delay of the lease's ready pods (their median), else ``default_s``."""
    delays = sorted(p.ready_transition_time - p.start_time for p in pods
                    if p.ready and p.start_time is not None and p.ready_transition_time is not None
                    and p.ready_transition_time >= p.start_time)
    return delays[len(delays) // 2] if delays else default_s


def lease_parts(namespace: str, pods: list[Pod], result: BatchResult | None) -> dict[str, Mapping[str, float]]:
    """The request statistics (``requestStats`` parts) of the lease's live pods, by pod name."""
    outcomes = result.outcomes if result is not None and result.error is None else {}
    return {p.name: o.parts for p in pods if not p.deleting and p.phase in (PodPhase.PENDING, PodPhase.RUNNING)
            if isinstance(o := outcomes.get(PodTarget(namespace, p.name)), Ok) and o.parts is not None}


def part_by_pod(parts: Mapping[str, Mapping[str, float]], part: str) -> dict[str, float]:
    """One ``requestStats`` part of each pod that has it at 1 or more, by pod name, from :func:`lease_parts`: its
    ``batch`` (what it runs while others keep waiting for a slot: only the pods saturated now) or its ``kv_fit``
    (what its KV cache holds at its requests' sizes: only the pods with a tenth or more of it in use now)."""
    return {name: pp[part] for name, pp in parts.items() if pp.get(part, 0.0) >= 1}


def median_int(values: Iterable[float]) -> int | None:
    """The median (the upper one of an even count) of ``values``, rounded; None for none."""
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2]) if ordered else None


BATCH_PODS = 16  # the most recently saturated pods whose batch the learnt slots are the median of
BATCH_SAMPLES = 60  # a pod's batch is the mean of about this many of its latest saturated readings


class PodBatch(NamedTuple):
    """What a pod ran while saturated (:func:`note_batches`)."""

    mean: float
    """The mean of its latest saturated readings (at most ``BATCH_SAMPLES``)."""
    n: int
    """How many readings that mean is over."""
    last: float
    """When it was last saturated."""


def note_batches(batches: Mapping[str, PodBatch], seen: Mapping[str, float], now: float,
                 live: Iterable[str] = ()) -> dict[str, PodBatch]:
    """Each pod's batch while saturated (:func:`part_by_pod` ``batch``; or its KV fit, ``kv_fit``): ``batches``
    updated with the readings ``seen`` at ``now``, keeping the ``BATCH_PODS`` most recently saturated pods. The
    mean, not the largest: a KV-bound batch varies with the requests' lengths, and what a replica serves is its
    mean batch over the service time.
    With the ``live`` pods' names, the pods of a ReplicaSet none of them belongs to are forgotten: after a rollout
    the new template (another model, GPU or ``--max-num-seqs``) is learnt afresh, and a figure too small for it
    cannot keep the lease too large for ever (it would never be saturated again to correct it)."""
    out = dict(batches)
    for pod, batch in seen.items():
        old = out.get(pod)
        n = min((old.n if old else 0) + 1, BATCH_SAMPLES)
        out[pod] = PodBatch(batch if old is None else old.mean + (batch - old.mean) / n, n, now)
    templates = {replica_set(name) for name in live}
    if templates:
        out = {pod: b for pod, b in out.items() if replica_set(pod) in templates}
    if len(out) > BATCH_PODS:
        out = dict(sorted(out.items(), key=lambda kv: kv[1].last)[-BATCH_PODS:])
    return out


def replica_set(pod: str) -> str:
    """The ReplicaSet a Deployment's pod belongs to, from its name (``<deployment>-<template hash>-<suffix>``)."""
    return pod.rsplit("-", 1)[0]


def learned_batch(batches: Mapping[str, PodBatch]) -> int | None:
    """The slots a lease's pods showed they run (:func:`note_batches`): the median of their mean batches; None
    before any pod was saturated."""
    return median_int(b.mean for b in batches.values())


def reported_slots(parts: Iterable[Mapping[str, float]]) -> tuple[int | None, bool]:
    """From pods' request statistics (``requestStats`` parts): the median of the slot counts they report (NIM's
    ``num_request_max``; None when none does), and whether any pod was read from vLLM's series (vLLM batches many
    requests at once without reporting how many, so such a lease's slots must be stated, reported or learnt)."""
    reported: list[float] = []
    vllm = False
    for pp in parts:
        vllm = vllm or pp.get("vllm", 0.0) > 0
        if pp.get("slots", 0.0) >= 1:
            reported.append(pp["slots"])
    return median_int(reported), vllm


SLOT_SOURCES = {
    "annotation": "the slots-per-replica annotation",
    "learnt": "the batch its pods ran while requests waited",
    "kv-cache": "the requests its pods' KV cache holds at their present sizes (running requests over KV-cache use)",
    "reported": "the pods' num_request_max",
    "template": "the --max-num-seqs its pod template passes to vLLM (the most requests a pod runs at once)",
    "policy": "the policy's predictive.slotsPerReplica",
    "default": "the policy's default predictive.slotsPerReplica (Triton's default model configuration)",
    "unknown": "vLLM does not report its batch size, nothing states it (neither an annotation nor --max-num-seqs in "
               "its pod template), and no pod has yet had a tenth of its KV cache in use or been saturated",
}
"""Where a lease's slots per replica come from (:func:`resolve_slots`), as said to people."""


LIMIT_WORDS = {"reported": "its pods report (num_request_max)", "template": "its pod template allows (--max-num-seqs)"}
"""Who says the most requests a lease's pods run at once (:func:`slot_limit`), as said to people after the number."""


def slot_limit(reported: int | None, limit: int | None) -> tuple[int, str] | None:
    """The most requests a lease's pods run at once by what they say, and who says it (a key of
    :data:`LIMIT_WORDS`): the fewer of what they report (NIM's ``num_request_max``) and their pod template's
    ``--max-num-seqs`` (``limit``); None when neither says."""
    if limit and (not reported or limit < reported):
        return limit, "template"
    return (reported, "reported") if reported else None


def resolve_slots(annotated: int | None, reported: int | None, vllm: bool,
                  policy: PredictiveSettings, learned: int | None = None,
                  fitted: int | None = None, limit: int | None = None) -> tuple[int | None, str]:
    """The slots per replica the predictive algorithm sizes a lease with, and where they come from (a key of
    :data:`SLOT_SOURCES`): the lease's annotation, else what its pods showed they run when saturated (``learned``,
    :func:`learned_batch`), else what their KV cache holds at their requests' sizes (``fitted``, the same over
    :func:`part_by_pod` ``kv_fit``) when that is fewer than the most they run, else that most: the fewer of what
    they report (:func:`reported_slots`: NIM's ``num_request_max``) and the ``--max-num-seqs`` of their pod
    template (``limit``, :func:`autoscaler.kube.workloads.max_num_seqs`), else the policy's
    ``predictive.slotsPerReplica``. Its default (1, Triton's default model configuration) is not applied to a
    lease read from vLLM's series: (None, "unknown").
    The saturated batch comes before the KV fit: the fit is more than a pod runs when ``--max-num-seqs`` binds first
    and nothing says it, and a lease sized on too many slots is saturated, so it then learns the batch."""
    if annotated:
        return annotated, "annotation"
    if learned:
        return learned, "learnt"
    most = slot_limit(reported, limit)
    if fitted and (not most or fitted < most[0]):
        return fitted, "kv-cache"
    if most:
        return most
    if policy.stated_slots is not None:
        return policy.stated_slots, "policy"
    if vllm:
        return None, "unknown"
    return policy.slots_per_replica, "default"


def sized_wake(rate_rps: float, state: PredictiveState, slots: int | None, params: PredictiveParams,
               max_replicas: int) -> tuple[int | None, str]:
    """``wake-target: auto``: the replicas a predictive lease at zero needs for the request rate in front of it, as
    the algorithm sizes it from its last service time (``state``) and ``slots``
    (:func:`autoscaler.policy.predictive.wake_replicas_needed`), with how, or why not (None: woken to its wake
    replicas), as said to people."""
    need = wake_replicas_needed(rate_rps, state, slots, params, max_replicas)
    if need is None:
        why = "its service time" if state.service_time_s is None else "its slots per replica"
        return None, f"{why} not known yet: woken to its wake replicas"
    return need, f"{rate_rps:.3g} req/s at its last service time {state.service_time_s:.3g}s and {slots} slots a replica"


def predictive_observation(namespace: str, pods: list[Pod], result: BatchResult | None, now: float,
                           current: int, min_replicas: int, max_replicas: int, slots: int,
                           startup_s: float, drain_s: float = 0.0,
                           rate_window_s: float | None = None, stagger: float = 0.0,
                           pod_parts: Mapping[str, Mapping[str, float]] | None = None) -> PredictiveObservation:
    """The predictive policy's view of a lease: summed request statistics of its pods, ready/starting counts, and
    (with ``rate_window_s``, the request rate's window) how many settled Ready pods the statistics leave out
    (:func:`unmeasured_ready`).
    With ``drain_s``, a pod whose own backlog takes it longer than that to serve (:func:`stuck_backlog`) counts only
    what it can drain, and its queue time is left out of the lease's while other pods have traffic. ``pod_parts``:
    the statistics by pod (:func:`lease_parts`) when the caller has read them already."""
    live = [p for p in pods if not p.deleting and p.phase in (PodPhase.PENDING, PodPhase.RUNNING)]
    ready = sum(1 for p in live if p.ready and p.phase == PodPhase.RUNNING)
    by_pod = lease_parts(namespace, live, result) if pod_parts is None else pod_parts
    parts, measured = list(by_pod.values()), set(by_pod)
    unmeasured = 0 if rate_window_s is None else unmeasured_ready(live, measured, now, rate_window_s)
    sums: dict[str, float] = {}
    for pp in parts:
        for k, v in pp.items():
            sums[k] = sums.get(k, 0.0) + v
    seen = len(parts)
    rate = None if not seen else sums.get("success", 0.0) + sums.get("failure", 0.0)
    ok_long = sums.get("success_long", 0.0)
    service = sums["compute_us"] / ok_long / 1e6 if ok_long > 0 and "compute_us" in sums else None
    queue = sums["queue_us"] / ok_long if ok_long > 0 and "queue_us" in sums else None
    pending = sums.get("pending") if seen else None
    drainable = None
    if pending and drain_s > 0:
        waiting = [pp.get("pending", 0.0) for pp in parts]
        drainable, stuck = stuck_backlog(waiting, service, slots, drain_s)
        if pod_queue_times_matter(stuck, waiting):
            queue = queue_time_without(stuck, [pp.get("queue_us", 0.0) for pp in parts],
                                       [pp.get("success_long", math.nan) for pp in parts], waiting, queue,
                                       slots / service if service else None)
    return PredictiveObservation(
        now=now, current_replicas=current, ready_replicas=ready, starting_replicas=max(0, len(live) - ready),
        min_replicas=min_replicas, max_replicas=max_replicas, request_rate_rps=rate, service_time_s=service,
        slots_per_replica=slots, startup_s=startup_s, queue_time_us=queue, pending_requests=pending,
        drainable_pending=drainable, unmeasured_ready=unmeasured, stagger=stagger)
