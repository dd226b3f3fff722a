"""``autoscaler doctor`` on the sandbox with a real Prometheus and deliberately broken set-ups."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from autoscaler.activator import Activator
from autoscaler.config import PREDICTIVE_STATE_ANNOTATION
from autoscaler.doctor.checks import FAIL, OK, SKIP, WARN, Context, Finding, run_checks
from autoscaler.kube.api import KubeApi
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane
from autoscaler.sandbox.faultproxy import FaultProxy
from autoscaler.sandbox.prometheus import JOB_GATEWAY, JOB_PODS
from autoscaler.sandbox.resources import DEPLOYMENTS, PODS
from autoscaler.statestore import PredictivePersisted
from autoscaler.telemetry import serve

pytestmark = pytest.mark.asyncio(loop_scope="module")
P = "inference-autoscaler.io/"
NS = "doc"
POLICY = """
autoscaling:
  enable: true
  metrics:
    queueTime: {allowed: true, enabled: true, threshold: {default: 20000, minimum: 1000, maximum: 0}}
    gpuUtilization: {allowed: true, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
    kvCacheUsage: {allowed: true, enabled: false, threshold: {default: 80, minimum: 10, maximum: 100}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 3, maxSampleAgeSeconds: 20}
"""
LEASES = {
    "good": {P + "metrics": "queueTime,gpuUtilization"},
    "relabelled": {P + "metrics": "queueTime"},
    "absent": {P + "metrics": "kvCacheUsage"},
    "typo": {P + "max-replicas": "ten"},
    "misspelt": {P + "min-replica": "1"},
}


@dataclass
class Env:
    cluster: SandboxCluster
    dataplane: DataPlane
    kubeconfig: Path

    async def findings(self, **kw: Any) -> list[Finding]:
        api = await KubeApi.connect(str(self.kubeconfig))
        try:
            return await run_checks(Context(api, kw.pop("prometheus_url", self.dataplane.prometheus_url), **kw))
        finally:
            await api.close()


async def _query(url: str, q: str) -> list[Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/api/v1/query", params={"query": q}) as r:
        return list((await r.json())["data"]["result"])


async def _until(url: str, q: str, want: bool, timeout_s: float = 25.0) -> None:
    t0 = time.monotonic()
    while bool(await _query(url, q)) != want:
        assert time.monotonic() - t0 < timeout_s, f"timed out waiting for {q} to be {'non-' if want else ''}empty"
        await asyncio.sleep(0.5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: Any) -> AsyncIterator[Env]:
    work = tmp_path_factory.mktemp("doctor")
    async with DataPlane(workdir=work / "dp") as dp, \
            SandboxCluster(hooks=dp, startup_seconds=0.5, pending_seconds=0.1, terminating_seconds=0.2) as c:
        c.ensure_namespace(NS)
        c.ensure_namespace("inference-autoscaler")
        c.create({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "inference-autoscaler-policy", "namespace": "inference-autoscaler"},
                  "data": {"policy.yaml": POLICY}})
        for name, ann in LEASES.items():
            c.create_deployment(name, namespace=NS, replicas=1, kind="triton",
                                annotations={P + "enabled": "true", **ann})
        for name in LEASES:
            await c.wait_for_ready(NS, name)
        # Break "relabelled": its target now carries the pod as exported_pod/exported_namespace, as a
        # ServiceMonitor with honorLabels: false in front of a proxy would.
        (_key, sim), = [(k, p) for k, p in dp.pods.items() if p.deployment == "relabelled"]
        labels = {k: v for k, v in dp._target_labels(sim).items() if k not in ("pod", "namespace")}
        labels.update({"exported_pod": sim.name, "exported_namespace": NS, "pod": "metrics-proxy",
                       "namespace": "monitoring"})
        dp.prometheus.set_target(JOB_PODS, f"127.0.0.1:{sim.port}", labels)
        url = dp.prometheus_url
        await _until(url, f'rate(nv_inference_request_success{{namespace="{NS}", pod=~"good-.*"}}[3s])', True)
        await _until(url, f'nv_inference_request_success{{exported_pod="{sim.name}"}}', True)
        await _until(url, f'nv_inference_request_success{{pod="{sim.name}"}}', False)
        await _until(url, f'DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{NS}"}}', True)
        yield Env(c, dp, c.write_kubeconfig(work / "kubeconfig"))


def pick(findings: list[Finding], check: str, subject: str = "") -> list[Finding]:
    return [f for f in findings if f.check == check and (not subject or f.subject == subject)]


async def test_healthy_lease_passes_every_check(env: Env) -> None:
    """Prometheus, the policy ConfigMap, a valid lease's annotations and series, and RBAC all pass."""
    fs = await env.findings(lease_namespace=NS)
    assert pick(fs, "prometheus")[0].status == OK and "Prometheus 2." in pick(fs, "prometheus")[0].detail
    assert pick(fs, "policy")[0].status == OK
    assert pick(fs, "annotations", f"{NS}/good")[0].status == OK
    assert {f.status for f in pick(fs, "series", f"{NS}/good")} == {OK}, pick(fs, "series", f"{NS}/good")
    assert pick(fs, "rules")[0].status == OK  # recording rule off in this policy: not needed
    assert pick(fs, "rbac")[0].status == OK


async def test_rate_windows_against_the_pods_scrape_interval(env: Env) -> None:
    """The windows the controller's rate() queries use hold at least two scrapes of the lease's pods at the scrape
    interval Prometheus reports for their targets (1 s here): 3 s passes; a policy with 1.5 s fails, naming the key
    and the smallest window that works (the predictive window's own minimum, 2 s, is two of these scrapes)."""
    fs = await env.findings(lease_namespace=NS)
    (ok,) = pick(fs, "windows", f"{NS}/good")
    assert ok.status == OK and "prometheus.rateWindowSeconds = 3s: 3 or more scrapes" in ok.detail, ok
    short = POLICY.replace("rateWindowSeconds: 3,", "rateWindowSeconds: 1.5,")
    env.cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "short-windows", "namespace": "inference-autoscaler"},
                        "data": {"policy.yaml": short}})
    (bad,) = pick(await env.findings(lease_namespace=NS, configmap="short-windows"), "windows", f"{NS}/good")
    assert bad.status == FAIL, bad
    assert "prometheus.rateWindowSeconds = 1.5s holds fewer than two scrapes at the pods' 1s" in bad.detail
    assert "set prometheus.rateWindowSeconds to at least 2 (two scrapes; 4 survives a missed one)" in bad.fix


