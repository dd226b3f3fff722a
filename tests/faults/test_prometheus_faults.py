"""Prometheus faults against a real Prometheus behind a FaultProxy: never a scale-down while blind,
hold or fallback as configured, and recovery within a loop once the answers are good again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from autoscaler.metrics import ClientSettings, LeaseTarget, NoTraffic, Ok, PrometheusClient, fetch_all
from autoscaler.metrics.promql import PART_LABEL
from autoscaler.sandbox.faultproxy import FaultProxy
from tests.faults.conftest import INTERVAL_S, POLICY, Env, P, assert_clean, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")
QUERY = "/api/v1/query"


def _series(doc: Any) -> list[dict[str, Any]]:
    res = ((doc or {}).get("data") or {}).get("result")
    return res if isinstance(res, list) else []


def _empty(doc: Any) -> Any:
    doc["data"]["result"] = []
    return doc


def _nan(doc: Any) -> Any:
    """NaN values while requests flow (0/0 with a zero request rate is `NoTraffic`, a legitimate 0)."""
    for s in _series(doc):
        part = s["metric"].get(PART_LABEL)
        if not part:
            s["value"][1] = "NaN"
        elif part == "rate":
            s["value"][1] = "5"
    return doc


def _multi(doc: Any) -> Any:
    extra = [{"metric": {**s["metric"], "instance": "duplicate:1"}, "value": s["value"]} for s in _series(doc)]
    doc["data"]["result"] = _series(doc) + extra
    return doc


def _stale(doc: Any) -> Any:
    for s in _series(doc):
        if s["metric"].get(PART_LABEL) == "ts":
            s["value"][1] = str(float(s["value"][1]) - 600)
    return doc


# (name, FaultProxy.set arguments): every one leaves the controller without usable metrics
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("down", {"mode": "down"}),
    ("slow", {"mode": "delay", "delay_s": 3.0}),  # beyond the 1 s query timeout
    ("5xx", {"mode": "status", "status": 503}),
    ("garbage", {"mode": "garbage"}),
    ("empty", {"mode": "rewrite", "rewrite": _empty, "path_filter": QUERY}),
    ("nan", {"mode": "rewrite", "rewrite": _nan, "path_filter": QUERY}),
    ("multi-series", {"mode": "rewrite", "rewrite": _multi, "path_filter": QUERY}),
    ("stale", {"mode": "rewrite", "rewrite": _stale, "path_filter": QUERY}),
]


async def test_every_prometheus_fault_holds_and_recovers_within_a_loop(env: Env) -> None:
    """Down, slow, 5xx, garbage, empty, NaN, multi-series, stale: held at 3 replicas (no load, so a
    seeing controller scales to 1 at once); the first loop after the fault clears sees metrics again."""
    env.deployment("pf", {"inference-autoscaler.io/max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "pf")
    checker = env.checker()
    recovery: dict[str, float] = {}
    loops: dict[str, int] = {}
    direct = PrometheusClient(ClientSettings(url=env.dataplane.prometheus_url, timeout_s=2))
    async with direct, FaultProxy(env.dataplane.prometheus_url) as prom:
        checker.watch_prometheus(prom)
        async with env.controller("ctl", checker, prometheus_url=prom.url) as (ctl, _, _):
            key = ("default", "pf")
            await wait_for(lambda: key in ctl.runtime and bool(ctl.runtime[key].last), 10, "first decision")
            for name, fault in FAULTS:
                prom.set(**fault)
                env.scale("pf", 3)  # the human scales up while the controller is blind
                await wait_for(lambda: ctl.runtime[key].failures >= 2 or _blind(ctl, key), 10,
                               f"{name}: the controller notices")
                await env.cluster.wait_for_ready("default", "pf", 3)
                await asyncio.sleep(3 * INTERVAL_S)
                # recovery is judged from when Prometheus itself has every new pod's rate window filled
                await wait_for_complete_data(env, ctl, "pf", direct)
                assert env.replicas("pf") == 3, f"{name}: scaled while blind"
                last = ctl.runtime[key].last
                assert last["desired"] == 3 and last["reason"] in ("FailedGetPodsMetric", "MissingMetrics"), (
                    name, last["reason"], last["message"])
                prom.set("pass")
                cleared, reports = time.monotonic(), [ctl.last_report]
                while _blind(ctl, key):  # count the loops that end after the fault cleared
                    if ctl.last_report is not reports[-1]:
                        reports.append(ctl.last_report)
                    assert time.monotonic() - cleared < 10, f"{name}: metrics not seen again"
                    await asyncio.sleep(0.02)
                recovery[name] = time.monotonic() - cleared
                loops[name] = len(reports)  # the loop in flight when it cleared + the one that saw metrics
                await wait_for(lambda: env.replicas("pf") == 1, 10, f"{name}: scale-down once metrics are back")
    assert_clean(checker)
    # the loop in flight when the fault cleared may have queried before; the next one must see metrics
    late = {k: n for k, n in loops.items() if n > 2}
    assert not late, f"recovery took more than one loop after the fault cleared: {late} (seconds: {recovery})"
    assert checker.counts.scale_down >= len(FAULTS)
    print("recovery seconds:", {k: round(v, 2) for k, v in recovery.items()}, "loops:", loops)


async def wait_for_complete_data(env: Env, ctl: Any, name: str, direct: PrometheusClient) -> None:
    """Until the controller's own query, sent straight to Prometheus, answers for every pod of ``name``."""
    kind = ctl._kind("queueTime", None)
    deadline = time.monotonic() + 15
    while True:
        pods = [p.name for p in ctl.pods_for("default", _selector(env, name))]
        res = (await fetch_all(direct, [(kind, [LeaseTarget.of("default", pods)])]))[kind.name]
        if pods and all(isinstance(res.for_pod(t), Ok | NoTraffic)
                        for t in res.for_lease(LeaseTarget.of("default", pods))):
            return
        assert time.monotonic() < deadline, f"Prometheus never had data for every pod of {name}"
        await asyncio.sleep(0.2)


