"""Builders for decide() snapshots in the JSON contract's shape, so tables stay readable."""

from __future__ import annotations

from typing import Any

NOW = 1_700_000_000.0


def pod(name: str, *, cpu: float = 1.0, phase: str = "Running", ready: bool | None = True,
        started_ago: float = 3600.0, ready_ago: float = 3500.0, deleting: bool = False) -> dict[str, Any]:
    return {"name": name, "phase": phase, "ready": ready, "deleting": deleting,
            "startTime": NOW - started_ago, "readyTransitionTime": NOW - ready_ago,
            "containers": [{"name": "triton", "requests": {"cpu": cpu}}]}


def cpu_metric(target_pct: int, usage: dict[str, float | None], *, sample_ago: float = 10.0,
               window: float = 60.0) -> dict[str, Any]:
    return {"type": "Resource", "resource": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target_pct},
            "samples": [{"pod": p, "timestamp": NOW - sample_ago, "windowSeconds": window,
                         "containers": {"triton": v}} for p, v in usage.items()]}


def pods_metric(target: float, values: dict[str, float | None], name: str = "queueTime") -> dict[str, Any]:
    return {"type": "Pods", "name": name, "target": {"type": "AverageValue", "averageValue": target},
            "samples": [{"pod": p, "value": v} for p, v in values.items()]}


def snapshot(current: int, pods: list[dict[str, Any]], metrics: list[dict[str, Any]], *,
             min_r: int = 1, max_r: int = 100, behavior: Any = "default", status: int | None = None,
             recs: list[tuple[float, int]] | None = None,
             events: list[tuple[float, int]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "now": NOW, "currentReplicas": current, "statusReplicas": current if status is None else status,
        "minReplicas": min_r, "maxReplicas": max_r, "pods": pods, "metrics": metrics,
        "state": {"recommendations": [{"timestamp": NOW - ago, "replicas": r} for ago, r in (recs or [])],
                  "scaleEvents": [{"timestamp": NOW - ago, "change": c} for ago, c in (events or [])]},
    }
    doc["behavior"] = {} if behavior == "default" else behavior
    return doc