def zero_policy(env: Env, ns: str, configmap: str, wake_query: str) -> None:
    """Namespace ``ns``, and a policy ConfigMap ``configmap`` that lets leases scale to zero, woken by ``wake_query``."""
    env.cluster.ensure_namespace(ns)
    policy = POLICY.replace("  enable: true\n", f"""  enable: true
  replicas: {{limits: {{minimum: {{lowerBound: 0, upperBound: 2}}}}}}
  scaleToZero:
    wakeQuery: '{wake_query}'
""")
    env.cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": configmap, "namespace": "inference-autoscaler"},
                        "data": {"policy.yaml": policy}})


async def test_scale_to_zero_wake_query_must_answer_one_value(env: Env) -> None:
    """A lease that may scale to zero passes when its wake query answers (the gateway saw its requests) and fails,
    naming why and the query, when it finds no series (then the controller would never idle it)."""
    ns = "doc-zero"
    zero_policy(env, ns, "zero",
                'sum(rate(sandbox_gateway_requests_total{namespace="{{namespace}}",service="{{name}}"}[3s]))')
    for name in ("served", "silent"):
        env.cluster.create_deployment(name, namespace=ns, replicas=0, kind="triton",
                                      annotations={P + "enabled": "true", P + "min-replicas": "0",
                                                   P + "wake-target": "2"})
    svc = PredictivePersisted(b"", time.time(), 600.0, (0.0, 0), 0.1).to_annotation()  # measured before zero
    env.cluster.create_deployment("auto", namespace=ns, replicas=0, kind="triton", annotations={
        P + "enabled": "true", P + "min-replicas": "0", P + "wake-target": "auto", P + "algorithm": "predictive",
        P + "slots-per-replica": "2", PREDICTIVE_STATE_ANNOTATION: svc})
    for name in ("served", "auto"):
        await env.dataplane.start_load(ns, name, {"profile": {"type": "constant", "rate": 5}})
    try:
        await _until(env.dataplane.prometheus_url,
                     f'count(rate(sandbox_gateway_requests_total{{namespace="{ns}"}}[3s]) > 0) == 2', True)
        fs = await env.findings(lease_namespace=ns, configmap="zero")
    finally:
        for name in ("served", "auto"):
            await env.dataplane.stop_load(ns, name)
    (ok,) = pick(fs, "zero", f"{ns}/served")
    assert ok.status == OK and "wake query answers" in ok.detail and "scaled to zero after 900 s" in ok.detail, ok
    woken = re.search(r"answers ([0-9.e+-]+) \(demand: at zero it would be woken to (\d+) replica", ok.detail)
    assert woken and int(woken[2]) == min(math.ceil(float(woken[1]) / 2), 5), ok  # 2 req/s per replica, max 5
    (auto,) = pick(fs, "zero", f"{ns}/auto")
    assert auto.status == OK and "at its last service time 0.1s and 2 slots a replica)" in auto.detail, auto
    (bad,) = pick(fs, "zero", f"{ns}/silent")
    assert bad.status == FAIL and "found no series" in bad.detail and 'service="silent"' in bad.detail, bad
    assert "scaleToZero.wakeQuery" in bad.fix


