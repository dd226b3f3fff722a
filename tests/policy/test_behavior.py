"""Behaviour: stabilisation windows, rate policies, min/max clamp and HPA reasons, both directions.

Re-states upstream horizontal_test.go (TestNormalizeDesiredReplicasWithBehavior, TestScalingWithRules,
the legacy normalisation tests) and the HPA documentation's behaviour examples.
"""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.commands.decide import decide_document
from tests.policy.conftest import pod, pods_metric, snapshot


def fleet(n: int) -> list[dict[str, Any]]:
    return [pod(f"p{i}") for i in range(n)]


def wanting(current: int, desired: int, **kw: Any) -> dict[str, Any]:
    """A snapshot whose single Pods metric proposes exactly ``desired`` replicas."""
    values = {f"p{i}": 1000.0 * desired / current for i in range(current)}
    return snapshot(current, fleet(current), [pods_metric(1000, values)], **kw)


def rules(window: int | None = None, select: str | None = None, policies: list[tuple[str, int, int]] | None = None):
    r: dict[str, Any] = {}
    if window is not None:
        r["stabilizationWindowSeconds"] = window
    if select is not None:
        r["selectPolicy"] = select
    if policies is not None:
        r["policies"] = [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies]
    return r


CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("default behaviour: scale-up limited to max(+4 pods, +100%) per 15 s",
     wanting(5, 40), 10, "ScaleUpLimit"),
    ("default behaviour: small fleet gains 4 pods at once", wanting(1, 40), 5, "ScaleUpLimit"),
    ("scale-up within limits", wanting(4, 7), 7, "DesiredWithinRange"),
    ("scale-up capped by maxReplicas -> TooManyReplicas", wanting(4, 7, max_r=6), 6, "TooManyReplicas"),
    ("Pods policy 1 per 60 s", wanting(5, 9, behavior={"scaleUp": rules(policies=[("Pods", 1, 60)])}),
     6, "ScaleUpLimit"),
    ("selectPolicy Min takes the smaller allowance",
     wanting(10, 40, behavior={"scaleUp": rules(select="Min", policies=[("Pods", 4, 15), ("Percent", 100, 15)])}),
     14, "ScaleUpLimit"),
    ("selectPolicy Disabled forbids scale-up", wanting(3, 9, behavior={"scaleUp": rules(select="Disabled")}),
     3, "ScaleUpLimit"),
    ("recent scale-up events use up the period's allowance",
     wanting(6, 20, behavior={"scaleUp": rules(policies=[("Pods", 4, 60)])}, events=[(30, 3)]), 7, "ScaleUpLimit"),
    ("events older than the period do not count",
     wanting(6, 20, behavior={"scaleUp": rules(policies=[("Pods", 4, 60)])}, events=[(90, 3)]), 10, "ScaleUpLimit"),
    ("a recent scale-down raises the scale-up allowance base",
     wanting(6, 20, behavior={"scaleUp": rules(policies=[("Pods", 2, 60)])}, events=[(30, -2)]), 10, "ScaleUpLimit"),
    ("scale-up stabilisation window keeps the lowest recent recommendation",
     wanting(3, 8, behavior={"scaleUp": rules(window=60)}, recs=[(30, 4), (90, 2)]), 4, "ScaleUpStabilized"),
    ("scale-down stabilisation keeps the highest recent recommendation",
     wanting(10, 5, recs=[(100, 8), (400, 12)]), 8, "ScaleDownStabilized"),
    ("scale-down after the window passes", wanting(10, 5, recs=[(301, 10)]), 5, "DesiredWithinRange"),
    ("scale-down window 0 with default policy goes straight down",
     wanting(10, 2, behavior={"scaleDown": rules(window=0)}), 2, "DesiredWithinRange"),
    ("scale-down Percent 50 per 60 s", wanting(10, 2, behavior={"scaleDown": rules(window=0, policies=[("Percent", 50, 60)])}),
     5, "ScaleDownLimit"),
    ("scale-down Percent truncates: 7 * 0.9 = 6.3 -> 6",
     wanting(7, 1, behavior={"scaleDown": rules(window=0, policies=[("Percent", 10, 60)])}), 6, "ScaleDownLimit"),
    ("scale-down Pods 1 per 60 s, with a recent scale-down using it up",
     wanting(8, 2, behavior={"scaleDown": rules(window=0, policies=[("Pods", 1, 60)])}, events=[(20, -1)]),
     8, "ScaleDownLimit"),
    ("scale-down selectPolicy Min removes the fewest",
     wanting(10, 1, behavior={"scaleDown": rules(window=0, select="Min",
                                                 policies=[("Pods", 1, 60), ("Percent", 50, 60)])}),
     9, "ScaleDownLimit"),
    ("scale-down Disabled", wanting(10, 1, behavior={"scaleDown": rules(window=0, select="Disabled")}),
     10, "ScaleDownLimit"),
    ("scale-down clamped by minReplicas -> TooFewReplicas",
     wanting(10, 2, min_r=4, behavior={"scaleDown": rules(window=0)}), 4, "TooFewReplicas"),
    ("no behaviour (legacy): scale-up limited to max(2x, 4)", wanting(3, 20, behavior=None), 6, "ScaleUpLimit"),
    ("legacy: from 1 replica up to 4", wanting(1, 20, behavior=None), 4, "ScaleUpLimit"),
    ("legacy: maxReplicas below the rate limit", wanting(3, 20, behavior=None, max_r=5), 5, "TooManyReplicas"),
    ("legacy: 5-minute downscale stabilisation", wanting(10, 5, behavior=None, recs=[(200, 9)]), 9,
     "ScaleDownStabilized"),
    ("legacy: minReplicas floor", wanting(10, 1, behavior=None, min_r=3), 3, "TooFewReplicas"),
]


