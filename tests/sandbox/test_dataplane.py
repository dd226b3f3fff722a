"""The data plane end to end: pod events -> simulated pods -> real Prometheus -> PromQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from autoscaler.sandbox.dataplane import DataPlane, deployment_of, parse_cpu

pytestmark = pytest.mark.prometheus

QUEUE_TIME = ("sum by (namespace, app) (rate(nv_inference_queue_duration_us[5s]))"
              " / sum by (namespace, app) (rate(nv_inference_request_success[5s]))")


def make_pod(name: str, *, deployment: str = "resnet", kind: str = "triton", ready: bool = True,
             serving: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "inference", "uid": f"uid-{name}",
            "labels": {"app": deployment, "pod-template-hash": "6c9d7b8f4"},
            "annotations": {"sandbox.inference-autoscaler.io/kind": kind,
                            "sandbox.inference-autoscaler.io/serving": json.dumps(
                                serving or {"concurrency": 4, "serviceTimeMs": 40})},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{deployment}-6c9d7b8f4",
                                 "controller": True}],
        },
        "spec": {"containers": [{"name": "triton", "resources": {"requests": {"cpu": "500m"}}}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


@pytest.fixture
async def dp() -> AsyncIterator[DataPlane]:
    plane = DataPlane(scrape_interval_s=1.0)
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


async def eventually(check: Callable[[], Any], within: float = 20.0, every: float = 0.5) -> Any:
    """Poll an async check until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {value!r})")
        await asyncio.sleep(every)


def test_pod_helpers() -> None:
    """Deployment from owner references (ReplicaSet -> strip hash), else the app label; CPU quantities."""
    pod = make_pod("resnet-6c9d7b8f4-aaaaa")
    assert deployment_of(pod) == "resnet"
    pod["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": "other"}]
    assert deployment_of(pod) == "other"
    del pod["metadata"]["ownerReferences"]
    assert deployment_of(pod) == "resnet"
    assert (parse_cpu("500m"), parse_cpu("2"), parse_cpu(None)) == (0.5, 2.0, 1.0)


async def test_queue_time_rate_follows_a_load_step(dp: DataPlane) -> None:
    """Real Prometheus scrapes the pods; the PromQL queue-time rate rises within a few scrape intervals
    of a load step, and the load generator's own record agrees that requests now wait."""
    for i in range(2):
        await dp.pod_running(make_pod(f"resnet-6c9d7b8f4-p{i}"))
    await dp.start_load("inference", "resnet", {"profile": {"type": "constant", "rate": 40}, "seed": 1})

    async def low_and_present() -> Any:
        r = await dp.prometheus.query(QUEUE_TIME)
        return r and float(r[0]["value"][1]) < 2000 and r

    await eventually(low_and_present, within=30)
    # step: 40 -> 190 req/s on 2 x 100 req/s capacity (95 % busy)
    await dp.start_load("inference", "resnet", {"profile": {"type": "constant", "rate": 190}, "seed": 2})
    t0 = asyncio.get_running_loop().time()

    async def high() -> Any:
        r = await dp.prometheus.query(QUEUE_TIME)
        return r and float(r[0]["value"][1]) > 5000

    await eventually(high, within=15, every=0.25)
    assert asyncio.get_running_loop().time() - t0 < 8  # within a few 1 s scrapes (+ the 5 s window)

    async def busy_gpus() -> Any:
        util = await dp.prometheus.query('DCGM_FI_DEV_GPU_UTIL{exported_namespace="inference"} > 50')
        return len(util) == 2 and util

    util = await eventually(busy_gpus, within=10)
    assert {u["metric"]["exported_pod"] for u in util} == {"resnet-6c9d7b8f4-p0", "resnet-6c9d7b8f4-p1"}
    assert all(u["metric"]["namespace"] == "gpu-operator" for u in util)  # the exporter's own pod labels
    cpu = await dp.prometheus.query('rate(container_cpu_usage_seconds_total{container="triton"}[5s])')
    assert {c["metric"]["pod"] for c in cpu} == {"resnet-6c9d7b8f4-p0", "resnet-6c9d7b8f4-p1"}
    summary = dp.load_summary(10000)["inference/resnet"]
    assert summary["requests"] > 100 and summary["violations"] > 0
    assert dp.load_stats("inference", "resnet").rate_series()[1].max() > 150


async def test_targets_come_and_go_with_pods(dp: DataPlane) -> None:
    """A deleted pod's target disappears and its series go stale; a terminating pod gets no traffic."""
    a, b = make_pod("resnet-6c9d7b8f4-a"), make_pod("resnet-6c9d7b8f4-b", kind="nim")
    for p in (a, b):
        await dp.pod_running(p)
        await dp.pod_ready(p)

    async def pods_up() -> set[str]:
        return {r["metric"]["pod"] for r in await dp.prometheus.query('up{job="inference/resnet"} == 1')}

    assert await eventually(lambda: _eq(pods_up, {"resnet-6c9d7b8f4-a", "resnet-6c9d7b8f4-b"}))
    nim = await dp.prometheus.query("vllm:kv_cache_usage_perc")
    assert [n["metric"]["pod"] for n in nim] == ["resnet-6c9d7b8f4-b"]  # scraped on /v1/metrics
    await dp.start_load("inference", "resnet", {"profile": {"type": "constant", "rate": 50}})
    await dp.pod_terminating(a)
    sim_a = dp.pods[("inference", "resnet-6c9d7b8f4-a")]
    before = sim_a.replica.counters.success + sim_a.replica.running + sim_a.replica.pending
    await asyncio.sleep(0.5)
    assert sim_a.replica.counters.success + sim_a.replica.running + sim_a.replica.pending == before
    assert dp.pod_drained("inference", "resnet-6c9d7b8f4-a")
    await dp.pod_deleted(a)
    assert await eventually(lambda: _eq(pods_up, {"resnet-6c9d7b8f4-b"}))
    pending = await dp.prometheus.query('nv_inference_pending_request_count{pod="resnet-6c9d7b8f4-a"}')
    assert pending == []  # stale marker: the series is gone at once, not after 5 minutes

    async def target_gone() -> bool:
        return "resnet-6c9d7b8f4-a" not in {t["labels"].get("pod") for t in await dp.prometheus.active_targets()}

    assert await eventually(target_gone)


async def _eq(check: Callable[[], Any], want: Any) -> bool:
    got = await check()
    return bool(got == want)