async def test_a_wake_query_on_the_activators_counter_needs_the_activator_to_count_the_lease(env: Env) -> None:
    """A wake query reading the activator's counter answers 0 through `or vector(0)` whether or not the activator
    counts the lease: the doctor warns for a lease Prometheus has no counter of (its requests would not wake it)."""
    ns = "doc-act"
    zero_policy(env, ns, "activator", 'sum(rate(autoscaler_activator_requests_total{namespace="{{namespace}}",'
                'deployment="{{name}}"}[3s])) or vector(0)')
    for name in ("counted", "uncounted"):
        env.cluster.create_deployment(name, namespace=ns, replicas=0, kind="triton",
                                      annotations={P + "enabled": "true", P + "min-replicas": "0"})
    act = Activator(None)  # an activator that has seen only "counted" (one watching another cluster, say)
    act.set_ready(ns, "counted", 0)
    await act.start()
    runner, port = await serve(act.app(), "127.0.0.1", 0, shutdown_timeout=0.5)
    env.dataplane.scrape_activator(f"http://127.0.0.1:{port}")
    try:
        await _until(env.dataplane.prometheus_url, f'autoscaler_activator_requests_total{{namespace="{ns}"}}', True)
        fs = await env.findings(lease_namespace=ns, configmap="activator")
    finally:
        env.dataplane.prometheus.remove_target(JOB_GATEWAY, f"127.0.0.1:{port}")
        await runner.cleanup()
        await act.stop()
    assert [f.status for f in pick(fs, "zero", f"{ns}/counted")] == [OK]
    warn, ok = sorted(pick(fs, "zero", f"{ns}/uncounted"), key=lambda f: f.status != WARN)
    assert warn.status == WARN and "no series of it for this lease" in warn.detail, warn
    assert "manifests/components/activator" in warn.fix
    assert ok.status == OK and "answers 0 (no demand)" in ok.detail, ok


async def test_bad_annotation_is_reported_with_the_annotate_fix(env: Env) -> None:
    """max-replicas=ten fails, names key and rule, and the fix is the kubectl annotate command."""
    (f,) = pick(await env.findings(lease_namespace=NS), "annotations", f"{NS}/typo")
    assert f.status == FAIL and "max-replicas='ten'" in f.detail and "whole number" in f.detail
    assert f.fix.startswith(f"kubectl -n {NS} annotate deployment typo --overwrite {P}max-replicas=")