@pytest.mark.parametrize(("case", "doc", "desired", "reason"), CASES, ids=[c[0] for c in CASES])
def test_behaviour(case: str, doc: dict[str, Any], desired: int, reason: str) -> None:
    """Each behaviour rule decides upstream's replica count and names the HPA reason."""
    out = decide_document(doc)
    assert (out["desiredReplicas"], out["reason"]) == (desired, reason)


def test_first_decision_records_current_as_initial_recommendation() -> None:
    """With no state at all, the current count is recorded first, so nothing scales down at once."""
    doc = wanting(10, 5)
    del doc["state"]
    out = decide_document(doc)
    assert (out["desiredReplicas"], out["reason"]) == (10, "ScaleDownStabilized")
    assert [r["replicas"] for r in out["state"]["recommendations"]] == [10, 5]


def test_recommendation_bookkeeping_reuses_the_last_outdated_slot() -> None:
    """Upstream replaces the last sample older than both windows instead of appending."""
    out = decide_document(wanting(10, 5, recs=[(900, 7), (800, 6), (100, 9)]))
    assert [r["replicas"] for r in out["state"]["recommendations"]] == [7, 5, 9]


def test_scale_event_recorded_with_sign() -> None:
    """A decided change is in the returned state as a signed scale event; the legacy path keeps none."""
    up = decide_document(wanting(4, 7))
    assert up["state"]["scaleEvents"][-1]["change"] == 3
    down = decide_document(wanting(10, 5, behavior={"scaleDown": rules(window=0)}))
    assert down["state"]["scaleEvents"][-1]["change"] == -5
    assert decide_document(wanting(3, 5, behavior=None))["state"]["scaleEvents"] == []


def test_state_round_trips_through_decide() -> None:
    """Feeding the returned state back in holds a scale-down for the window, then releases it."""
    doc = wanting(10, 10)
    first = decide_document(doc)
    later = wanting(10, 4)
    later["state"] = first["state"]
    for r in later["state"]["recommendations"]:
        r["timestamp"] -= 100
    assert decide_document(later)["desiredReplicas"] == 10
    for r in later["state"]["recommendations"]:
        r["timestamp"] -= 250
    assert decide_document(later)["desiredReplicas"] == 4


def test_any_failed_metric_blocks_scale_down() -> None:
    """If any metric failed and the others would scale down, hold (upstream's invalid-metric rule)."""
    doc = wanting(5, 2, behavior={"scaleDown": rules(window=0)})
    doc["metrics"].append({"type": "External", "name": "broken", "target": {"type": "Value", "value": 1},
                           "error": "prometheus: connection refused"})
    out = decide_document(doc)
    assert out["desiredReplicas"] == 5 and out["reason"] == "FailedGetExternalMetric"
    assert out["metrics"][1]["error"] == "prometheus: connection refused"


def test_failed_metric_does_not_block_scale_up() -> None:
    """A failing metric never stops the working ones from scaling up."""
    doc = wanting(3, 6)
    doc["metrics"].insert(0, {"type": "Pods", "name": "broken", "target": {"type": "AverageValue", "averageValue": 1},
                              "samples": [], "error": "timeout"})
    out = decide_document(doc)
    assert out["desiredReplicas"] == 6 and out["metrics"][0]["proposedReplicas"] is None


def test_all_metrics_failed_holds() -> None:
    """All metrics invalid: keep the current count and say why."""
    doc = snapshot(4, fleet(4), [pods_metric(10, {})])
    out = decide_document(doc)
    assert out["desiredReplicas"] == 4 and out["reason"] == "FailedGetPodsMetric"


def test_maximum_over_metrics_wins() -> None:
    """The largest proposal across metrics is used and named."""
    doc = snapshot(2, fleet(2), [pods_metric(10, {"p0": 20, "p1": 20}, name="a"),
                                 pods_metric(10, {"p0": 30, "p1": 30}, name="b")])
    out = decide_document(doc)
    assert out["desiredReplicas"] == 6 and "pods metric b" in out["message"]


@pytest.mark.parametrize(("current", "min_r", "max_r", "desired", "reason"), [
    (0, 1, 5, 0, "ScalingDisabled"),
    (7, 1, 5, 5, "TooManyReplicas"),
    (1, 3, 5, 3, "TooFewReplicas"),
], ids=["zero replicas disables scaling", "above max is brought down", "below min is brought up"])
def test_out_of_range_current(current: int, min_r: int, max_r: int, desired: int, reason: str) -> None:
    """Scaling disabled at zero, out-of-range counts corrected before any metric is read."""
    doc = snapshot(current, fleet(current), [pods_metric(10, {f"p{i}": 10 for i in range(current)})],
                   min_r=min_r, max_r=max_r)
    out = decide_document(doc)
    assert (out["desiredReplicas"], out["reason"]) == (desired, reason)
