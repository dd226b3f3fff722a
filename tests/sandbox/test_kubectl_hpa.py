"""HorizontalPodAutoscalers in the sandbox: stored only (no HPA controller), served as autoscaling/v2 (the
stored form) and autoscaling/v1 (a converted view, which kubectl 1.32's `autoscale` writes in protobuf).
Checked with the real kubectl in a fresh HOME, and over raw HTTP for what kubectl hides."""

from __future__ import annotations

import json

import pytest
import yaml
from apihelpers import Http, Kubectl

from autoscaler.sandbox.cluster import SandboxCluster

pytestmark = pytest.mark.kubectl

HPA = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: triton-hpa, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: triton-a}
  minReplicas: 2
  maxReplicas: 8
  metrics:
  - type: Pods
    pods:
      metric: {name: gpu_cache_usage_perc}
      target: {type: AverageValue, averageValue: 500m}
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 120}
"""
V2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
V1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"


async def test_create_get_table_and_yaml(kubectl: Kubectl) -> None:
    """create -f (server-side field validation), the real printer's columns, -o yaml with the v2 defaults,
    -A across namespaces, and delete."""
    assert "horizontalpodautoscaler.autoscaling/triton-hpa created" in await kubectl.ok("create", "-f", "-",
                                                                                     stdin=HPA)
    typo = await kubectl("create", "-f", "-", stdin=HPA.replace("triton-hpa", "t2").replace("maxReplicas",
                                                                                          "maxReplica"))
    assert typo.rc != 0 and 'unknown field "spec.maxReplica"' in typo.err
    inverted = await kubectl("create", "-f", "-", stdin=HPA.replace("triton-hpa", "t3").replace("maxReplicas: 8",
                                                                                              "maxReplicas: 1"))
    assert inverted.rc != 0 and "spec.maxReplicas: Invalid value: 1: must be greater than or equal to " \
        "`minReplicas`" in inverted.err
    await kubectl.ok("create", "namespace", "team")
    await kubectl.ok("create", "-f", "-", stdin=HPA.replace("name: triton-hpa, namespace: default",
                                                            "name: other, namespace: team"))

    header, *rows = (await kubectl.ok("get", "hpa")).splitlines()
    assert header.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert len(rows) == 1
    name, ref, rest = rows[0].split(None, 2)
    assert (name, ref) == ("triton-hpa", "Deployment/triton-a")
    assert rest.startswith("<unknown>/500m, cpu: <unknown>/60%") and rest.split()[3:6] == ["2", "8", "0"]

    obj = yaml.safe_load(await kubectl.ok("get", "hpa", "triton-hpa", "-o", "yaml"))
    assert obj["apiVersion"] == "autoscaling/v2" and obj["metadata"]["generation"] == 1
    assert [m["type"] for m in obj["spec"]["metrics"]] == ["Pods", "Resource"]
    assert obj["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "500m"
    behavior = obj["spec"]["behavior"]  # given behaviour is completed with the upstream defaults
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 120, "selectPolicy": "Max",
                                     "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert [p["type"] for p in behavior["scaleUp"]["policies"]] == ["Pods", "Percent"]

    listed = yaml.safe_load(await kubectl.ok("get", "hpa", "-A", "-o", "yaml"))
    assert sorted((i["metadata"]["namespace"], i["metadata"]["name"], i["kind"]) for i in listed["items"]) == [
        ("default", "triton-hpa", "HorizontalPodAutoscaler"), ("team", "other", "HorizontalPodAutoscaler")]

    assert 'horizontalpodautoscaler.autoscaling "triton-hpa" deleted' in await kubectl.ok("delete", "hpa",
                                                                                         "triton-hpa")
    gone = await kubectl("get", "hpa", "triton-hpa")
    assert gone.rc != 0 and 'horizontalpodautoscalers.autoscaling "triton-hpa" not found' in gone.err


async def test_autoscale_writes_v1_read_as_v2(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """kubectl autoscale (autoscaling/v1, protobuf) creates an HPA that reads back as v2 with the CPU metric;
    edits bump generation; a v1 write keeps what v1 cannot show (other metrics, behavior) in place."""
    cluster.create_deployment("triton-a")
    out = await kubectl.ok("autoscale", "deployment", "triton-a", "--min=1", "--max=5", "--cpu-percent=70")
    assert "horizontalpodautoscaler.autoscaling/triton-a autoscaled" in out
    v2 = json.loads(await kubectl.ok("get", "hpa", "triton-a", "-o", "json"))
    assert v2["spec"] == {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton-a"},
                          "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {
                              "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}
    row = (await kubectl.ok("get", "hpa", "triton-a", "--no-headers")).split()
    assert row[:7] == ["triton-a", "Deployment/triton-a", "cpu:", "<unknown>/70%", "1", "5", "0"]

    await kubectl.ok("create", "-f", "-", stdin=HPA)
    await kubectl.ok("patch", "horizontalpodautoscalers.v1.autoscaling", "triton-hpa", "--type=merge",
                     "-p", '{"spec":{"targetCPUUtilizationPercentage":50}}')
    v1 = json.loads(await kubectl.ok("get", "horizontalpodautoscalers.v1.autoscaling", "triton-hpa", "-o", "json"))
    assert v1["apiVersion"] == "autoscaling/v1" and v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert "metrics" not in v1["spec"] and "behavior" not in v1["spec"]
    v2 = json.loads(await kubectl.ok("get", "hpa", "triton-hpa", "-o", "json"))
    assert v2["metadata"]["generation"] == 2
    assert [m.get("pods", m.get("resource"))["target"] for m in v2["spec"]["metrics"]] == [
        {"type": "AverageValue", "averageValue": "500m"}, {"type": "Utilization", "averageUtilization": 50}]
    assert v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    await kubectl.ok("patch", "hpa", "triton-hpa", "--type=merge", "-p", '{"metadata":{"labels":{"a":"b"}}}')
    assert json.loads(await kubectl.ok("get", "hpa", "triton-hpa", "-o", "json"))["metadata"]["generation"] == 2


async def test_api_resources_and_get_all(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """api-resources lists hpa once (preferred autoscaling/v2); `get all` includes HPAs (category all)."""
    lines = [ln.split() for ln in (await kubectl.ok("api-resources", "--api-group=autoscaling")).splitlines()]
    assert lines[1:] == [["horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler"]]
    await kubectl.ok("create", "-f", "-", stdin=HPA)
    assert "horizontalpodautoscaler.autoscaling/triton-hpa" in await kubectl.ok("get", "all", "-o", "name")
    explained = await kubectl.ok("explain", "hpa.spec.metrics.pods.target")
    assert "averageValue" in explained and "averageUtilization" in explained


async def test_discovery_status_subresource_and_validation(http: Http) -> None:
    """/apis/autoscaling has v2 (preferred) and v1 in one group; the status subresource is separate from
    the spec (and shows through v1 and the Table); invalid specs are 422 with causes."""
    group = (await http.get("/apis/autoscaling")).body
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"] and group["preferredVersion"]["version"] == "v2"
    listed = [g for g in (await http.get("/apis")).body["groups"] if g["name"] == "autoscaling"]
    assert len(listed) == 1 and len(listed[0]["versions"]) == 2
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    agg = [i for i in (await http.get("/apis", headers={"Accept": accept})).body["items"]
           if i["metadata"]["name"] == "autoscaling"]
    assert len(agg) == 1 and [v["version"] for v in agg[0]["versions"]] == ["v2", "v1"]

    body = yaml.safe_load(HPA)
    created = await http.post(V2, body)
    assert created.status == 201 and created.body["metadata"]["generation"] == 1
    status = {**created.body, "status": {"currentReplicas": 3, "desiredReplicas": 4, "currentMetrics": [
        {"type": "Pods", "pods": {"metric": {"name": "gpu_cache_usage_perc"}, "current": {"averageValue": "300m"}}},
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55}}}]}}
    status["spec"] = {**status["spec"], "maxReplicas": 20}  # ignored by the status subresource
    r = await http.put(f"{V2}/triton-hpa/status", status)
    assert r.status == 200 and r.body["spec"]["maxReplicas"] == 8 and r.body["metadata"]["generation"] == 1
    v1 = (await http.get(f"{V1}/triton-hpa")).body
    assert v1["status"]["currentCPUUtilizationPercentage"] == 55 and v1["status"]["desiredReplicas"] == 4
    table = (await http.get(V2, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).body
    assert table["rows"][0]["cells"][2:6] == ["300m/500m, cpu: 55%/60%", "2", 8, 3]
    bad = {**body, "metadata": {"name": "zero"}, "spec": {**body["spec"], "minReplicas": 0, "metrics": [{}]}}
    r = await http.post(V2, bad)
    assert r.status == 422
    assert {c["field"] for c in r.body["details"]["causes"]} == {"spec.minReplicas", "spec.metrics[0].type"}