async def test_a_mistyped_key_is_fixed_by_moving_its_value_with_the_real_kubectl(env: Env, tmp_path: Path) -> None:
    """min-replica (a letter short) is ignored with a warning; the fix moves its value to min-replicas in one
    kubectl command, and the real kubectl run with that command leaves the lease valid."""
    (f,) = pick(await env.findings(lease_namespace=NS), "annotations", f"{NS}/misspelt")
    assert f.status == WARN and "did you mean 'min-replicas'?" in f.detail
    assert f.fix == f"kubectl -n {NS} annotate deployment misspelt --overwrite {P}min-replica- {P}min-replicas=1"
    home = tmp_path / "home"
    home.mkdir()
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(f.fix), env={"HOME": str(home), "KUBECONFIG": str(env.kubeconfig), "PATH": os.environ["PATH"]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    (f,) = pick(await env.findings(lease_namespace=NS), "annotations", f"{NS}/misspelt")
    assert f.status == OK, f
    ann = env.cluster.store.get(DEPLOYMENTS.storage_key, NS, "misspelt")["metadata"]["annotations"]
    assert ann[P + "min-replicas"] == "1" and P + "min-replica" not in ann


async def test_labels_not_matching_point_to_exported_pod_and_honor_labels(env: Env) -> None:
    """Series labelled exported_pod instead of pod are found and the fix is honorLabels: true."""
    (f,) = pick(await env.findings(lease_namespace=NS), "series", f"{NS}/relabelled")
    assert f.status == FAIL and "exported_pod" in f.detail
    assert "honorLabels: true" in f.fix


async def test_absent_metric_is_reported_as_absent(env: Env) -> None:
    """kvCacheUsage on pods that do not export it: the metric is absent, fix the scrape or the annotation."""
    (f,) = pick(await env.findings(lease_namespace=NS), "series", f"{NS}/absent")
    assert f.status == FAIL and "absent" in f.detail and "vllm:kv_cache_usage_perc" in f.detail
    assert "PodMonitor" in f.fix and f"{P}metrics" in f.fix


async def test_a_starting_pod_without_series_is_not_a_scrape_problem(env: Env) -> None:
    """A lease scaled up a moment ago: its Ready pod has series, the new pod (not Ready yet, so not scraped) has
    none, and that is said as such, not diagnosed as a label or scrape problem of the lease; a lease with no Ready
    pod at all waits for one. (It used to warn "no usable value for 1 of 2 pod(s)" with a relabelling fix.)"""
    ns, slow = "doc-starting", {P + "enabled": "true", P + "metrics": "queueTime",
                                "sandbox.inference-autoscaler.io/startup-seconds": "600"}
    env.cluster.ensure_namespace(ns)
    env.cluster.create_deployment("scaled", namespace=ns, replicas=1, kind="triton",
                                  annotations={P + "enabled": "true", P + "metrics": "queueTime"})
    await env.cluster.wait_for_ready(ns, "scaled")
    await _until(env.dataplane.prometheus_url, f'rate(nv_inference_request_success{{namespace="{ns}"}}[3s])', True)
    env.cluster.create_deployment("cold", namespace=ns, replicas=1, kind="triton", annotations=slow)
    api = await KubeApi.connect(str(env.kubeconfig))
    try:
        path = f"/apis/apps/v1/namespaces/{ns}/deployments/scaled"
        await api.patch(path, {"metadata": {"annotations": slow}})  # on the Deployment: no rollout, new pods only
        await api.patch(path + "/scale", {"spec": {"replicas": 2}})
        for _ in range(100):
            pods = (await api.get(f"/api/v1/namespaces/{ns}/pods"))["items"]
            if len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods):
                break
            await asyncio.sleep(0.1)
    finally:
        await api.close()
    fs = await env.findings(lease_namespace=ns)
    (f,) = pick(fs, "series", f"{ns}/scaled")
    assert f.status == OK and f.detail.endswith("series for all 1 pod(s); 1 pod(s) not Ready yet, none expected from them"), f
    (f,) = pick(fs, "series", f"{ns}/cold")
    assert f.status == WARN and "no Ready pod yet" in f.detail and "once a pod is Ready" in f.fix, f


