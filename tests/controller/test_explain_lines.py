"""``autoscaler explain``'s lines for a predictive lease from its Deployment's Events, and when they cannot be read."""

from __future__ import annotations

import json

from autoscaler.commands.leases import explain_lines
from autoscaler.config import ANNOTATION_PREFIX as P
from autoscaler.config import STATUS_ANNOTATION, parse_policy

POLICY = parse_policy("autoscaling: {enable: true, metrics: {queueTime: {allowed: true, enabled: true, "
                      "threshold: {default: 10000, minimum: 1000, maximum: 0}}}}")


def deployment(message: str, slots: dict | None = None) -> dict:
    status = {"updated": "2026-11-24T20:00:00Z", "current": 2, "ready": 2, "desired": 3, "reason": "Capacity",
              "message": message, "metrics": [], **({"slots": slots} if slots else {})}
    return {"metadata": {"namespace": "ml", "name": "chat", "annotations": {
        P + "enabled": "true", P + "algorithm": "predictive", STATUS_ANNOTATION: json.dumps(status)}}}


def event(reason: str, message: str, when: str) -> dict:
    return {"reason": reason, "message": message, "lastTimestamp": when}


def test_explain_names_the_learnt_slots_or_why_the_hpa_rule_decides_or_that_events_are_unreadable() -> None:
    """Sized by the predictive algorithm: the newest SlotsLearned or SlotsEstimated message; decided by the HPA rule:
    the newest PredictiveUnavailable message; Events the caller may not list: one line saying what is left out."""
    events = [event("SlotsLearned", "sized on 4 slots a replica: old", "2026-11-24T19:00:00Z"),
              event("SlotsLearned", "sized on 6 slots a replica: new", "2026-11-24T19:30:00Z"),
              event("PredictiveUnavailable", "the pods serve with vLLM ...", "2026-11-24T18:00:00Z")]
    sized = "\n".join(explain_lines(deployment("predictive: 3.1 req/s now ..."), POLICY, "test", events))
    assert "  slots learnt: sized on 6 slots a replica: new" in sized and "the HPA rule decides" not in sized
    assert "could not be read" not in sized
    hpa = "\n".join(explain_lines(deployment("queueTime above target"), POLICY, "test", events))
    assert "  the HPA rule decides, not the predictive algorithm: the pods serve with vLLM" in hpa
    assert "slots learnt" not in hpa
    blind = "\n".join(explain_lines(deployment("predictive: 3.1 req/s now ..."), POLICY, "test", None))
    assert "the Deployment's Events could not be read" in blind and "grant list on events" in blind
    assert "could not be read" not in "\n".join(explain_lines(deployment("x"), POLICY, "test", []))
    # slots estimated from the KV cache before any saturation, then learnt: the newer of the two is named
    estimated = [event("SlotsEstimated", "sized on 9 slots a replica: kv", "2026-11-24T17:00:00Z")]
    sized = "\n".join(explain_lines(deployment("predictive: 3.1 req/s now ..."), POLICY, "test", estimated))
    assert "  slots estimated: sized on 9 slots a replica: kv" in sized and "slots learnt" not in sized
    sized = "\n".join(explain_lines(deployment("predictive: 3.1 req/s now ..."), POLICY, "test", estimated + events))
    assert "  slots learnt: sized on 6 slots a replica: new" in sized and "slots estimated" not in sized


def test_a_failed_write_does_not_hide_what_the_algorithm_decided() -> None:
    """The last decision a failed scale (a 409, its message the API's error): whether the predictive algorithm sized
    the lease is read from its newest other recent decision, not from the error."""
    events = [event("SlotsLearned", "sized on 2 slots a replica: saturated", "2026-11-24T19:30:00Z"),
              event("PredictiveUnavailable", "the pods serve with vLLM ...", "2026-11-24T18:00:00Z")]
    dep = deployment("409 Conflict: Operation cannot be fulfilled on deployments.apps \"chat\"")
    st = json.loads(dep["metadata"]["annotations"][STATUS_ANNOTATION])
    st["reason"] = "FailedRescale"
    st["recent"] = [{"time": 1, "current": 1, "desired": 1, "reason": "Capacity", "message": "queueTime above target"},
                    {"time": 2, "current": 1, "desired": 3, "reason": "Backlog", "message": "predictive: 25 req/s"},
                    {"time": 3, "current": 3, "desired": 3, "reason": "FailedRescale", "message": "409 Conflict"}]
    dep["metadata"]["annotations"][STATUS_ANNOTATION] = json.dumps(st)
    out = "\n".join(explain_lines(dep, POLICY, "test", events))
    assert "  slots learnt: sized on 2 slots a replica: saturated" in out and "the HPA rule decides" not in out, out
    st["recent"] = st["recent"][:1] + st["recent"][2:]  # the newest decision before the failed write: the HPA rule's
    dep["metadata"]["annotations"][STATUS_ANNOTATION] = json.dumps(st)
    out = "\n".join(explain_lines(dep, POLICY, "test", events))
    assert "the HPA rule decides, not the predictive algorithm" in out and "slots learnt" not in out, out


def test_explain_names_where_the_slots_of_a_sized_lease_come_from() -> None:
    """The status annotation's slots (per replica, and their source) are said in words while the predictive
    algorithm sizes the lease; not while the HPA rule decides it."""
    slots = {"perReplica": 8, "source": "reported"}
    sized = "\n".join(explain_lines(deployment("predictive: 3.1 req/s now ...", slots), POLICY, "test", []))
    assert "  slots: 8 a replica, from the pods' num_request_max" in sized, sized
    hpa = "\n".join(explain_lines(deployment("queueTime above target", slots), POLICY, "test", []))
    assert "slots:" not in hpa


def test_explain_says_how_a_lease_scales_to_zero() -> None:
    """A lease that may scale to zero: its idle period, wake threshold, wake replicas and rendered wake query."""
    policy = parse_policy("autoscaling: {enable: true, replicas: {limits: {minimum: {lowerBound: 0, upperBound: 2}}}, "
                          "metrics: {queueTime: {allowed: true, enabled: true, threshold: {default: 10000}}}, "
                          "scaleToZero: {wakeQuery: 'sum(rate(gw{service=\"{{name}}\"}[1m]))', idleSeconds: 600}}")
    dep = deployment("idle: ...")
    dep["metadata"]["annotations"].update({P + "min-replicas": "0", P + "wake-replicas": "2"})
    out = "\n".join(explain_lines(dep, policy, "test", []))
    assert ('scale to zero: after 600s without demand (wake value at or under 0); woken to 2 replica(s) by: '
            'sum(rate(gw{service="chat"}[1m]))') in out, out
    assert "scale to zero" not in "\n".join(explain_lines(deployment("x"), policy, "test", []))
    dep["metadata"]["annotations"][P + "wake-target"] = "12.5"
    out = "\n".join(explain_lines(dep, policy, "test", []))
    assert "woken to 2 replica(s), or one per 12.5 of the wake value by: " in out, out
    dep["metadata"]["annotations"].update({P + "wake-target": "auto", P + "algorithm": "predictive"})
    out = "\n".join(explain_lines(dep, policy, "test", []))
    assert "woken to 2 replica(s), or as many as the predictive algorithm sizes the wake value with (a request " \
        "rate, at its last service time and slots) by: " in out, out
