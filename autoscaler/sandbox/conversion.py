"""Conversion between the form objects are stored in and the API versions that serve them.

A resource served in several versions (``storage_key`` shared, see :mod:`autoscaler.sandbox.resources`)
is stored in the form of the first of them in the table; every other version is a view converted on
the way in and out, as kube-apiserver converts through its internal version:

* ``events.k8s.io/v1`` Event <-> core/v1 Event (storage): fields renamed (``involvedObject`` is
  ``regarding``, ``message`` is ``note``, ...).
* ``autoscaling/v1`` HorizontalPodAutoscaler <-> ``autoscaling/v2`` (storage): the v1 CPU target
  (``targetCPUUtilizationPercentage``) is the v2 ``Resource`` cpu ``Utilization`` metric. What v1 cannot
  express (other metrics, ``behavior``, conditions) is kept from the stored object when written
  through v1; the real server carries it in ``autoscaling.alpha.kubernetes.io/*`` annotations instead,
  which the sandbox does not show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoscaler.sandbox.resources import ResourceType

Obj = dict[str, Any]

# ---------------------------------------------------------------------------------------------------
# core/v1 Event (storage) <-> events.k8s.io/v1 Event

_EVENT_RENAMES = (  # (core/v1, events.k8s.io/v1)
    ("involvedObject", "regarding"), ("message", "note"), ("reportingComponent", "reportingController"),
    ("firstTimestamp", "deprecatedFirstTimestamp"), ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"), ("source", "deprecatedSource"),
)


def _rename(obj: Obj, forward: bool) -> Obj:
    mapping = dict(_EVENT_RENAMES) if forward else {b: a for a, b in _EVENT_RENAMES}
    return {mapping.get(k, k): v for k, v in obj.items()}


def _event_to_version(stored: Obj) -> Obj:
    return _rename(stored, forward=True)


def _event_to_storage(obj: Obj, current: Obj | None) -> Obj:
    return _rename(obj, forward=False)


# ---------------------------------------------------------------------------------------------------
# autoscaling/v2 HorizontalPodAutoscaler (storage) <-> autoscaling/v1


def cpu_utilization_metric(m: Any) -> bool:
    """A v2 metric that v1's ``targetCPUUtilizationPercentage`` stands for."""
    if not isinstance(m, dict) or m.get("type") != "Resource":
        return False
    res = m.get("resource") or {}
    return res.get("name") == "cpu" and (res.get("target") or {}).get("type") == "Utilization"


def _cpu_current(m: Any) -> bool:
    return isinstance(m, dict) and m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"


def _with_cpu(metrics: Any, is_cpu: Callable[[Any], bool], cpu: Obj | None) -> list[Obj]:
    """The stored metric list with its CPU entry replaced in place by ``cpu`` (appended if it had
    none, removed if ``cpu`` is None): the metrics v1 does not show keep their order."""
    out: list[Obj] = []
    for m in metrics or []:
        if not is_cpu(m):
            out.append(m)
        elif cpu is not None:
            out.append(cpu)
            cpu = None
    return out + ([cpu] if cpu is not None else [])


def _hpa_to_v1(stored: Obj) -> Obj:
    out = {k: v for k, v in stored.items() if k not in ("spec", "status")}
    spec = stored.get("spec") or {}
    if "spec" in stored:
        v1: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
        cpu = next((m for m in spec.get("metrics") or [] if cpu_utilization_metric(m)), None)
        if cpu is not None and "averageUtilization" in cpu["resource"]["target"]:
            v1["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
        out["spec"] = v1
    if "status" in stored:
        status = stored.get("status") or {}
        s1: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                          "desiredReplicas") if k in status}
        current = next((m for m in status.get("currentMetrics") or [] if _cpu_current(m)), None)
        used = ((current or {}).get("resource") or {}).get("current") or {}
        if "averageUtilization" in used:
            s1["currentCPUUtilizationPercentage"] = used["averageUtilization"]
        out["status"] = s1
    return out


def _hpa_to_storage(obj: Obj, current: Obj | None) -> Obj:
    cur_spec, cur_status = (current or {}).get("spec") or {}, (current or {}).get("status") or {}
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    if "spec" in obj:
        spec = obj.get("spec") or {}
        v2: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
        cpu = spec.get("targetCPUUtilizationPercentage")
        metrics = _with_cpu(cur_spec.get("metrics"), cpu_utilization_metric, None if cpu is None else {
            "type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                       "averageUtilization": cpu}}})
        if metrics:
            v2["metrics"] = metrics
        if "behavior" in cur_spec:
            v2["behavior"] = cur_spec["behavior"]
        out["spec"] = v2
    if "status" in obj:
        status = obj.get("status") or {}
        s2: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas",
                                          "desiredReplicas") if k in status}
        cpu_used = status.get("currentCPUUtilizationPercentage")
        used = _with_cpu(cur_status.get("currentMetrics"), _cpu_current, None if cpu_used is None else {
            "type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu_used}}})
        if used:
            s2["currentMetrics"] = used
        if "conditions" in cur_status:
            s2["conditions"] = cur_status["conditions"]
        out["status"] = s2
    return out


# ---------------------------------------------------------------------------------------------------

ToVersion = Callable[[Obj], Obj]
ToStorage = Callable[[Obj, "Obj | None"], Obj]

# (group, version, kind) of a view -> (storage form -> view, view -> storage form given the stored object)
_VIEWS: dict[tuple[str, str, str], tuple[ToVersion, ToStorage]] = {
    ("events.k8s.io", "v1", "Event"): (_event_to_version, _event_to_storage),
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): (_hpa_to_v1, _hpa_to_storage),
}


def to_version(rt: ResourceType, stored: Obj) -> Obj:
    """The stored object (without kind/apiVersion) in ``rt``'s version."""
    view = _VIEWS.get((rt.group, rt.version, rt.kind))
    return view[0](stored) if view else stored


def to_storage(rt: ResourceType, obj: Obj, current: Obj | None = None) -> Obj:
    """An object in ``rt``'s version in the storage form; ``current`` is the stored object on update
    (what the version cannot express is kept from it)."""
    view = _VIEWS.get((rt.group, rt.version, rt.kind))
    return view[1](obj, current) if view else obj