async def test_predictive_leases_have_request_counters_and_known_slots(env: Env) -> None:
    """The predictive check, per predictive lease: a Triton lease sized with the policy's default slot, said as such;
    a NIM lease whose KV cache fills first, sized on the 5 requests it runs, not the 8 it reports (num_request_max);
    a plain vLLM lease with no slots stated, sized with
    the batch its pod ran while requests kept waiting (4 slots, overloaded), as the controller learns it, and
    warned when an annotation states other slots; a vLLM lease under a light load, never saturated, sized on what its
    KV cache holds (2 of the 8 it runs), and warned when annotated with its 8; an idle vLLM lease, which the controller leaves to the HPA rule; pods not
    scraped, whose lease has no request counters at all, with the diagnosis of the series check; an idle vLLM lease
    whose container passes --max-num-seqs, sized on it, and warned when annotated with more."""
    ns = "doc-pred"
    env.cluster.ensure_namespace(ns)
    env.cluster.create({"apiVersion": "v1", "kind": "ConfigMap",  # a 3-s window: saturated for 3 s is enough
                        "metadata": {"name": "predictive-3s", "namespace": "inference-autoscaler"},
                        "data": {"policy.yaml": POLICY + "  predictive: {rateWindowSeconds: 3}\n"}})
    pred = {P + "enabled": "true", P + "algorithm": "predictive"}
    kv = {"concurrency": 8, "kvCacheTokens": 5 * 640}  # NIM says 8; its KV cache holds five 640-token requests
    light = {"concurrency": 8, "serviceTimeMs": 50, "kvCacheTokens": 2 * 640}  # its KV cache holds two requests
    leases = (("triton", "triton", {}), ("nim", "nim", {"serving": kv}), ("vllm", "vllm", {}),
              ("idle", "vllm", {}), ("light", "vllm", {"serving": light}), ("dark", "triton", {"scrape": False}),
              ("flag", "vllm", {"container": {"args": ["--model", "m", "--max-num-seqs=6"]}}))
    for name, kind, extra in leases:
        env.cluster.create_deployment(name, namespace=ns, replicas=1, kind=kind, annotations=pred, **extra)
    for name, _, _ in leases:
        await env.cluster.wait_for_ready(ns, name)
    url = env.dataplane.prometheus_url
    await _until(url, f'rate(nv_inference_request_success{{namespace="{ns}"}}[30s])', True)
    await _until(url, f'count(count by (pod) (rate(vllm:request_success_total{{namespace="{ns}"}}[30s]))) == 5', True)
    await env.dataplane.start_load(ns, "light", {"profile": {"type": "constant", "rate": 16}})  # 0.8 running
    for name in ("vllm", "nim"):  # 200 req/s: more than either runs (100 and 125 req/s)
        await env.dataplane.start_load(ns, name, {"profile": {"type": "constant", "rate": 200}})
    try:  # running requests while some waited at every sample of 3 s
        for name in ("vllm", "nim"):
            m = f'namespace="{ns}", pod=~"{name}-.*"'
            await _until(url, f"max_over_time((sum(vllm:num_requests_running{{{m}}}) and "
                              f"sum(min_over_time(vllm:num_requests_waiting{{{m}}}[3s])) > 0)[1h:5s])", True)
    finally:
        for name in ("vllm", "nim"):
            await env.dataplane.stop_load(ns, name)
    (dark,) = [p for p in env.cluster.store.list_objects(PODS.storage_key, ns) if p["metadata"]["name"].startswith("dark-")]
    for cond in dark["status"]["conditions"]:  # Ready for five minutes: long enough to have had a rate
        cond["lastTransitionTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 300))
    env.cluster.store.replace(PODS.storage_key, dark)

    async def findings() -> list[Finding]:
        return await env.findings(lease_namespace=ns, configmap="predictive-3s")
    await _until(url, f'avg_over_time(vllm:kv_cache_usage_perc{{namespace="{ns}", pod=~"light-.*"}}[10s]) > 0.2', True)
    fs = await findings()
    (f,) = pick(fs, "predictive", f"{ns}/triton")
    assert f.status == OK and "sized from Triton's request counters of 1 pod(s), 1 slot(s) per replica from the " \
        "policy's default" in f.detail, f
    (f,) = pick(fs, "predictive", f"{ns}/nim")
    assert f.status == OK and "vLLM's request counters" in f.detail and "5 slot(s) per replica from the batch its " \
        "pods ran while requests waited; fewer than the 8 its pods report (num_request_max)" in f.detail, f
    (f,) = pick(fs, "predictive", f"{ns}/vllm")
    assert f.status == OK and "4 slot(s) per replica from the batch its pods ran while requests waited" in f.detail, f
    (f,) = pick(fs, "predictive", f"{ns}/light")
    assert f.status == OK and "2 slot(s) per replica from the requests its pods' KV cache holds" in f.detail, f
    (f,) = pick(fs, "predictive", f"{ns}/idle")
    assert f.status == WARN and "no pod has yet had a tenth of its KV cache in use or been saturated" in f.detail \
        and "HPA rule" in f.detail, f
    assert f.fix.startswith(f"kubectl -n {ns} annotate deployment idle --overwrite {P}slots-per-replica=<"), f
    (f,) = pick(fs, "predictive", f"{ns}/flag")
    assert f.status == OK and "6 slot(s) per replica from the --max-num-seqs its pod template passes" in f.detail, f
    fix = f"kubectl -n {ns} annotate deployment vllm --overwrite {P}slots-per-replica=4"
    dep = env.cluster.store.get(DEPLOYMENTS.storage_key, ns, "vllm")
    assert dep is not None
    dep["metadata"]["annotations"][P + "slots-per-replica"] = "16"  # more than it runs: its KV cache fills first
    env.cluster.store.replace(DEPLOYMENTS.storage_key, dep)
    light_dep = env.cluster.store.get(DEPLOYMENTS.storage_key, ns, "light")
    assert light_dep is not None
    light_dep["metadata"]["annotations"][P + "slots-per-replica"] = "8"  # its --max-num-seqs: more than fits
    env.cluster.store.replace(DEPLOYMENTS.storage_key, light_dep)
    flag_dep = env.cluster.store.get(DEPLOYMENTS.storage_key, ns, "flag")
    assert flag_dep is not None
    flag_dep["metadata"]["annotations"][P + "slots-per-replica"] = "10"  # more than its --max-num-seqs
    env.cluster.store.replace(DEPLOYMENTS.storage_key, flag_dep)
    fs = await findings()
    await env.dataplane.stop_load(ns, "light")
    (over,) = pick(fs, "predictive", f"{ns}/vllm")
    (stated,) = pick(fs, "predictive", f"{ns}/light")
    assert stated.status == WARN and "its pods' KV cache holds 2 requests at their present sizes" in stated.detail \
        and stated.fix == f"kubectl -n {ns} annotate deployment light --overwrite {P}slots-per-replica=2", stated
    assert over.status == WARN and "sized for 16 slot(s) per replica from the slots-per-replica annotation" in \
        over.detail and over.fix == fix, over
    (flag,) = pick(fs, "predictive", f"{ns}/flag")
    assert flag.status == WARN and "more than the --max-num-seqs 6 its pod template passes" in flag.detail \
        and flag.fix == f"kubectl -n {ns} annotate deployment flag --overwrite {P}slots-per-replica=6", flag
    assert "its pods ran 4 requests at once while others kept waiting" in over.detail, over
    dep["metadata"]["annotations"][P + "slots-per-replica"] = "1"  # fewer than it runs: too many replicas
    env.cluster.store.replace(DEPLOYMENTS.storage_key, dep)
    (under,) = pick(await findings(), "predictive", f"{ns}/vllm")
    assert under.status == WARN and "sized for 1 slot(s)" in under.detail and "keeps too many" in under.detail, under
    dep["metadata"]["annotations"][P + "slots-per-replica"] = "5"  # within a quarter of the 4 it ran
    env.cluster.store.replace(DEPLOYMENTS.storage_key, dep)
    (near,) = pick(await findings(), "predictive", f"{ns}/vllm")
    assert near.status == OK and "5 slot(s) per replica from the slots-per-replica annotation" in near.detail, near
    (f,) = pick(fs, "predictive", f"{ns}/dark")
    assert f.status == WARN and "no request counters for 1 Ready pod(s), none of Triton's, vLLM's or NIM's" in f.detail, f
    assert "no series is labelled with these pods" in f.detail and f"{P}algorithm=hpa" in f.fix, f


async def test_an_hpa_on_an_enforcing_lease_is_a_conflict_and_on_a_shadow_one_the_migration(env: Env) -> None:
    """A HorizontalPodAutoscaler scaling an enforcing lease's Deployment fails the conflicts check, with the fix; next
    to a lease in shadow mode it is the migration's comparison and passes; one on another Deployment is ignored.
    KEDA's own HPA (owned by a ScaledObject) is fixed by deleting the ScaledObject: KEDA recreates its HPA."""
    ns = "doc-hpa"
    env.cluster.ensure_namespace(ns)
    for name, mode in (("fought", "enforce"), ("compared", "shadow"), ("alone", "enforce"), ("keda", "enforce")):
        env.cluster.create_deployment(name, namespace=ns, replicas=1, kind="triton",
                                      annotations={P + "enabled": "true", P + "mode": mode})
    for name in ("fought", "compared", "other", "keda"):
        owner = [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "keda-so", "uid": "1",
                  "controller": True}] if name == "keda" else []
        env.cluster.create({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "metadata": {"name": f"{name}-hpa", "namespace": ns, "ownerReferences": owner},
                            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                                     "minReplicas": 1, "maxReplicas": 4}})
    fs = await env.findings(lease_namespace=ns)
    (fought,) = pick(fs, "conflicts", f"{ns}/fought")
    assert fought.status == FAIL and "HorizontalPodAutoscaler fought-hpa also scales this Deployment" in fought.detail
    assert fought.fix.startswith(f"kubectl -n {ns} delete hpa fought-hpa")
    (compared,) = pick(fs, "conflicts", f"{ns}/compared")
    assert compared.status == OK and "shadow mode" in compared.detail
    assert not pick(fs, "conflicts", f"{ns}/alone")
    (keda,) = pick(fs, "conflicts", f"{ns}/keda")
    assert keda.status == FAIL and "(KEDA's, for ScaledObject keda-so)" in keda.detail, keda
    assert keda.fix.startswith(f"kubectl -n {ns} delete scaledobject keda-so"), keda


