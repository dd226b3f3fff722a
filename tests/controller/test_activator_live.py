"""Scale from zero without losing a request: the activator in front of the sandbox's gateway, a real Prometheus
scraping the activator, and the controller woken by what the activator counts."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.sandbox.controllers import ANN_STARTUP
from autoscaler.sandbox.resources import DEPLOYMENTS
from tests.controller.conftest import Env, wait_for
from tests.support import P

pytestmark = pytest.mark.asyncio(loop_scope="module")
STARTUP_S = 3.0


async def series_in_prometheus(url: str, query: str, timeout_s: float) -> None:
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        while True:
            async with s.get(f"{url}/api/v1/query", params={"query": query}) as r:
                if (await r.json())["data"]["result"]:
                    return
            assert time.monotonic() - t0 < timeout_s, f"no {query} in Prometheus after {timeout_s} s"
            await asyncio.sleep(0.2)


async def test_requests_sent_at_zero_are_held_by_the_activator_and_answered(env: Env) -> None:
    """A lease at zero replicas: requests sent straight to its gateway fail (503, no Ready pod); the same requests
    sent through the activator are held, counted (the wake query reads the activator's counter), the controller wakes
    the lease, and every request is answered once the woken pod has loaded its model (3 s)."""
    pfile = env.policy_file.with_name("policy-activator.yaml")
    pfile.write_text(env.policy_file.read_text().replace("lowerBound: 1", "lowerBound: 0") + """
  scaleToZero:
    wakeQuery: 'sum(rate(autoscaler_activator_requests_total{namespace="{{namespace}}",deployment="{{name}}"}[3s])) or vector(0)'
    idleSeconds: 2
""")
    env.deployment("held", {P + "min-replicas": "0", P + "max-replicas": "2"})
    await env.cluster.wait_for_ready("default", "held")
    gateway = f"http://127.0.0.1:{env.dataplane.gateway_port}"
    activator = await env.dataplane.start_activator(env.kubeconfig, hold_timeout_s=30)
    async with env.controller(policy_file=str(pfile)), aiohttp.ClientSession() as s:
        await wait_for(lambda: env.replicas("held") == 0, 20, "scale to zero after the idle period")
        await series_in_prometheus(env.dataplane.prometheus_url,
                                   'autoscaler_activator_requests_total{deployment="held"}', 15)
        dep = env.cluster.registry.get(DEPLOYMENTS, "default", "held")
        dep["metadata"]["annotations"][ANN_STARTUP] = str(STARTUP_S)  # woken pods load their model, as GPU pods do
        env.cluster.registry.update(DEPLOYMENTS, "default", "held", dep)
        async with s.post(f"{gateway}/default/held/v2/models/m/infer", data=b"{}") as r:
            assert r.status == 503 and "no Ready pod" in (await r.json())["message"]
        t0 = time.monotonic()
        answers = await asyncio.gather(*(s.post(f"{activator}/default/held/v2/models/m/infer", data=b"{}")
                                         for _ in range(4)))
        waited = time.monotonic() - t0
        bodies = [await r.json() for r in answers]
        for r in answers:
            r.release()
        assert env.replicas("held") >= 1
        async with s.get(f"{activator}/metrics") as r:
            counted = {(smp.name, smp.labels.get("code")): smp.value
                       for fam in text_string_to_metric_families(await r.text()) for smp in fam.samples
                       if smp.labels.get("deployment") == "held"}
    assert [r.status for r in answers] == [200] * 4, bodies
    assert all(b["pod"].startswith("held-") for b in bodies), bodies
    assert waited >= STARTUP_S, f"answered {waited:.1f} s after being sent, before a pod could have started"
    assert counted[("autoscaler_activator_hold_seconds_count", None)] == 4
    assert counted[("autoscaler_activator_responses_total", "200")] == 4
    messages = [e["message"] for e in env.events("held") if e["reason"] == "SuccessfulRescale"]
    assert any("scaling from zero" in m for m in messages), messages
