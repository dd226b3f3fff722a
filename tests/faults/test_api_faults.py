"""API-server faults through the controller's own FaultProxy: 409 storms, 5xx, timeouts, cut watch
streams and 410 Gone. Decisions are neither lost nor duplicated, caches re-sync, invariants hold."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from autoscaler.sandbox.resources import DEPLOYMENTS
from tests.faults.conftest import HEAVY, INTERVAL_S, Env, P, assert_clean, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")



def _cache_in_sync(env: Env, ctl: Any) -> bool:
    store = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
             for o in env.cluster.store.iter(DEPLOYMENTS.storage_key)}
    cache = {k: o["metadata"]["resourceVersion"] for k, o in ctl.deployments.objects.items()}
    return store == cache


async def test_api_faults_lose_and_duplicate_no_decision(env: Env) -> None:
    """Under load: a 409 storm on /scale, 5xx on half the calls, PATCHes that time out yet land, cut watch
    streams and 410 Gone; the lease still reaches its maximum, no write repeats, caches end in sync."""
    env.deployment("api", {P + "max-replicas": "4", "team": "search"})
    await env.cluster.wait_for_ready("default", "api")
    checker = env.checker()
    async with env.controller("ctl", checker, api_timeout_s=1.0) as (ctl, proxy, _):
        await wait_for(lambda: ("default", "api") in ctl.runtime, 10, "first decision")
        await env.dataplane.start_load("default", "api", HEAVY)
        # 1. a 409 storm: 80% of scale patches conflict; the controller re-reads, re-decides, never overwrites
        proxy.set("status", status=409, path_filter="/scale", methods={"PATCH"})
        await wait_for(lambda: proxy.faulted >= 3, 20, "scale patches answered 409")
        assert env.replicas("api") == 1 and ctl.conflicts >= 1
        proxy.set("status", status=409, path_filter="/scale", methods={"PATCH"}, probability=0.7)
        # (a failed patch used to leave its scale event in the state: ScaleUpLimit then blocked every retry)
        await wait_for(lambda: env.replicas("api") >= 2, 20, "scale-up through the 409 storm")
        # 2. watch streams cut every 0.3 s, then 410 Gone on every new watch: relists
        relists = ctl.deployments.relists
        proxy.set("cut", cut_after_s=0.3, path_filter="watch=true")
        await asyncio.sleep(4 * INTERVAL_S)
        proxy.set("status", status=410, path_filter="watch=true")
        await wait_for(lambda: ctl.deployments.relists > relists, 10, "relist after 410 Gone")
        # 3. 5xx on half of every call (reads, writes, watches: these back off, as client-go's do)
        proxy.set("status", status=503, probability=0.5)
        await asyncio.sleep(6 * INTERVAL_S)
        # 4. writes that time out at the client (1 s) but land 1.5 s later
        proxy.set("delay", delay_s=1.5, methods={"PATCH", "POST"}, probability=0.5)
        await asyncio.sleep(6 * INTERVAL_S)
        # a human's change while watches are failing is still seen once they recover
        env.scale("api", 2)
        proxy.set("pass")
        await wait_for(lambda: env.replicas("api") == 4, 30, "nothing lost: the lease reaches its maximum")
        await wait_for(lambda: _cache_in_sync(env, ctl), 30, "deployment cache re-synced with the store")
        await env.dataplane.stop_load("default", "api")
        rt = ctl.runtime[("default", "api")]
        await wait_for(lambda: rt.last["desired"] == env.replicas("api"), 10, "decision and spec agree")
    ann = (env.get("api") or {})["metadata"]["annotations"]
    assert ann["team"] == "search" and ann[P + "max-replicas"] == "4"
    assert_clean(checker)
    assert checker.counts.scale_up >= 2 and proxy.faulted > 0


async def test_deployment_deleted_and_recreated_mid_loop(env: Env) -> None:
    """A Deployment deleted mid-loop is forgotten (no write, no error); recreated, it is a new lease."""
    env.deployment("gone", {P + "max-replicas": "4"}, replicas=2)
    await env.cluster.wait_for_ready("default", "gone")
    checker = env.checker()
    async with env.controller("ctl-gone", checker) as (ctl, _, _):
        await wait_for(lambda: ("default", "gone") in ctl.runtime, 10, "first decision")
        env.cluster.registry.delete(DEPLOYMENTS, "default", "gone")
        await wait_for(lambda: ("default", "gone") not in ctl.runtime, 10, "lease forgotten")
        errors = ctl.last_report.errors
        env.deployment("gone", {P + "max-replicas": "4"}, replicas=2)
        await wait_for(lambda: ("default", "gone") in ctl.runtime, 10, "recreated lease picked up")
        assert ctl.last_report.errors == errors == 0
    assert_clean(checker)


async def test_pods_never_ready_or_crash_looping_block_scale_down(env: Env) -> None:
    """Pods that never become Ready, and pods that keep being killed and replaced, are missing data:
    the lease is never scaled down because of them."""
    env.deployment("stuck", {P + "max-replicas": "4"}, replicas=3, startupSeconds=3600)
    env.deployment("crashy", {P + "max-replicas": "4"}, replicas=3)
    await env.cluster.wait_for_ready("default", "crashy")
    checker = env.checker()
    checker.blind("default", "stuck")
    checker.blind("default", "crashy")
    async with env.controller("ctl-pods", checker) as (ctl, _, _):
        await wait_for(lambda: ("default", "stuck") in ctl.runtime and ("default", "crashy") in ctl.runtime, 10,
                       "first decisions")
        for _ in range(6):  # crash loop: a pod dies, its replacement is not Ready for a while
            from autoscaler.sandbox.resources import PODS
            pods = [p for p in env.cluster.store.list_objects(PODS.storage_key, "default")
                    if p["metadata"]["name"].startswith("crashy-")]
            if pods:
                env.cluster.registry.delete(PODS, "default", pods[0]["metadata"]["name"])
            await asyncio.sleep(2 * INTERVAL_S)
            assert env.replicas("stuck") == 3 and env.replicas("crashy") == 3
        assert ctl.runtime[("default", "stuck")].last["reason"] in ("MissingMetrics", "FailedGetPodsMetric")
    assert_clean(checker)


async def test_manual_scale_during_window_is_not_fought(env: Env) -> None:
    """A human's scale-up inside a scale-down window is held: the controller never writes it back at once."""
    policy = env.policy_file.read_text().replace("stabilizationWindowSeconds: 0", "stabilizationWindowSeconds: 6")
    pfile = env.work / "policy-window.yaml"
    pfile.write_text(policy)
    env.deployment("human", {P + "max-replicas": "4"})
    await env.cluster.wait_for_ready("default", "human")
    checker = env.checker()
    async with env.controller("ctl-human", checker, policy_file=str(pfile)) as (ctl, _, _):
        await wait_for(lambda: ("default", "human") in ctl.runtime and bool(ctl.runtime[("default", "human")].last),
                       10, "first decision")
        env.scale("human", 3)
        await wait_for(lambda: any(e["reason"] == "ManualScaleDetected" for e in env.events("human")), 10,
                       "ManualScaleDetected")
        await asyncio.sleep(6 * INTERVAL_S)
        assert env.replicas("human") == 3
    assert_clean(checker)