async def test_a_manifest_applied_with_replicas_undoes_the_scaling(env: Env, tmp_path: Path) -> None:
    """Deployments applied with the real kubectl: client-side with spec.replicas (the last-applied-configuration
    annotation), and server-side by another field manager (an Apply entry of managedFields owning spec.replicas),
    each warn that every apply sets the replicas back, naming who applies; applied without spec.replicas, or in
    shadow mode (the controller writes nothing), no warning."""
    ns = "doc-apply"
    env.cluster.ensure_namespace(ns)
    home = tmp_path / "home"
    home.mkdir()

    async def kubectl(*args: str, manifest: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--request-timeout=20s", *args, "-f", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"HOME": str(home), "KUBECONFIG": str(env.kubeconfig), "PATH": os.environ["PATH"]})
        _, err = await asyncio.wait_for(proc.communicate(manifest.encode()), 60)
        assert proc.returncode == 0, err.decode()

    def manifest(name: str, replicas: bool = True, mode: str = "enforce") -> str:
        return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}, annotations: "
                f"{{{P}enabled: 'true', {P}mode: {mode}}}}}\nspec:\n" + ("  replicas: 2\n" if replicas else "")
                + f"  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
                "    spec: {containers: [{name: triton, image: 'nvcr.io/nvidia/tritonserver:24.05-py3'}]}\n")
    await kubectl("apply", manifest=manifest("client"))
    await kubectl("apply", "--server-side", "--field-manager=argocd-controller", manifest=manifest("gitops"))
    await kubectl("apply", "--server-side", "--field-manager=flux", manifest=manifest("clean", replicas=False))
    await kubectl("apply", manifest=manifest("compared", mode="shadow"))
    fs = await env.findings(lease_namespace=ns)
    (client,) = pick(fs, "conflicts", f"{ns}/client")
    assert client.status == WARN and client.detail.startswith(
        "kubectl apply (its last-applied-configuration sets spec.replicas: 2): each apply of the manifest sets "
        "spec.replicas back"), client
    assert "leave spec.replicas out of the applied manifest" in client.fix, client
    (gitops,) = pick(fs, "conflicts", f"{ns}/gitops")
    assert gitops.status == WARN and gitops.detail.startswith(
        "argocd-controller (server-side apply owns spec.replicas)"), gitops
    assert not pick(fs, "conflicts", f"{ns}/clean") and not pick(fs, "conflicts", f"{ns}/compared")


