"""The controller against the sandbox API server and a real Prometheus scraping simulated Triton pods."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.config import PREDICTIVE_STATE_ANNOTATION, STATE_ANNOTATION, STATUS_ANNOTATION
from autoscaler.metrics import ClientSettings, InstantVector, PrometheusClient
from autoscaler.policy.predictive import PredictiveState
from autoscaler.sandbox.controllers import ANN_STARTUP
from autoscaler.sandbox.faultproxy import FaultProxy
from autoscaler.sandbox.resources import DEPLOYMENTS, LEASES
from autoscaler.statestore import PredictivePersisted, parse_predictive
from tests.controller.conftest import HEAVY, Env, wait_for
from tests.support import SERVING

pytestmark = pytest.mark.asyncio(loop_scope="module")
P = "inference-autoscaler.io/"


def status(env: Env, name: str) -> dict:
    raw = env.get(name)["metadata"].get("annotations", {}).get(STATUS_ANNOTATION)
    return json.loads(raw) if raw else {}


async def test_scale_up_under_load_then_down_only_after_window(env: Env) -> None:
    """A load step scales the lease up; after the load stops, scale-down waits for the stabilisation window."""
    env.deployment("step", {P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "step")
    async with env.controller() as ctl:
        await env.load("step", HEAVY)
        await wait_for(lambda: env.replicas("step") >= 3, 25, "scale-up under load")
        await env.dataplane.stop_load("default", "step")
        stopped = time.monotonic()
        await wait_for(lambda: env.replicas("step") < 3, 40, "scale-down after the load stopped")
        waited = time.monotonic() - stopped
        history = ctl.runtime[("default", "step")].history
    assert waited >= 8 - 1.0, f"scaled down {waited:.1f}s after the load stopped, inside the 8 s window"
    assert any(h["reason"] == "ScaleDownStabilized" for h in history)
    st = status(env, "step")
    assert st["max"] == 4 and st["metrics"][0]["name"] == "queueTime"
    kinds = [e["reason"] for e in env.events("step")]
    assert "SuccessfulRescale" in kinds


async def test_scale_to_zero_when_idle_and_woken_by_the_gateway(env: Env) -> None:
    """A lease with min-replicas 0 goes to zero replicas once its wake query (the sandbox gateway's request rate) has
    been 0 for the idle period, and back to serving when requests arrive at the gateway, sized from them while its
    pods start (wake-target: 4 req/s per replica); a human's scale from zero gets a whole idle period."""
    pfile = env.policy_file.with_name("policy-zero.yaml")
    pfile.write_text(env.policy_file.read_text().replace("lowerBound: 1", "lowerBound: 0") + """
  scaleToZero:
    wakeQuery: 'sum(rate(sandbox_gateway_requests_total{namespace="{{namespace}}",service="{{name}}"}[3s])) or vector(0)'
    idleSeconds: 2
""")
    env.deployment("zero", {P + "min-replicas": "0", P + "max-replicas": "3", P + "wake-target": "4"})
    await env.cluster.wait_for_ready("default", "zero")
    async with env.controller(policy_file=str(pfile)) as ctl:
        await wait_for(lambda: env.replicas("zero") == 0, 20, "scale to zero after the idle period")
        await wait_for(lambda: status(env, "zero").get("reason") in ("ScaleToZero", "Idle"), 5, "status at zero")
        env.scale("zero", 1)  # warmed by hand: not taken back at once
        await asyncio.sleep(1.2)
        assert env.replicas("zero") == 1
        env.scale("zero", 0)  # and parked by hand: no demand, so it stays there
        await asyncio.sleep(1.0)
        assert env.replicas("zero") == 0
        dep = env.cluster.registry.get(DEPLOYMENTS, "default", "zero")
        dep["metadata"]["annotations"][ANN_STARTUP] = "4"  # woken pods load their model for 4 s, as GPU pods do
        env.cluster.registry.update(DEPLOYMENTS, "default", "zero", dep)
        stats = env.dataplane.load_stats("default", "zero")
        await env.load("zero", {"profile": {"type": "constant", "rate": 10}})
        await wait_for(lambda: env.replicas("zero") >= 1, 15, "woken by the gateway's requests")
        await wait_for(lambda: stats.sent - stats.unrouted > 20, 20, "served once the pod is Ready")
        assert stats.unrouted > 0  # requests that came while at zero: the gateway's 503s
        await asyncio.sleep(2.5)  # longer than the idle period: requests keep it up
        assert env.replicas("zero") >= 1
        labels = {"namespace": "default", "lease": "zero"}
        assert ctl.telemetry.registry.get_sample_value("autoscaler_lease_wake_value", labels) > 0
        assert ctl.telemetry.registry.get_sample_value("autoscaler_lease_idle_seconds", labels) < 2
        await env.dataplane.stop_load("default", "zero")
    messages = [e["message"] for e in env.events("zero") if e["reason"] == "SuccessfulRescale"]
    assert any("New size: 0" in m and "scaling to zero" in m for m in messages), messages
    assert any("scaling from zero" in m for m in messages), messages
    # 10 req/s at 4 per replica: three replicas asked for before the first woken pod was Ready
    assert any("New size: 3" in m and ("scaling from zero to 3" in m or "no pod Ready yet" in m)
               for m in messages), messages


async def test_a_predictive_lease_is_woken_to_what_its_gateway_rate_needs(env: Env) -> None:
    """wake-target: auto, end to end: a predictive lease measures its service time while it serves, goes to zero once
    idle, and is woken by a burst at its gateway to the replicas the predictive algorithm sizes that rate with (at
    the service time it measured and its 2 slots), not to one replica."""
    pfile = env.policy_file.with_name("policy-zero-auto.yaml")
    pfile.write_text(env.policy_file.read_text().replace("lowerBound: 1", "lowerBound: 0") + """
  algorithm: predictive
  predictive: {rateWindowSeconds: 3, burstWindowSeconds: 0, trendWindowSeconds: 0, lagSeconds: 0,
               scaleDownWindowSeconds: 4, startupSeconds: 1, violationTarget: 0.05, panicQueueFactor: 0}
  scaleToZero:
    wakeQuery: 'sum(rate(sandbox_gateway_requests_total{namespace="{{namespace}}",service="{{name}}"}[3s])) or vector(0)'
    idleSeconds: 3
    wakeTargetPerReplica: auto
""")
    env.deployment("auto", {P + "min-replicas": "0", P + "max-replicas": "4", P + "slots-per-replica": "2"})
    await env.cluster.wait_for_ready("default", "auto")
    async with env.controller(policy_file=str(pfile)) as ctl:
        await env.load("auto", {"profile": {"type": "constant", "rate": 10}})
        await wait_for(lambda: ctl.runtime.get(("default", "auto")) is not None and (
            st := ctl.runtime[("default", "auto")].predictive) is not None and st.service_time_s is not None, 20,
            "a service time measured while it serves")
        await env.dataplane.stop_load("default", "auto")
        await wait_for(lambda: env.replicas("auto") == 0, 20, "scale to zero after the idle period")
        dep = env.cluster.registry.get(DEPLOYMENTS, "default", "auto")
        dep["metadata"]["annotations"][ANN_STARTUP] = "4"  # woken pods load their model for 4 s
        env.cluster.registry.update(DEPLOYMENTS, "default", "auto", dep)
        await env.load("auto", {"profile": {"type": "constant", "rate": 100}})  # 2.5 pods' worth at 40 req/s each
        await wait_for(lambda: env.replicas("auto") >= 3, 15, "woken by the burst to what its rate needs")
        await env.dataplane.stop_load("default", "auto")
    woken = [e["message"] for e in env.events("auto") if e["reason"] == "SuccessfulRescale"
             and ("scaling from zero" in e["message"] or "no pod Ready yet" in e["message"])]
    assert woken and all("at its last service time" in m and "and 2 slots a replica" in m for m in woken), woken
    assert any("New size: 3" in m or "New size: 4" in m for m in woken), woken


async def test_fleet_policy_semantics_shadow_paused_and_bad_annotations(env: Env) -> None:
    """One loop, many leases: TMS limits/defaults, shadow, paused and invalid leases are each handled alone."""
    env.deployment("limited", {P + "max-replicas": "9", P + "metrics": "queueTime,cpuUtilization"})
    env.deployment("defaults", {})
    env.deployment("shadow", {P + "mode": "shadow"})
    env.deployment("paused", {P + "paused": "true"})
    env.deployment("broken", {P + "max-replicas": "ten", P + "mode": "yolo"})
    names = ["limited", "defaults", "shadow", "paused", "broken"]
    for n in names:
        await env.cluster.wait_for_ready("default", n)
    async with env.controller() as ctl:
        for n in names:
            await env.load(n, HEAVY)
        await wait_for(lambda: env.replicas("limited") == 4 and env.replicas("defaults") == 3, 30,
                       "limited at the cluster limit 4 and defaults at the default maximum 3")
        await asyncio.sleep(3)
        assert ctl.last_report.invalid == 1 and ctl.last_report.paused == 1
    for n in names:
        await env.dataplane.stop_load("default", n)
    assert env.replicas("limited") == 4 and env.replicas("defaults") == 3
    assert env.replicas("shadow") == 1 and env.replicas("paused") == 1 and env.replicas("broken") == 1
    # adjustments and invalid values become Warning Events naming key, value and rule
    limited_msgs = [e["message"] for e in env.events("limited") if e["type"] == "Warning"]
    assert any("max-replicas='9'" in m and "replicas.limits.maximum=4" in m for m in limited_msgs)
    assert any("'cpuUtilization' is neither enabled nor allowed" in m for m in limited_msgs)
    broken = [e for e in env.events("broken") if e["reason"] == "InvalidAnnotation"]
    assert {e["message"].split("=")[0] for e in broken} == {P + "max-replicas", P + "mode"}
    assert STATUS_ANNOTATION not in env.get("broken")["metadata"].get("annotations", {})
    # shadow reports what it would do, in its status, an Event and the metric; paused is untouched
    sh = status(env, "shadow")
    assert sh["mode"] == "shadow" and sh["desired"] > 1 and sh["current"] == 1
    assert any(e["reason"] == "ShadowRescale" for e in env.events("shadow"))
    assert STATUS_ANNOTATION not in env.get("paused")["metadata"].get("annotations", {})


async def test_policy_configmap_is_hot_reloaded_and_a_bad_one_keeps_the_last_good(env: Env) -> None:
    """The policy ConfigMap bounds the leases as soon as it is edited; a bad edit is rejected with a Warning Event on
    the ConfigMap naming the field, the last good policy stays in force and the loop goes on; fixing it is
    confirmed with a Normal Event."""
    env.deployment("reload", {})
    await env.cluster.wait_for_ready("default", "reload")
    cm_path = "/api/v1/namespaces/default/configmaps/policy-reload"
    text = env.policy_file.read_text()

    def cm(policy: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "policy-reload", "namespace": "default"},
                "data": {"policy.yaml": policy}}
    env.cluster.create(cm(text.replace("default: {minimum: 1, maximum: 3}", "default: {minimum: 1, maximum: 2}")))
    async with env.controller(namespace="default", configmap="policy-reload") as ctl:
        api = ctl.api
        await env.load("reload", HEAVY)
        await wait_for(lambda: env.replicas("reload") == 2, 30, "the ConfigMap's default maximum 2 (the file says 3)")
        four = text.replace("default: {minimum: 1, maximum: 3}", "default: {minimum: 1, maximum: 4}")
        await api.put(cm_path, cm(four))
        await wait_for(lambda: env.replicas("reload") == 4, 30, "the edited maximum 4, without a restart")
        version = ctl.policy.version
        await api.put(cm_path, cm(four.replace("limits: {maximum: 4,", "limits: {maximum: 3,")))  # under the default
        await wait_for(lambda: any(e["reason"] == "InvalidPolicy" for e in env.events("policy-reload")), 10,
                       "a Warning Event on the ConfigMap")
        (bad,) = [e for e in env.events("policy-reload") if e["reason"] == "InvalidPolicy"]
        assert bad["type"] == "Warning" and bad["involvedObject"]["kind"] == "ConfigMap"
        assert "default.maximum (4) is greater than limits.maximum (3)" in bad["message"]
        assert "keeping the last good policy" in bad["message"]
        ticks = ctl.last_report
        await wait_for(lambda: ctl.last_report is not ticks, 10, "the loop going on")
        assert ctl.policy.version == version and ctl.last_report.leases >= 1 and env.replicas("reload") == 4
        assert status(env, "reload")["max"] == 4
        await api.put(cm_path, cm(text))
        loaded = f"policy version {version + 1} in use"
        await wait_for(lambda: any(e["reason"] == "PolicyLoaded" and e["type"] == "Normal" and loaded in e["message"]
                                   for e in env.events("policy-reload")), 10, "a Normal Event once it is good again")
        await wait_for(lambda: env.replicas("reload") == 3, 30, "the default maximum 3 again")
    await env.dataplane.stop_load("default", "reload")


