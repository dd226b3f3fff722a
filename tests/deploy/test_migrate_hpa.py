"""migrate-hpa: HPAs become lease annotations plus policy snippets, with a warning for each lost feature."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.cli import main
from autoscaler.commands.migrate_hpa import convert, parse_quantity, policy_snippet
from autoscaler.config import ClusterPolicy, Severity, load_policy, parse_policy, resolve_lease
from autoscaler.sandbox.cluster import SandboxCluster
from tests.deploy.conftest import Kubectl

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "config" / "policy.yaml")
P = "inference-autoscaler.io/"


def hpa(metrics: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                            "minReplicas": 1, "maxReplicas": 4, **spec}
    if metrics is not None:
        body["metrics"] = metrics
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web-hpa", "namespace": "shop"}, "spec": body}


def pods(name: str, value: str) -> dict[str, Any]:
    return {"type": "Pods", "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": value}}}


def resolves(annotations: dict[str, str], policy: ClusterPolicy = POLICY) -> None:
    res = resolve_lease("shop", "web", annotations, policy)
    assert res.lease is not None, [i.message for i in res.issues]
    assert not [i for i in res.issues if i.severity == Severity.INVALID]


CASES = [
    ("cpu-utilisation", hpa([{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 70}}}]), {"cpuUtilization": "70"}, []),
    ("v1-cpu", {**hpa(targetCPUUtilizationPercentage=60), "apiVersion": "autoscaling/v1"}, {"cpuUtilization": "60"}, []),
    ("default-metrics-are-80-percent-cpu", hpa(), {"cpuUtilization": "80"}, []),
    ("nim-kv-cache-fraction", hpa([pods("gpu_cache_usage_perc", "500m")]), {"kvCacheUsage": "50"}, ["percent"]),
    ("tms-queue-time", hpa([pods("tms_avg_request_queue_duration", "20000")]), {"queueTime": "20000"}, []),
    ("memory-dropped", hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80"), {"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}}]),
     {"gpuUtilization": "80"}, ["memory has no equivalent"]),
    ("object-dropped", hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80"), {"type": "Object", "object": {
        "describedObject": {"kind": "Ingress", "name": "web"}, "metric": {"name": "rps"},
        "target": {"type": "Value", "value": "10"}}}]), {"gpuUtilization": "80"}, ["Object metric"]),
    ("external-dropped", hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80"), {"type": "External", "external": {
        "metric": {"name": "queue_depth"}, "target": {"type": "AverageValue", "averageValue": "30"}}}]),
     {"gpuUtilization": "80"}, ["External metric"]),
    ("scale-to-zero", hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80")], minReplicas=0), {"gpuUtilization": "80"},
     ["scale to zero"]),
    ("own-behaviour", hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80")], behavior={
        "scaleDown": {"stabilizationWindowSeconds": 60}}), {"gpuUtilization": "80"}, ["cluster-wide"]),
    ("max-above-limit", hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80")], maxReplicas=50), {"gpuUtilization": "80"},
     ["clamped"]),
]


@pytest.mark.parametrize(("hpa_obj", "thresholds", "warnings"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conversion_table(hpa_obj: dict[str, Any], thresholds: dict[str, str], warnings: list[str]) -> None:
    """Each HPA shape gives the expected metric thresholds and warns about what has no equivalent."""
    c = convert(hpa_obj, POLICY)
    assert c.target == "web"
    assert c.annotations[P + "mode"] == "shadow"
    assert c.annotations[P + "metrics"] == ",".join(thresholds)
    assert {k.removeprefix(P + "threshold."): v for k, v in c.annotations.items()
            if k.startswith(P + "threshold.")} \
        == thresholds
    for w in warnings:
        assert any(w in x for x in c.warnings), (w, c.warnings)
    if not warnings:
        assert c.warnings == []
    resolves(c.annotations)


def test_min_replicas_zero_is_kept_where_the_policy_can_wake_a_lease() -> None:
    """minReplicas 0 becomes min-replicas 0 only under a policy with a wake query (and lowerBound 0), else 1."""
    obj = hpa([pods("DCGM_FI_DEV_GPU_UTIL", "80")], minReplicas=0)
    assert convert(obj, POLICY).annotations[P + "min-replicas"] == "1"
    doc = yaml.safe_load((REPO / "config" / "policy.yaml").read_text())
    doc["autoscaling"]["replicas"]["limits"]["minimum"]["lowerBound"] = 0
    doc["autoscaling"]["scaleToZero"] = {"wakeQuery": 'sum(rate(gw_total{service="{{name}}"}[1m])) or vector(0)'}
    policy = parse_policy(yaml.safe_dump(doc))
    c = convert(obj, policy)
    assert c.annotations[P + "min-replicas"] == "0" and any("scaleToZero.wakeQuery" in w for w in c.warnings)
    resolves(c.annotations, policy)


def test_custom_pods_metric_becomes_a_policy_metric() -> None:
    """An unknown Pods metric becomes a custom PromQL metric; with the snippet merged the lease is valid."""
    m = pods("triton_pending", "5")
    m["pods"]["metric"]["selector"] = {"matchLabels": {"model": "resnet"}}
    c = convert(hpa([m]), POLICY)
    assert c.annotations[P + "metrics"] == "custom_triton_pending"
    snippet = policy_snippet([c])
    q = snippet["autoscaling"]["metrics"]["custom_triton_pending"]["query"]
    assert q == 'avg by (namespace, pod) (triton_pending{model="resnet", {{selector}}})'
    assert any("Prometheus Adapter" in w for w in c.warnings)
    merged = yaml.safe_load((REPO / "config" / "policy.yaml").read_text())
    merged["autoscaling"]["metrics"].update(snippet["autoscaling"]["metrics"])
    resolves(c.annotations, parse_policy(yaml.safe_dump(merged)))


def test_disallowed_metric_and_out_of_range_threshold_need_policy() -> None:
    """A metric the policy does not allow, or a target outside its range, yields a snippet that fixes it."""
    strict = parse_policy("autoscaling: {enable: true, metrics: {kvCacheUsage: {allowed: false, enabled: false}}}")
    c = convert(hpa([pods("vllm:kv_cache_usage_perc", "0.05")]), strict)
    assert c.metrics["kvCacheUsage"]["allowed"] is True
    assert c.metrics["kvCacheUsage"]["threshold"]["minimum"] == 5
    assert any("neither allows nor enables" in w for w in c.warnings)


def test_not_a_deployment_and_nothing_convertible_are_skipped() -> None:
    """A StatefulSet target, or an HPA with only memory, is not converted (keep the HPA) and says why."""
    sts = hpa()
    sts["spec"]["scaleTargetRef"]["kind"] = "StatefulSet"
    c = convert(sts, POLICY)
    assert c.target is None and c.annotations == {} and "only Deployments" in c.warnings[0]
    mem = convert(hpa([{"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "1Gi"}}}]), POLICY)
    assert mem.target is None and any("keep the HPA" in w for w in mem.warnings)


def scaled_object(triggers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "web-so", "namespace": "shop"},
            "spec": {"scaleTargetRef": {"name": "web"}, "triggers": triggers, **spec}}


RATE = {"type": "prometheus", "metadata": {
    "serverAddress": "http://prometheus.monitoring:9090", "threshold": "8", "activationThreshold": "0.5",
    "query": 'sum(rate(istio_requests_total{destination_workload_namespace="shop",destination_workload="web"}[1m]))'}}


def test_keda_scaled_objects_become_leases() -> None:
    """KEDA's defaults (Deployment target, 0..100 replicas), a CPU trigger, the HPA behaviour KEDA passes on; a
    prometheus trigger, which has no per-pod equivalent, becomes the predictive algorithm; other triggers and a
    non-Deployment target are said, never silently dropped."""
    cpu = convert(scaled_object([{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}],
                                minReplicaCount=1, maxReplicaCount=4), POLICY)
    assert cpu.kind == "ScaledObject" and cpu.target == "web" and cpu.warnings == [], cpu.warnings
    assert cpu.annotations[P + "metrics"] == "cpuUtilization" and cpu.annotations[P + "threshold.cpuUtilization"] == "60"
    assert (cpu.annotations[P + "min-replicas"], cpu.annotations[P + "max-replicas"]) == ("1", "4")
    resolves(cpu.annotations)
    rate = convert(scaled_object([RATE, {"type": "kafka", "metadata": {"topic": "jobs"}}], maxReplicaCount=4,
                                 advanced={"horizontalPodAutoscalerConfig": {"behavior": {
                                     "scaleDown": {"stabilizationWindowSeconds": 60}}}}), POLICY)
    assert rate.annotations[P + "algorithm"] == "predictive" and P + "metrics" not in rate.annotations
    assert rate.annotations[P + "min-replicas"] == "1"  # KEDA's 0, but this policy cannot wake a lease
    for w in ("predictive algorithm", "kafka trigger has no equivalent", "cluster-wide",
              "merge the scaleToZero snippet"):
        assert any(w in x for x in rate.warnings), (w, rate.warnings)
    resolves(rate.annotations)
    snippet = policy_snippet([rate])["autoscaling"]
    assert snippet["scaleToZero"] == {"wakeQuery": '(sum(rate(istio_requests_total{destination_workload_namespace='
                                                   '"{{namespace}}",destination_workload="{{name}}"}[1m]))) or '
                                                   'vector(0)', "idleSeconds": 300, "wakeThreshold": 0.5}
    assert not any("names the Deployment" in w for w in rate.warnings)
    pods_query = {"type": "prometheus", "metadata": {"threshold": "6", "query": 'sum(rate(vllm:request_success_total'
                                                     '{namespace="shop",pod=~"web-.*"}[1m]))'}}
    assert any("names the Deployment 'web' nowhere" in w for w in convert(scaled_object([pods_query]), POLICY).warnings)
    assert snippet["replicas"] == {"limits": {"minimum": {"lowerBound": 0}}}
    sts = scaled_object([RATE])
    sts["spec"]["scaleTargetRef"] = {"name": "db", "kind": "StatefulSet"}
    assert convert(sts, POLICY).target is None
    assert convert(scaled_object([{"type": "memory", "metadata": {"value": "70"}}]), POLICY).target is None
    keda_hpa = hpa([{"type": "External", "external": {"metric": {"name": "s0-prometheus"}, "target": {
        "type": "AverageValue", "averageValue": "8"}}}])
    keda_hpa["metadata"]["ownerReferences"] = [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                                "name": "web-so", "uid": "1"}]
    made = convert(keda_hpa, POLICY)  # the HPA KEDA made for it: the ScaledObject is converted instead
    assert made.target is None and made.annotations == {} and "convert the ScaledObject" in made.warnings[0]
    odd = convert(scaled_object([{"type": "prometheus", "metadata": {"query": "q", "threshold": "x"}},
                                 {"type": "cpu", "metadata": {"value": None}}, "junk"],  # type: ignore[list-item]
                                minReplicaCount=None, maxReplicaCount="many", cooldownPeriod=None), POLICY)
    assert odd.annotations[P + "max-replicas"] == "100" and any("numeric metadata.value" in w for w in odd.warnings)


def test_a_keda_rate_trigger_wakes_from_zero_under_a_policy_with_its_query() -> None:
    """With the snippet merged (the trigger's query as the policy's wake query), minReplicaCount 0 stays 0 and the
    trigger's threshold, the request rate one replica serves, is the lease's wake-target."""
    doc = yaml.safe_load((REPO / "config" / "policy.yaml").read_text())
    doc["autoscaling"]["replicas"]["limits"]["minimum"]["lowerBound"] = 0
    doc["autoscaling"]["scaleToZero"] = policy_snippet([convert(scaled_object([RATE]), POLICY)])[
        "autoscaling"]["scaleToZero"]
    policy = parse_policy(yaml.safe_dump(doc))
    c = convert(scaled_object([RATE], maxReplicaCount=4, cooldownPeriod=600), policy)
    assert c.annotations[P + "min-replicas"] == "0" and c.annotations[P + "wake-target"] == "8"
    assert c.annotations[P + "idle-seconds"] == "600"  # its cooldownPeriod; the policy's (300) is KEDA's default
    resolves(c.annotations, policy)
    res = resolve_lease("shop", "web", c.annotations, policy)
    assert res.lease is not None and res.lease.wake_target == 8.0 and res.lease.algorithm == "predictive"
    assert res.lease.idle_s == 600.0
    assert P + "idle-seconds" not in convert(scaled_object([RATE]), policy).annotations
    # a policy with the wake query but no zero minimum: min-replicas 1, and no scale-to-zero annotation to ignore
    doc["autoscaling"]["replicas"]["limits"]["minimum"]["lowerBound"] = 1
    one = convert(scaled_object([RATE], cooldownPeriod=600), parse_policy(yaml.safe_dump(doc)))
    assert one.annotations[P + "min-replicas"] == "1"
    assert P + "wake-target" not in one.annotations and P + "idle-seconds" not in one.annotations


def test_quantities() -> None:
    """Kubernetes quantities parse like the API server reads them."""
    assert [parse_quantity(q) for q in ("500m", "2", "1.5k", "1Ki", 3, "2e3")] == [0.5, 2, 1500, 1024, 3, 2000]
    with pytest.raises(ValueError):
        parse_quantity("12 apples")


def test_cli_from_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`autoscaler migrate-hpa -f` reads a `kubectl get hpa -o yaml` List and prints commands, snippet, advice."""
    f = tmp_path / "hpas.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        hpa([pods("gpu_cache_usage_perc", "0.7")]), hpa([pods("my_metric", "3")])]}))
    assert main(["migrate-hpa", "-f", str(f)]) == 0
    out = capsys.readouterr().out
    assert "kubectl annotate --overwrite -n shop deployment/web" in out
    assert "inference-autoscaler.io/mode=shadow" in out and "custom_my_metric:" in out
    assert "compare" in out and "enforce" in out
    assert main(["migrate-hpa", "-f", str(f), "-o", "json", "--enforce"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "enforce" and doc["leases"][0]["annotations"][P + "threshold.kvCacheUsage"] == "70"
    f.write_text(yaml.safe_dump_all([hpa([pods("gpu_cache_usage_perc", "0.7")]), scaled_object([RATE])]))
    assert main(["migrate-hpa", "-f", str(f)]) == 0
    out = capsys.readouterr().out
    assert "# ScaledObject shop/web-so -> Deployment shop/web" in out and "scaleToZero:" in out
    assert "delete the ScaledObject, not that HPA" in out


async def test_cli_from_a_cluster(cluster: SandboxCluster, kubectl: Kubectl, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """From a cluster (the sandbox over HTTP): none yet is exit 1; then one HPA made by `kubectl autoscale`
    (autoscaling/v1, CPU) and one created through the API (v2, a Pods metric) are both converted, -A; and a KEDA
    ScaledObject applied with kubectl beside them."""
    kc = str(kubectl.kubeconfig)
    assert await asyncio.to_thread(main, ["migrate-hpa", "--kubeconfig", kc, "-A"]) == 1
    assert "no HorizontalPodAutoscaler found" in capsys.readouterr().err

    for ns, name in (("shop", "web"), ("inference", "triton")):
        cluster.ensure_namespace(ns)
        cluster.create_deployment({"name": name, "namespace": ns})
    rc, out, err = await kubectl("autoscale", "deployment", "web", "-n", "shop", "--min=2", "--max=6",
                                 "--cpu-percent=65")
    assert rc == 0 and "horizontalpodautoscaler.autoscaling/web autoscaled" in out, err
    triton = hpa([pods("vllm:gpu_cache_usage_perc", "700m")], minReplicas=1, maxReplicas=3)
    triton["metadata"] = {"name": "triton-hpa", "namespace": "inference"}
    triton["spec"]["scaleTargetRef"]["name"] = "triton"
    cluster.create(triton)

    assert await asyncio.to_thread(main, ["migrate-hpa", "--kubeconfig", kc, "-A"]) == 0
    text = capsys.readouterr().out
    assert "# HPA shop/web -> Deployment shop/web" in text
    assert ("kubectl annotate --overwrite -n shop deployment/web inference-autoscaler.io/enabled=true "
            "inference-autoscaler.io/mode=shadow inference-autoscaler.io/min-replicas=2 "
            "inference-autoscaler.io/max-replicas=6 inference-autoscaler.io/metrics=cpuUtilization "
            "inference-autoscaler.io/threshold.cpuUtilization=65") in text
    assert "# HPA inference/triton-hpa -> Deployment inference/triton" in text
    assert "inference-autoscaler.io/threshold.kvCacheUsage=70" in text

    assert await asyncio.to_thread(main, ["migrate-hpa", "--kubeconfig", kc, "-A", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    leases = {lease["hpa"]: lease for lease in doc["leases"]}
    assert set(leases) == {"shop/web", "inference/triton-hpa"}
    assert leases["shop/web"]["deployment"] == "web" and leases["shop/web"]["warnings"] == []
    assert leases["shop/web"]["annotations"] == {
        P + "enabled": "true", P + "mode": "shadow", P + "min-replicas": "2", P + "max-replicas": "6",
        P + "metrics": "cpuUtilization", P + "threshold.cpuUtilization": "65"}
    kv = leases["inference/triton-hpa"]
    assert kv["deployment"] == "triton"
    assert {k: kv["annotations"][P + k] for k in ("min-replicas", "max-replicas", "metrics", "threshold.kvCacheUsage")} \
        == {"min-replicas": "1", "max-replicas": "3", "metrics": "kvCacheUsage", "threshold.kvCacheUsage": "70"}
    assert any("becomes kvCacheUsage 70" in w for w in kv["warnings"]), kv["warnings"]
    for lease in leases.values():
        resolve = resolve_lease(lease["hpa"].split("/")[0], lease["deployment"], lease["annotations"], POLICY)
        assert resolve.lease is not None, [i.message for i in resolve.issues]

    # -n reads one namespace only
    assert await asyncio.to_thread(main, ["migrate-hpa", "--kubeconfig", kc, "-n", "shop", "-o", "json"]) == 0
    assert [lease["hpa"] for lease in json.loads(capsys.readouterr().out)["leases"]] == ["shop/web"]

    so = tmp_path / "scaledobject.yaml"
    so.write_text(yaml.safe_dump(scaled_object([RATE], minReplicaCount=1, maxReplicaCount=4)))
    rc, out, err = await kubectl("apply", "-f", str(so))
    assert rc == 0 and "scaledobject.keda.sh/web-so created" in out, err
    assert await asyncio.to_thread(main, ["migrate-hpa", "--kubeconfig", kc, "-n", "shop", "-o", "json"]) == 0
    leases = {lease["hpa"]: lease for lease in json.loads(capsys.readouterr().out)["leases"]}
    assert set(leases) == {"shop/web", "shop/web-so"} and leases["shop/web-so"]["kind"] == "ScaledObject"
    assert leases["shop/web-so"]["annotations"][P + "algorithm"] == "predictive"


async def test_cli_from_an_unreachable_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kubeconfig whose server does not answer (a closed port): a clear message and exit 2, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "gone", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}))
    rc = await asyncio.to_thread(main, ["migrate-hpa", "--kubeconfig", str(kc), "-A"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("migrate-hpa: reading HPAs from the cluster failed:") and f"127.0.0.1:{port}" in err
    assert "Traceback" not in err