async def test_the_controller_check_reads_its_leader_lease(env: Env) -> None:
    """A Lease renewed a moment ago: the controller runs; renewed ten minutes ago: none runs (fail); released or
    absent: a warning saying so. Each names the Lease and where to look."""
    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t))
    for name, holder, renewed in (("fresh", "ctl-a", time.time() - 2), ("stale", "ctl-b", time.time() - 600),
                                  ("released", None, time.time() - 5)):
        spec = {"leaseDurationSeconds": 15, "renewTime": stamp(renewed), **({"holderIdentity": holder} if holder else {})}
        env.cluster.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": name, "namespace": "inference-autoscaler"}, "spec": spec})

    async def finding(lease: str) -> Finding:
        (f,) = pick(await env.findings(lease_namespace=NS, leader_lease=lease), "controller")
        return f
    fresh, stale, released, absent = [await finding(n) for n in ("fresh", "stale", "released", "absent")]
    assert fresh.status == OK and fresh.detail.startswith("ctl-a leads (Lease inference-autoscaler/fresh renewed ")
    assert stale.status == FAIL and re.search(r"last renewed 6\d\ds ago by ctl-b", stale.detail), stale
    assert "no controller is running" in stale.detail and "logs deploy/inference-autoscaler" in stale.fix
    assert released.status == WARN and "held by no one" in released.detail
    assert absent.status == WARN and "no Lease inference-autoscaler/absent" in absent.detail
    assert "kubectl apply -k manifests/" in absent.fix


