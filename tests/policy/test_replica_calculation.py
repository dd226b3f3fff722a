"""Per-metric replica proposals: the HPA replica calculator's rules, one table row per rule.

Cases re-state upstream's replica_calculator_test.go and the HPA documentation in our own words.
"""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.commands.decide import decide_document
from tests.policy.conftest import NOW, cpu_metric, pod, pods_metric, snapshot

P3 = [pod("p0"), pod("p1"), pod("p2")]

CASES: list[tuple[str, dict[str, Any], int, int | None]] = [
    # (case, snapshot, expected proposal of metric 0, expected utilization %)
    ("cpu scale up: 50% of requests against a 30% target -> ceil(3 * 50/30)",
     snapshot(3, P3, [cpu_metric(30, {"p0": 0.3, "p1": 0.5, "p2": 0.7})]), 5, 50),
    ("cpu scale down: 28% against 50% -> ceil(5 * 0.56) = 3",
     snapshot(5, [pod(f"p{i}") for i in range(5)],
              [cpu_metric(50, {"p0": 0.1, "p1": 0.3, "p2": 0.5, "p3": 0.25, "p4": 0.25})]), 3, 28),
    ("utilisation is truncated to a whole percent before the ratio (33.3% -> 33%)",
     snapshot(3, P3, [cpu_metric(30, {"p0": 0.1, "p1": 0.2, "p2": 0.7})]), 3, 33),
    ("within tolerance: ratio 1.1 exactly keeps the current count",
     snapshot(3, P3, [cpu_metric(50, {"p0": 0.55, "p1": 0.55, "p2": 0.55})]), 3, 55),
    ("just outside tolerance scales: 56% against 50%",
     snapshot(3, P3, [cpu_metric(50, {"p0": 0.56, "p1": 0.56, "p2": 0.56})]), 4, 56),
    ("unready pod counted as 0% on a scale-up (less scale)",
     snapshot(3, [pod("p0", ready=False, started_ago=120, ready_ago=110), pod("p1"), pod("p2")],
              [cpu_metric(30, {"p0": 0.3, "p1": 0.5, "p2": 0.7})]), 4, 60),
    ("unready pods that flip the direction after rebalancing -> no change",
     snapshot(3, [pod("p0"), pod("p1", ready=False, started_ago=120, ready_ago=110),
                  pod("p2", ready=False, started_ago=120, ready_ago=110)],
              [cpu_metric(30, {"p0": 0.4, "p1": 0.5, "p2": 0.7})]), 3, 40),
    ("pending pods are unready for every metric type: counted as 0 on a scale-up",
     snapshot(3, [pod("p0"), pod("p1"), pod("p2", phase="Pending")],
              [pods_metric(10000, {"p0": 20000, "p1": 20000})]), 4, None),
    ("failed pods are ignored entirely",
     snapshot(4, [pod("p0"), pod("p1"), pod("p2", phase="Failed"), pod("p3", phase="Failed")],
              [cpu_metric(30, {"p0": 0.5, "p1": 0.7, "p2": 0.0, "p3": 0.0})]), 4, 60),
    ("pods being deleted are ignored entirely",
     snapshot(4, [pod("p0"), pod("p1"), pod("p2", deleting=True), pod("p3", deleting=True)],
              [cpu_metric(30, {"p0": 0.5, "p1": 0.7, "p2": 0.0, "p3": 0.0})]), 4, 60),
    ("missing metrics on a scale-down count as 100% of request -> hold",
     snapshot(3, P3, [cpu_metric(50, {"p0": 0.3, "p1": 0.2, "p2": None})]), 3, 25),
    ("missing metrics on a scale-up count as 0% -> smaller scale-up",
     snapshot(3, P3, [cpu_metric(50, {"p0": 0.9, "p1": 0.9})]), 4, 90),
    ("missing metrics on a scale-down with a target above 100% use the target as fallback",
     snapshot(4, [pod(f"p{i}") for i in range(4)],
              [cpu_metric(300, {"p0": 0.1, "p1": 0.1, "p2": 0.1})]), 2, 10),
    ("cpu sample taken before one full window after readiness, within the init period -> unready",
     snapshot(3, [pod("p0", started_ago=60, ready_ago=50), pod("p1"), pod("p2")],
              [cpu_metric(30, {"p0": 1.0, "p1": 0.5, "p2": 0.7})]), 4, 60),
    ("after the init period, a pod unready since start (within readiness delay) is ignored",
     snapshot(3, [pod("p0", ready=False, started_ago=1000, ready_ago=990), pod("p1"), pod("p2")],
              [cpu_metric(30, {"p0": 1.0, "p1": 0.5, "p2": 0.7})]), 4, 60),
    ("after the init period, a pod that went unready later keeps its sample",
     snapshot(3, [pod("p0", ready=False, started_ago=1000, ready_ago=100), pod("p1"), pod("p2")],
              [cpu_metric(30, {"p0": 0.3, "p1": 0.5, "p2": 0.7})]), 5, 50),
    ("pods metric: average 20 ms against 15 ms -> ceil(3 * 1.333)",
     snapshot(3, P3, [pods_metric(15000, {"p0": 20000, "p1": 10000, "p2": 30000})]), 4, None),
    ("pods metric ignores readiness (no cpu rules): unready Running pods still count",
     snapshot(3, [pod("p0", ready=False), pod("p1"), pod("p2", ready=False)],
              [pods_metric(15000, {"p0": 50000, "p1": 10000, "p2": 30000})]), 6, None),
    ("pods metric: missing on scale-down counts as exactly the target (a smaller scale-down)",
     snapshot(3, P3, [pods_metric(10000, {"p0": 2000, "p1": 2000, "p2": None})]), 2, None),
    ("pods metric: missing on scale-up counts as 0",
     snapshot(3, P3, [pods_metric(10000, {"p0": 30000, "p1": 30000})]), 6, None),
    ("pods metric: integer average of milli values",
     snapshot(2, [pod("p0"), pod("p1")], [pods_metric(0.001, {"p0": 0.001, "p1": 0.002})]), 2, None),
]