async def test_prometheus_outage_never_scales_down_and_recovers(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """With Prometheus unreachable the lease holds its size, a Warning Event says which metric failed and why (one
    Event, its count going up) and so does one log line; when Prometheus returns, the log says so and the loop
    resumes."""
    caplog.set_level(logging.INFO, logger="autoscaler.controller")
    env.deployment("outage", {P + "max-replicas": "4"}, replicas=3)
    await env.cluster.wait_for_ready("default", "outage")
    async with FaultProxy(env.dataplane.prometheus_url) as proxy:
        proxy.set("down")
        async with env.controller(prometheus_url=proxy.url) as ctl:
            await asyncio.sleep(12)  # longer than the 8 s scale-down window
            assert env.replicas("outage") == 3
            assert status(env, "outage")["reason"] == "FailedGetPodsMetric"
            assert ctl.runtime[("default", "outage")].failures >= 2
            (failed,) = [e for e in env.events("outage") if e["reason"] == "FailedGetMetrics"]
            assert failed["type"] == "Warning" and failed["message"].startswith("unable to get metrics: queueTime: ")
            assert "cannot reach Prometheus" in failed["message"] or "no answer" in failed["message"], failed
            failing = [r for r in caplog.records if "query failed" in r.getMessage()]
            assert [r.getMessage().split(":")[0] for r in failing] == ["queueTime query failed"], failing
            assert failing[0].levelno == logging.WARNING
            proxy.set("pass")
            await wait_for(lambda: env.replicas("outage") < 3, 25, "scale-down once metrics are back (no load)")
            assert any(r.getMessage().startswith("queueTime query works again") for r in caplog.records)


async def test_manual_scale_is_taken_as_current(env: Env) -> None:
    """A human's kubectl scale is noticed, reported, and not reverted at once."""
    env.deployment("manual", {P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "manual")
    async with env.controller():
        await wait_for(lambda: bool(status(env, "manual")), 10, "first decision")
        _scale(env, "manual", 3)
        await wait_for(lambda: any(e["reason"] == "ManualScaleDetected" for e in env.events("manual")), 10,
                       "ManualScaleDetected event")
        await asyncio.sleep(4)  # inside the 8 s window: held
        assert env.replicas("manual") == 3
    assert not [e for e in env.events("manual") if e["reason"] == "ReplicasFought"]  # once is a human


async def test_replicas_changed_again_and_again_outside_are_another_writer(env: Env) -> None:
    """Three changes of replicas from outside within ten minutes (an HPA or a GitOps sync on the same Deployment):
    each is taken as the current count, and a Warning Event says another writer seems to scale it too."""
    env.deployment("fought", {P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "fought")
    async with env.controller() as ctl:
        await wait_for(lambda: bool(status(env, "fought")), 10, "first decision")
        for replicas in (3, 2, 4):
            _scale(env, "fought", replicas)
            await wait_for(lambda r=replicas: ctl.runtime[("default", "fought")].last_seen_replicas == r, 10,
                           f"the controller seeing {replicas} replicas")
        await wait_for(lambda: any(e["reason"] == "ReplicasFought" for e in env.events("fought")), 10,
                       "a ReplicasFought Event")
    (fought,) = [e for e in env.events("fought") if e["reason"] == "ReplicasFought"]
    assert fought["type"] == "Warning" and "changed outside the autoscaler 3 times in 10 minutes" in fought["message"]
    assert "autoscaler doctor" in fought["message"] and "kubectl get deployment fought --show-managed-fields" in \
        fought["message"], fought


def _scale(env: Env, name: str, replicas: int) -> None:
    obj = env.get(name)
    obj["spec"]["replicas"] = replicas
    env.cluster.registry.update(DEPLOYMENTS, "default", name, obj)


async def test_conflict_rereads_and_redecides(env: Env) -> None:
    """A scale patch based on a stale view gets 409; the controller re-reads, writes nothing, and the next loop
    decides from the fresh count, taken as a human's change (held, not fought back to the minimum)."""
    env.deployment("conflict", {P + "min-replicas": "2", P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "conflict")
    from autoscaler.controller import Controller
    from autoscaler.kube.api import KubeApi
    api = await KubeApi.connect(str(env.kubeconfig))
    ctl = Controller(api, env.settings())
    try:
        for cache in (ctl.deployments, ctl.pods, ctl.configmaps):
            await cache.relist()
        _scale(env, "conflict", 3)  # the controller's cache still says 1 (no watch running)
        await ctl.tick()
        assert ctl.conflicts == 1
        rt = ctl.runtime[("default", "conflict")]
        assert rt.last["reason"] == "ScaleConflict" and not rt.last["applied"], rt.last
        assert env.replicas("conflict") == 3  # not blindly overwritten to 2 from the stale view
        await ctl.tick()
        assert rt.last["current"] == 3 and rt.last["desired"] == 3, rt.last  # held for the scale-down window
        assert any(e["reason"] == "ManualScaleDetected" for e in env.events("conflict"))
        assert env.replicas("conflict") == 3 and ctl.conflicts == 1
    finally:
        await ctl.aclose()
        await api.close()


async def test_restart_keeps_scale_down_rate_limit(env: Env) -> None:
    """A restarted controller restores scale events, so it does not scale down faster than the policy."""
    policy = env.policy_file.read_text().replace(
        "scaleDown: {stabilizationWindowSeconds: 8}",
        "scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 1, periodSeconds: 12}]}")
    pfile = env.policy_file.with_name("policy-ratelimit.yaml")
    pfile.write_text(policy)
    env.deployment("restart", {P + "max-replicas": "4"}, replicas=4)
    await env.cluster.wait_for_ready("default", "restart")
    async with env.controller(policy_file=str(pfile)):
        await wait_for(lambda: env.replicas("restart") == 3, 20, "first scale-down 4 -> 3")
        first = time.monotonic()
        await wait_for(lambda: STATE_ANNOTATION in env.get("restart")["metadata"].get("annotations", {}), 5,
                       "state persisted")
    async with env.controller(policy_file=str(pfile)):
        await wait_for(lambda: env.replicas("restart") == 2, 30, "second scale-down 3 -> 2")
        second = time.monotonic()
    assert second - first >= 12 - 1.5, f"second scale-down after {second - first:.1f}s, policy allows 1 per 12 s"


async def test_two_controllers_one_leader_and_failover(env: Env) -> None:
    """Two controllers: exactly one leads and only it writes; a leader that stops releases the Lease, so the
    standby takes over at its next retry instead of after the lease duration."""
    env.deployment("ha", {P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "ha")
    election = {"leader_election": True, "lease_duration_s": 15.0, "renew_deadline_s": 10.0, "retry_period_s": 1.0,
                "namespace": "default"}
    async with env.controller(identity="a", **election) as a:
        await wait_for(lambda: a.is_leader, 15, "a leads")
        async with env.controller(identity="b", **election) as b:
            await asyncio.sleep(2)
            await wait_for(lambda: a.is_leader != b.is_leader, 15, "exactly one leader")
            leader, standby = (a, b) if a.is_leader else (b, a)
            writes = standby.api.writes
            await asyncio.sleep(2)
            if not standby.is_leader:
                assert standby.api.writes == writes, "a standby wrote to the API"
            leader.stop.set()
            took = await wait_for(lambda: standby.is_leader, 30, "the standby takes over")
            holder = env.cluster.registry.get(LEASES, "default", "inference-autoscaler")["spec"].get("holderIdentity")
            assert holder == standby.settings.identity
    assert took <= 2 * 1.0 + 4.0, f"took {took:.1f}s: the lease (15 s) ran out instead of being released"
    assert "holderIdentity" not in env.cluster.registry.get(LEASES, "default", "inference-autoscaler")["spec"]


async def test_predictive_lease_scales_on_capacity_and_back(env: Env) -> None:
    """A lease on the predictive algorithm sizes itself from request rate and service time, then shrinks."""
    pfile = env.policy_file.with_name("policy-predictive.yaml")
    pfile.write_text(env.policy_file.read_text() + """
  predictive: {rateWindowSeconds: 6, burstWindowSeconds: 0, trendWindowSeconds: 0, lagSeconds: 0,
               scaleDownWindowSeconds: 4, startupSeconds: 1, violationTarget: 0.05, reactiveQueueFactor: 0,
               panicQueueFactor: 0}
""")
    # panic is off: this test is about sizing from rate x service time, and a queue that builds before the
    # first rate is visible would otherwise double the fleet first (that path has its own tests)
    env.deployment("predict", {P + "algorithm": "predictive", P + "slots-per-replica": "2", P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "predict")
    async with env.controller(policy_file=str(pfile)) as ctl:
        await env.load("predict", {"profile": {"type": "constant", "rate": 100}})
        rt = ctl.runtime  # the HPA core decides until the first request rate is visible, and may scale first

        def sized_by_rate() -> bool:
            last = rt[("default", "predict")].last if ("default", "predict") in rt else {}
            return bool(last) and last["message"].startswith("predictive:") and last["desired"] >= 3
        await wait_for(lambda: env.replicas("predict") >= 3 and sized_by_rate(), 40,
                       "predictive scale-up from the request rate")
        # what it sized for is on /metrics: the rate it saw and the rate it sized for, at least that
        def rate(kind: str) -> float:
            value = ctl.telemetry.registry.get_sample_value(
                "autoscaler_lease_request_rate_rps", {"namespace": "default", "lease": "predict", "kind": kind})
            return math.nan if value is None else value
        assert rate("demand") > 5.0 and rate("sized") >= rate("demand")
        await env.dataplane.stop_load("default", "predict")
        await wait_for(lambda: env.replicas("predict") == 1, 60, "predictive scale-down after the load stops")
        await wait_for(lambda: rate("demand") < 1.0, 30, "the rate seen falls with the load")
    reasons = {h["reason"] for h in ctl.runtime[("default", "predict")].history}
    assert reasons & {"Capacity", "BurstEnvelope", "Trend", "Backlog", "StartupAware"}, reasons
    assert not [e for e in env.events("predict") if e["reason"] == "PredictiveUnavailable"]


async def test_predictive_leases_on_vllm_and_nim_pods_are_sized_from_their_metrics(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """Predictive leases on vLLM-based pods (none of Triton's counters) are sized by the predictive algorithm from
    vLLM's finished requests and inference time, and their queueTime is vLLM's queue-time histogram: a plain vLLM
    lease whose slots are annotated, and a NIM lease whose slots come from NIM's num_request_max; an older NIM
    lease (NIM's un-prefixed names only) likewise, its service and queue time by Little's law. A plain vLLM lease
    with no slots stated is left to the HPA rule, with a PredictiveUnavailable Event saying what to annotate (vLLM
    runs many requests at once, so the policy's default of one would size it far too large), until its pods are
    saturated: then it is sized on the batch they ran while requests kept waiting (a SlotsLearned Event), also after
    a restart (read back from Prometheus). Leases whose KV cache fills first are sized on what it holds before any
    pod is saturated (a SlotsEstimated Event): a vLLM lease whose slots nobody states, and a NIM lease, on fewer
    than its num_request_max. A nearly idle vLLM lease (under a tenth of its KV cache) whose container passes
    --max-num-seqs is sized on it (its pod runs that many, whatever the sandbox's serving annotation says)."""
    pfile = env.policy_file.with_name("policy-predictive-vllm.yaml")
    pfile.write_text(env.policy_file.read_text() + """
  algorithm: predictive
  predictive: {rateWindowSeconds: 3, burstWindowSeconds: 0, trendWindowSeconds: 0, lagSeconds: 0,
               scaleDownWindowSeconds: 4, startupSeconds: 1, violationTarget: 0.05, panicQueueFactor: 0}
""")
    sized_leases = {"vllm-pred": "vllm", "nim-sized": "nim", "nim-old": "nim-legacy"}
    # nim-kv: NIM says 4 (its num_request_max), but its KV cache holds two requests' tokens (640 each); vllm-kv
    # runs up to 8 (--max-num-seqs), which vLLM does not say, but its KV cache holds two
    kv = {**SERVING, "kvCacheTokens": 1280}
    serving = {**{n: SERVING for n in (*sized_leases, "vllm-unsized")}, "nim-kv": {**kv, "concurrency": 4},
               "vllm-kv": {**kv, "concurrency": 8}, "vllm-flag": {**SERVING, "concurrency": 8}}
    kinds = {**sized_leases, "vllm-unsized": "vllm", "nim-kv": "nim", "vllm-kv": "vllm", "vllm-flag": "vllm"}
    for name, kind in kinds.items():
        slots = {P + "slots-per-replica": "2"} if name == "vllm-pred" else {}  # NIM says 2 (its num_request_max)
        # vllm-flag: 3 from the container's env, as a chart writes it
        cmd = {"args": ["--model", "m", "--max-num-seqs", "$(SEQS)"], "env": {"SEQS": "3"}} if name == "vllm-flag" else {}
        env.cluster.create_deployment(name, namespace="default", replicas=1, kind=kind, serving=serving[name],
                                      annotations={P + "enabled": "true", P + "max-replicas": "4", **slots},
                                      container=cmd)
    for name in serving:
        await env.cluster.wait_for_ready("default", name)
    # every pod's request rate in Prometheus first: a pod Ready for two rate windows without one gets an Event of its
    # own (PredictiveUnavailable, no request data), which a loaded machine's slow first scrapes would otherwise earn
    async with PrometheusClient(ClientSettings(url=env.dataplane.prometheus_url)) as prom:
        async def rated() -> int:  # pods with a rate of vLLM's or NIM's finished requests
            ans = await prom.query('count(count by (pod) (rate({__name__=~"vllm:request_success_total|'
                                   'request_success_total", namespace="default"}[3s])))')
            return int(ans.samples[0].value) if isinstance(ans, InstantVector) and ans.samples else 0
        for _ in range(150):
            if await rated() >= len(serving):
                break
            await asyncio.sleep(0.2)
    async with env.controller(policy_file=str(pfile)) as ctl:
        for name in (*sized_leases, "nim-kv"):
            await env.load(name, {"profile": {"type": "constant", "rate": 100}})
        await env.load("vllm-kv", {"profile": {"type": "constant", "rate": 16}})  # 0.8 running: not saturated
        await env.load("vllm-flag", {"profile": {"type": "constant", "rate": 1}})  # under a tenth of its KV cache

        def sized(name: str, replicas: int = 3) -> bool:
            last = ctl.runtime[("default", name)].last if ("default", name) in ctl.runtime else {}
            return bool(last) and last["message"].startswith("predictive:") and last["desired"] >= replicas
        await wait_for(lambda: all(env.replicas(n) >= 3 and sized(n) for n in sized_leases), 40,
                       "predictive scale-up of all three from their request rates")
        await wait_for(lambda: all(any(m["name"] == "queueTime" and m.get("value") is not None
                                       for m in status(env, n).get("metrics", [])) for n in sized_leases), 10,
                       "a queue time from vLLM's histogram or NIM's gauge in the leases' status")
        await wait_for(lambda: any(e["reason"] == "PredictiveUnavailable" for e in env.events("vllm-unsized")), 20,
                       "an Event saying the unsized vLLM lease needs its slots")
        last = ctl.runtime[("default", "vllm-unsized")].last
        assert not last["message"].startswith("predictive:") and env.replicas("vllm-unsized") == 1, last
        await wait_for(lambda: sized("vllm-flag", replicas=1) and ctl.runtime[("default", "vllm-flag")].slots == (
            3, "template"), 20, "the nearly idle vLLM lease sized on the --max-num-seqs its container passes")
        # the leases whose KV cache fills first are sized on the two requests it holds: not the four NIM reports,
        # and without a saturation for the vLLM lease, which does not report any
        await wait_for(lambda: sized("nim-kv") and "on 2 slots a replica" in ctl.runtime[("default", "nim-kv")]
                       .last["message"], 30, "the KV-bound NIM lease sized on the batch it runs")
        await wait_for(lambda: sized("vllm-kv", replicas=1) and ctl.runtime[("default", "vllm-kv")].slots == (
            2, "kv-cache"), 30, "the unsized, unsaturated vLLM lease sized on what its KV cache holds")
        assert ctl.telemetry.registry.get_sample_value("autoscaler_lease_slots_per_replica", {
            "namespace": "default", "lease": "vllm-kv", "source": "kv-cache"}) == 2
        await wait_for(lambda: status(env, "vllm-kv").get("slots") == {"perReplica": 2, "source": "kv-cache"}, 10,
                       "the slots and their source in the lease's status annotation")
        for name in ("nim-kv", "vllm-kv", "vllm-flag"):
            await env.dataplane.stop_load("default", name)
    (e,) = [e for e in env.events("nim-kv") if e["reason"] == "SlotsEstimated"]
    assert "sized on 2 slots a replica" in e["message"] and "fewer than the 4 its pods report" in e["message"], e
    (e,) = [e for e in env.events("vllm-kv") if e["reason"] == "SlotsEstimated"]
    assert e["message"].startswith("sized on 2 slots a replica: the requests its pods' KV cache holds"), e
    assert not [e for e in env.events("vllm-kv") if e["reason"] == "SlotsLearned"], env.events("vllm-kv")
    for name in sized_leases:
        await env.dataplane.stop_load("default", name)
        history = ctl.runtime[("default", name)].history
        assert any(h["message"].startswith("predictive:") for h in history), (name, history)
        assert not [e for e in env.events(name) if e["reason"] == "PredictiveUnavailable"], (name, env.events(name))
    assert not [e for e in env.events("vllm-flag") if e["reason"] == "PredictiveUnavailable"], env.events("vllm-flag")
    sim = env.dataplane.pods[next(k for k in env.dataplane.pods if k[1].startswith("vllm-flag-"))]
    assert sim.serving.slots == 3  # the sandbox's vLLM runs what its command line says, not the annotation's 8
    (e,) = [e for e in env.events("vllm-unsized") if e["reason"] == "PredictiveUnavailable"]
    assert "does not report how many" in e["message"] and f"{P}slots-per-replica=" in e["message"]
    assert "the HPA rule decides on its metrics (queueTime)" in e["message"]
    # `autoscaler explain` says why the predictive lease is decided by the HPA rule, from that Event
    capsys.readouterr()
    rc = await asyncio.to_thread(main, ["explain", "--kubeconfig", str(env.kubeconfig), "--policy-file", str(pfile),
                                        "default/vllm-unsized"])
    out = capsys.readouterr().out
    assert rc == 0 and "algorithm predictive" in out, out
    assert "the HPA rule decides, not the predictive algorithm: the pods serve with vLLM" in out, out
    # Overloaded, the unsized lease's pod runs its 2 slots while requests keep waiting: the controller learns them
    # (a SlotsLearned Event) and sizes the lease by its request rate from then on.
    async with env.controller(policy_file=str(pfile)) as ctl:
        await env.load("vllm-unsized", {"profile": {"type": "constant", "rate": 100}})  # 2.5 pods' worth
        # (its KV cache holds 2.5 requests: an estimate first, then what the saturated pods ran)
        await wait_for(lambda: sized("vllm-unsized") and env.replicas("vllm-unsized") >= 3 and ctl.runtime[
            ("default", "vllm-unsized")].slots == (2, "learnt"), 40,
                       "predictive scale-up of the unsized lease on the slots it showed")
        assert "on 2 slots a replica" in ctl.runtime[("default", "vllm-unsized")].last["message"]
        assert ctl.telemetry.registry.get_sample_value("autoscaler_lease_slots_per_replica", {
            "namespace": "default", "lease": "vllm-unsized", "source": "learnt"}) == 2
        await env.dataplane.stop_load("default", "vllm-unsized")
    (e,) = [e for e in env.events("vllm-unsized") if e["reason"] == "SlotsLearned"]
    assert e["type"] == "Normal" and e["message"].startswith("sized on 2 slots a replica: the requests its pods ran")
    rc = await asyncio.to_thread(main, ["explain", "--kubeconfig", str(env.kubeconfig), "--policy-file", str(pfile),
                                        "default/vllm-unsized"])
    out = capsys.readouterr().out
    assert rc == 0 and "  slots learnt: sized on 2 slots a replica" in out and "the HPA rule decides" not in out, out
    # A controller started afresh (a restart, a failover) reads those batches back from Prometheus: the lease, no
    # longer saturated, is sized by the predictive algorithm again, on the same 2 slots.
    async with env.controller(policy_file=str(pfile)) as ctl:
        await wait_for(lambda: sized("vllm-unsized", replicas=1), 20, "the predictive algorithm again after a restart")
        assert ctl.runtime[("default", "vllm-unsized")].learned_slots == 2  # no load now: from the history


async def test_a_predictive_lease_without_request_counters_says_the_hpa_rule_decides(env: Env) -> None:
    """A predictive lease whose pods are not scraped (no PodMonitor selects them; their GPUs are still on the node's
    dcgm-exporter), so neither Triton's nor vLLM's request counters are in Prometheus: once its pod has been Ready
    for two rate windows without a request rate, a Normal Event says the predictive algorithm cannot size it and
    the HPA rule decides on its metrics instead (a Triton or vLLM lease never gets it: the tests above)."""
    pfile = env.policy_file.with_name("policy-predictive-nim.yaml")
    pfile.write_text(env.policy_file.read_text() + """
  predictive: {rateWindowSeconds: 3}
""")
    env.cluster.create_deployment("nim-pred", namespace="default", replicas=1, kind="nim", scrape=False, annotations={
        P + "enabled": "true", P + "algorithm": "predictive", P + "metrics": "gpuUtilization"})
    await env.cluster.wait_for_ready("default", "nim-pred")
    async with env.controller(policy_file=str(pfile)) as ctl:
        await wait_for(lambda: any(e["reason"] == "PredictiveUnavailable" for e in env.events("nim-pred")), 20,
                       "an Event saying the predictive algorithm has no request rate")
        last = ctl.runtime[("default", "nim-pred")].last
        assert last["reason"] in {"DesiredWithinRange", "ScaleDownStabilized"} and last["metrics"], last
    (e,) = [e for e in env.events("nim-pred") if e["reason"] == "PredictiveUnavailable"]
    assert e["type"] == "Normal"
    assert ("1 pod(s) Ready for over 6s export neither nv_inference_request_success nor vllm:request_success_total"
            in e["message"])
    assert "the HPA rule decides on its metrics (gpuUtilization)" in e["message"]
    assert f"{P}algorithm=hpa" in e["message"]


async def test_predictive_season_survives_a_controller_restart(env: Env) -> None:
    """The daily season and the calibration's headroom a previous controller learned (its annotation) are what the
    next one decides with at its first decision; a fresh lease gets the annotation written at its first decision."""
    bucket = 600.0
    end = math.floor(time.time() / bucket) * bucket
    day = [100.0 + 50.0 * math.sin(2 * math.pi * i / 144) for i in range(144)]
    learned = PredictivePersisted(np.array(day).tobytes(), end, bucket, (100.0, 3), 0.05, headroom=1.8)
    env.deployment("seasoned", {P + "algorithm": "predictive", P + "max-replicas": "4",
                                PREDICTIVE_STATE_ANNOTATION: learned.to_annotation()})
    env.deployment("fresh", {P + "algorithm": "predictive", P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "seasoned")
    async with env.controller() as ctl:
        await env.load("seasoned", {"profile": {"type": "constant", "rate": 20}})
        await env.load("fresh", {"profile": {"type": "constant", "rate": 20}})

        def predicted(name: str) -> PredictiveState | None:
            rt = ctl.runtime.get(("default", name))
            return rt.predictive if rt is not None else None

        await wait_for(lambda: predicted("seasoned") is not None and predicted("fresh") is not None, 30,
                       "predictive decisions on both leases")
        seasoned, fresh = predicted("seasoned"), predicted("fresh")
        assert seasoned is not None and fresh is not None
        assert len(seasoned.season) == 8 * 144 and len(seasoned.season_fit) == 144, "the learned day was not restored"
        assert fresh.season == b"" and fresh.season_fit == ()
        assert (seasoned.headroom, fresh.headroom) == (1.8, 1.0), "the learned headroom was not restored"
        await wait_for(lambda: PREDICTIVE_STATE_ANNOTATION in env.get("fresh")["metadata"]["annotations"], 10,
                       "the fresh lease's state written")
    written = parse_predictive(env.get("fresh")["metadata"]["annotations"][PREDICTIVE_STATE_ANNOTATION])
    assert written is not None and written.season_bucket_s == bucket and written.service_time_s
    kept = parse_predictive(env.get("seasoned")["metadata"]["annotations"][PREDICTIVE_STATE_ANNOTATION])
    # not overwritten with a shorter history (145 when the run crossed a bucket's end: the day goes on)
    assert kept is not None and kept.season_buckets in (144, 145), kept.season_buckets