async def test_prometheus_down_fails_first_and_skips_the_series(env: Env) -> None:
    """With Prometheus unreachable the first finding says so with the port-forward fix; PromQL checks are skipped."""
    async with FaultProxy(env.dataplane.prometheus_url) as proxy:
        proxy.set("down")
        fs = await env.findings(prometheus_url=proxy.url, lease_namespace=NS)
    assert fs[0].check == "prometheus" and fs[0].status == FAIL and "not reachable" in fs[0].detail
    assert "--prometheus-url" in fs[0].fix and "port-forward" in fs[0].fix
    assert {f.status for f in pick(fs, "series")} == {SKIP}


async def test_podmonitor_labels_against_the_policy_selector_labels(env: Env) -> None:
    """A PodMonitor without the labels Prometheus selects on (policy podMonitorLabels) gets a label fix."""
    env.cluster.create({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                        "metadata": {"name": "triton", "namespace": NS, "labels": {"release": "other"}},
                        "spec": {"selector": {"matchLabels": {"app": "good"}},
                                 "podMetricsEndpoints": [{"port": "metrics"}]}})
    (f,) = pick(await env.findings(lease_namespace=NS), "operator", f"PodMonitor {NS}/triton")
    assert f.status == WARN and "release" in f.detail
    assert f.fix == f"kubectl -n {NS} label podmonitor triton release=prometheus"


async def test_cli_checklist_json_and_exit_code(env: Env) -> None:
    """The command prints JSON findings and exits 1 because some checks fail."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autoscaler.cli", "doctor", "--kubeconfig", str(env.kubeconfig), "--prometheus-url",
        env.dataplane.prometheus_url, "--namespace", NS, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()[-2000:]
    doc = json.loads(out)
    assert doc["ok"] is False
    assert {f["check"] for f in doc["findings"]} >= {"prometheus", "policy", "annotations", "series", "rbac"}
    assert all(f["fix"] for f in doc["findings"] if f["status"] == FAIL)