def _selector(env: Env, name: str) -> Any:
    from autoscaler.kube.selectors import Selector
    obj = env.get(name)
    assert obj is not None
    return Selector.from_label_selector(obj["spec"]["selector"])


def _blind(ctl: Any, key: tuple[str, str]) -> bool:
    last = ctl.runtime[key].last
    return any(m["error"] or m["missing"] for m in last.get("metrics", [])) or last.get("desired") is None


async def test_fallback_replicas_raises_capacity_but_never_cuts_it(env: Env) -> None:
    """With ``fallback: replicas 2`` an outage raises a 1-replica lease to 2 after N failures, and a
    3-replica lease stays at 3 (the fallback never scales down)."""
    policy = env.policy_file.read_text().replace("{failureThreshold: 2, action: hold}",
                                                 "{failureThreshold: 2, action: replicas, replicas: 2}")
    pfile = env.work / "policy-fallback.yaml"
    pfile.write_text(policy)
    env.deployment("fb-low", {"inference-autoscaler.io/max-replicas": "4"})
    env.deployment("fb-high", {"inference-autoscaler.io/max-replicas": "4"}, replicas=3)
    await env.cluster.wait_for_ready("default", "fb-high")
    checker = env.checker()
    async with FaultProxy(env.dataplane.prometheus_url) as prom:
        checker.watch_prometheus(prom)
        prom.set("down")
        async with env.controller("ctl-fb", checker, prometheus_url=prom.url, policy_file=str(pfile)) as (ctl, _, _):
            await wait_for(lambda: env.replicas("fb-low") == 2, 10, "fallback to 2 replicas")
            await asyncio.sleep(4 * INTERVAL_S)
            assert env.replicas("fb-high") == 3 and env.replicas("fb-low") == 2
            assert any(h["reason"] == "FallbackReplicas" for h in ctl.runtime[("default", "fb-low")].history)
            assert any(e["reason"] == "SuccessfulRescale" and "fallback" in e["message"]
                       for e in env.events("fb-low"))
    assert_clean(checker)


def _without_rate_of_first(prefix: str) -> Callable[[Any], Any]:
    """Answers without the short-window request rate of the first (by name) pod whose name starts with ``prefix``:
    what Prometheus returns for a pod while its rate window holds fewer than two of its scrapes."""
    def rewrite(doc: Any) -> Any:
        series = _series(doc)
        pods = sorted({p for s in series if (p := s["metric"].get("pod", "")).startswith(prefix)})
        if pods:
            doc["data"]["result"] = [s for s in series if not (s["metric"].get("pod") == pods[0]
                                                               and s["metric"].get(PART_LABEL) == "success")]
        return doc
    return rewrite


async def test_a_predictive_lease_holds_while_a_ready_pod_has_no_request_rate(env: Env) -> None:
    """A lightly loaded predictive lease of 3 pods, one of them Ready for long without a request rate: the lease's
    rate is the other two's alone, so the policy holds the count (``PartialData``) and says why in a Warning Event
    instead of scaling down on it; once the pod's rate is back, the lease goes down to the one its load needs."""
    pfile = env.work / "policy-partial.yaml"
    pfile.write_text(POLICY + "  predictive: {rateWindowSeconds: 3, burstWindowSeconds: 0, trendWindowSeconds: 0, "
                              "scaleDownWindowSeconds: 2, startupSeconds: 1, reactiveQueueFactor: 0, "
                              "panicQueueFactor: 0}\n")
    env.deployment("partial", {P + "algorithm": "predictive", P + "max-replicas": "4"}, replicas=3)
    await env.cluster.wait_for_ready("default", "partial", 3)
    await env.load("partial", {"profile": {"type": "constant", "rate": 1}})  # a known service time; 1 pod serves it
    await asyncio.sleep(7)  # every pod Ready for over two rate windows
    key = ("default", "partial")
    async with FaultProxy(env.dataplane.prometheus_url) as prom:
        prom.set("rewrite", rewrite=_without_rate_of_first("partial-"), path_filter=QUERY)
        async with env.controller("partial", None, prometheus_url=prom.url, policy_file=str(pfile)) as (ctl, _, _):
            await wait_for(lambda: key in ctl.runtime and ctl.runtime[key].last.get("reason") == "PartialData", 15,
                           "a PartialData decision")
            await asyncio.sleep(4 * INTERVAL_S)
            assert env.replicas("partial") == 3, ctl.runtime[key].last
            assert "1 pod(s) Ready for over 6s have no request rate" in ctl.runtime[key].last["message"]
            await wait_for(lambda: any(e["reason"] == "PartialRequestData" and e["type"] == "Warning"
                                       for e in env.events("partial")), 10, "the PartialRequestData Event")
            prom.set("pass")
            await wait_for(lambda: env.replicas("partial") == 1, 20, "the scale-down once every pod has a rate")
    await env.dataplane.stop_load("default", "partial")