@pytest.mark.parametrize(("case", "doc", "expected", "util"), CASES, ids=[c[0] for c in CASES])
def test_metric_proposal(case: str, doc: dict[str, Any], expected: int, util: int | None) -> None:
    """Each rule of the HPA replica calculator gives upstream's proposal and utilisation."""
    out = decide_document(doc)
    m = out["metrics"][0]
    assert m["error"] is None, m
    assert m["proposedReplicas"] == expected
    if util is not None:
        assert m["utilization"] == util


def _object(target_type: str, target: float, value: Any, name: str = "queue-depth", kind: str = "External") -> dict:
    key = "value" if target_type == "Value" else "averageValue"
    return {"type": kind, "name": name, "target": {"type": target_type, key: target}, "value": value}


OBJ_CASES: list[tuple[str, dict[str, Any], int, float]] = [
    ("external Value: ratio times ready pods", snapshot(3, P3, [_object("Value", 100, 350)]), 11, 350.0),
    ("external Value within tolerance keeps current", snapshot(3, P3, [_object("Value", 100, 105)]), 3, 105.0),
    ("external Value counts only Running+Ready pods",
     snapshot(3, [pod("p0"), pod("p1", ready=False), pod("p2", phase="Pending")], [_object("Value", 100, 300)]),
     3, 300.0),
    ("external Value from zero replicas: ceil(ratio) without pods",
     snapshot(0, [], [_object("Value", 100, 250)], min_r=0), 3, 250.0),
    ("external Value list of series is summed", snapshot(3, P3, [_object("Value", 100, [100, 200])]), 9, 300.0),
    ("external AverageValue: ceil(value / target) and per-pod usage over status replicas",
     snapshot(3, P3, [_object("AverageValue", 100, 1000)]), 10, 333.334),
    ("external AverageValue within tolerance of status replicas keeps them",
     snapshot(3, P3, [_object("AverageValue", 100, 310)], status=3), 3, 103.334),
    ("object Value scales like external", snapshot(2, P3[:2], [_object("Value", 10, 5, kind="Object")]), 1, 5.0),
]


@pytest.mark.parametrize(("case", "doc", "expected", "usage"), OBJ_CASES, ids=[c[0] for c in OBJ_CASES])
def test_object_and_external(case: str, doc: dict[str, Any], expected: int, usage: float) -> None:
    """Object/External metrics follow getUsageRatioReplicaCount and the per-pod AverageValue rule."""
    out = decide_document(doc)
    m = out["metrics"][0]
    assert (m["proposedReplicas"], m["usage"]) == (expected, usage)


def test_missing_cpu_request_is_a_metric_error() -> None:
    """A pod without a cpu request makes the Utilization metric fail with upstream's message."""
    doc = snapshot(2, [pod("p0"), {"name": "p1", "startTime": NOW - 999, "containers": [{"name": "triton"}]}],
                   [cpu_metric(50, {"p0": 0.5, "p1": 0.5})])
    out = decide_document(doc)
    assert out["metrics"][0]["error"] == "missing request for cpu in container triton of Pod p1"
    assert out["desiredReplicas"] == 2 and out["reason"] == "FailedGetResourceMetric"


def test_no_pods_is_a_metric_error() -> None:
    """With no pods the calculator refuses to guess."""
    out = decide_document(snapshot(2, [], [cpu_metric(50, {})]))
    assert "no pods returned by selector" in out["metrics"][0]["error"]


def test_all_pods_unready_is_a_metric_error() -> None:
    """Metrics only from unready pods: 'did not receive metrics for targeted pods'."""
    doc = snapshot(1, [pod("p0", phase="Pending")], [pods_metric(10, {"p0": 5})])
    assert "did not receive metrics" in decide_document(doc)["metrics"][0]["error"]


def test_container_resource_uses_only_that_container() -> None:
    """ContainerResource reads the named container's usage and request only."""
    p = {"name": "p0", "startTime": NOW - 9999, "readyTransitionTime": NOW - 9990,
         "containers": [{"name": "triton", "requests": {"cpu": 1}}, {"name": "sidecar", "requests": {"cpu": 1}}]}
    m = {"type": "ContainerResource", "resource": "cpu", "container": "triton",
         "target": {"type": "Utilization", "averageUtilization": 50},
         "samples": [{"pod": "p0", "timestamp": NOW - 5, "windowSeconds": 30,
                      "containers": {"triton": 1.0, "sidecar": 0.0}}]}
    out = decide_document(snapshot(1, [p], [m]))
    assert out["metrics"][0]["utilization"] == 100 and out["metrics"][0]["proposedReplicas"] == 2
