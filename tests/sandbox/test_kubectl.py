"""The real kubectl against the sandbox, each test in a fresh HOME (no discovery cache carried over)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from apihelpers import Http, Kubectl

from autoscaler.sandbox.cluster import SandboxCluster

pytestmark = pytest.mark.kubectl

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bar, namespace: default, labels: {app: bar}}
spec:
  replicas: 2
  selector: {matchLabels: {app: bar}}
  template:
    metadata: {labels: {app: bar}}
    spec:
      containers:
      - {name: triton, image: "nvcr.io/nvidia/tritonserver:24.05-py3", resources: {requests: {cpu: "1"}}}
"""


async def test_get_deployments_table(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """kubectl get deployments prints the READY / UP-TO-DATE / AVAILABLE columns."""
    cluster.create_deployment("triton-a", replicas=2)
    await cluster.wait_for_ready("default", "triton-a")
    out = await kubectl.ok("get", "deployments")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:4] == ["triton-a", "2/2", "2", "2"]
    wide = await kubectl.ok("get", "pods", "-o", "wide")
    assert "127.0.0.1" in wide and "sandbox-node" in wide and "Running" in wide


async def test_get_json_and_not_found(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """-o json gives the object; a missing one prints Error from server (NotFound)."""
    cluster.create_deployment("triton-a")
    obj = json.loads(await kubectl.ok("get", "deployment", "triton-a", "-o", "json"))
    assert obj["kind"] == "Deployment" and obj["metadata"]["resourceVersion"]
    missing = await kubectl("get", "deployment", "nope")
    assert missing.rc != 0 and 'Error from server (NotFound): deployments.apps "nope" not found' in missing.err
    listed = json.loads(await kubectl.ok("get", "deployments", "-o", "json"))
    assert listed["items"][0]["kind"] == "Deployment"


async def test_create_with_default_validation(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """create -f uses server-side field validation: typos are rejected, duplicates give AlreadyExists."""
    assert "deployment.apps/bar created" in await kubectl.ok("create", "-f", "-", stdin=MANIFEST)
    again = await kubectl("create", "-f", "-", stdin=MANIFEST)
    assert again.rc != 0 and "AlreadyExists" in again.err
    typo = MANIFEST.replace("name: bar,", "name: baz,").replace("replicas: 2", "replicas: 2\n  replicaz: 3")
    bad = await kubectl("create", "-f", "-", stdin=typo)
    assert bad.rc != 0 and 'unknown field "spec.replicaz"' in bad.err
    await cluster.wait_for_ready("default", "bar")
    names = (await kubectl.ok("get", "pods", "-l", "app=bar", "-o", "name")).split()
    assert len(names) == 2 and all(n.startswith("pod/bar-") for n in names)


async def test_scale_and_current_replicas(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """kubectl scale works, --current-replicas is a precondition, a wrong one fails without change."""
    cluster.create_deployment("triton-a", replicas=1)
    await kubectl.ok("scale", "deployment", "triton-a", "--replicas=3")
    assert (await kubectl.ok("get", "deploy", "triton-a", "-o", "jsonpath={.spec.replicas}")) == "3"
    await kubectl.ok("scale", "deployment", "triton-a", "--current-replicas=3", "--replicas=2")
    stale = await kubectl("scale", "deployment", "triton-a", "--current-replicas=7", "--replicas=4")
    assert stale.rc != 0 and "expected" in stale.err.lower()
    assert (await kubectl.ok("get", "deploy", "triton-a", "-o", "jsonpath={.spec.replicas}")) == "2"
    await cluster.wait_for_ready("default", "triton-a", replicas=2)


async def test_annotate_and_label(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """annotate and label reach the object (merge patches under the hood)."""
    cluster.create_deployment("triton-a")
    await kubectl.ok("annotate", "deployment", "triton-a", "inference-autoscaler.io/enabled=true")
    await kubectl.ok("label", "deployment", "triton-a", "tier=gpu")
    obj = json.loads(await kubectl.ok("get", "deployment", "triton-a", "-o", "json"))
    assert obj["metadata"]["annotations"]["inference-autoscaler.io/enabled"] == "true"
    assert obj["metadata"]["labels"]["tier"] == "gpu"
    await kubectl.ok("annotate", "deployment", "triton-a", "inference-autoscaler.io/enabled-")
    obj = json.loads(await kubectl.ok("get", "deployment", "triton-a", "-o", "json"))
    assert "inference-autoscaler.io/enabled" not in obj["metadata"].get("annotations", {})


async def test_patch_three_types(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """kubectl patch with --type=merge, strategic (default) and json."""
    cluster.create_deployment("triton-a")
    await kubectl.ok("patch", "deployment", "triton-a", "--type=merge", "-p",
                     '{"metadata":{"labels":{"tier":"gpu"}}}')
    await kubectl.ok("patch", "deployment", "triton-a", "-p",
                     '{"spec":{"template":{"spec":{"containers":[{"name":"triton","image":"triton:2"}]}}}}')
    await kubectl.ok("patch", "deployment", "triton-a", "--type=json", "-p",
                     '[{"op":"replace","path":"/spec/replicas","value":2}]')
    obj = json.loads(await kubectl.ok("get", "deployment", "triton-a", "-o", "json"))
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert obj["metadata"]["labels"]["tier"] == "gpu" and obj["spec"]["replicas"] == 2
    assert container["image"] == "triton:2" and container["resources"]["requests"]["cpu"] == "1"
    bad = await kubectl("patch", "deployment", "triton-a", "--type=json", "-p",
                        '[{"op":"remove","path":"/spec/nothing"}]')
    assert bad.rc != 0


async def test_delete_cascades(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """kubectl delete removes the deployment and, through the garbage collector, its pods."""
    cluster.create_deployment("triton-a", replicas=2)
    await cluster.wait_for_ready("default", "triton-a")
    assert 'deployment.apps "triton-a" deleted' in await kubectl.ok("delete", "deployment", "triton-a")
    assert "NotFound" in (await kubectl("get", "deployment", "triton-a")).err
    await kubectl.ok("wait", "--for=delete", "pod", "-l", "app=triton-a", "--timeout=5s")
    assert (await kubectl.ok("get", "pods", "-l", "app=triton-a", "-o", "name")).strip() == ""


async def test_apply_describe_rollout(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """apply (client-side three-way merge), describe and rollout status work as on a real cluster."""
    await kubectl.ok("apply", "-f", "-", stdin=MANIFEST)
    await kubectl.ok("apply", "-f", "-", stdin=MANIFEST.replace("replicas: 2", "replicas: 1"))
    assert "deployment \"bar\" successfully rolled out" in await kubectl.ok(
        "rollout", "status", "deployment/bar", "--timeout=10s")
    described = await kubectl.ok("describe", "deployment", "bar")
    assert "MinimumReplicasAvailable" in described and "NewReplicaSet:" in described


async def test_server_side_apply_records_the_managers_fields(cluster: SandboxCluster, kubectl: Kubectl,
                                                             http: Http) -> None:
    """apply --server-side creates and updates, and records what each field manager applied in managedFields (its
    Apply entry replaced at its next apply); a server-side apply without a field manager is a 400."""
    out = await kubectl.ok("apply", "--server-side", "--field-manager=gitops", "-f", "-", stdin=MANIFEST)
    assert "serverside-applied" in out, out
    obj = json.loads(await kubectl.ok("get", "deployment", "bar", "-o", "json", "--show-managed-fields"))
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "gitops" and entry["operation"] == "Apply" and entry["fieldsType"] == "FieldsV1"
    fields = entry["fieldsV1"]
    assert "f:replicas" in fields["f:spec"] and "f:labels" in fields["f:metadata"] and "f:name" not in fields[
        "f:metadata"], fields
    assert 'k:{"name":"triton"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"], fields
    await kubectl.ok("apply", "--server-side", "--field-manager=gitops", "-f", "-",
                     stdin=MANIFEST.replace("  replicas: 2\n", ""))
    (entry,) = json.loads(await kubectl.ok("get", "deployment", "bar", "-o", "json", "--show-managed-fields"))[
        "metadata"]["managedFields"]
    assert "f:replicas" not in entry["fieldsV1"]["f:spec"], entry
    # another writer takes the fields it changes: applied with spec.replicas again, then scaled by kubectl, which
    # owns spec.replicas through /scale from then on
    await kubectl.ok("apply", "--server-side", "--field-manager=gitops", "-f", "-", stdin=MANIFEST)
    await kubectl.ok("scale", "deployment", "bar", "--replicas=3")
    managed = json.loads(await kubectl.ok("get", "deployment", "bar", "-o", "json", "--show-managed-fields"))[
        "metadata"]["managedFields"]
    owners = {(m["manager"], m["operation"], m.get("subresource", "")) for m in managed
              if "f:replicas" in m["fieldsV1"].get("f:spec", {})}
    assert owners == {("kubectl", "Update", "scale")}, managed
    (gitops,) = [m for m in managed if m["manager"] == "gitops"]
    assert "f:template" in gitops["fieldsV1"]["f:spec"], gitops  # what nobody else changed stays its own
    no_manager = await http.request("PATCH", "/apis/apps/v1/namespaces/default/deployments/bar",
                                    raw=b"spec: {replicas: 3}", content_type="application/apply-patch+yaml")
    assert no_manager.status == 400 and "fieldManager" in no_manager.body["message"], no_manager


def _replicas_owners(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(m["manager"], m["operation"], m.get("subresource", "")) for m in obj["metadata"]["managedFields"]
            if "f:replicas" in m["fieldsV1"].get("f:spec", {})}


async def test_server_side_apply_conflicts(kubectl: Kubectl, http: Http) -> None:
    """A server-side apply that changes a field another manager owns fails with kube-apiserver's 409 (kubectl prints
    its advice), unless --force-conflicts; applying the current value shares the field; a field dropped from the
    configuration keeps its value while another manager owns it and goes back to its default when none does (the
    documented hand-over of spec.replicas to an autoscaler)."""
    async def get() -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(await kubectl.ok(
            "get", "deployment", "bar", "-o", "json", "--show-managed-fields")))

    def apply(manifest: str, *flags: str) -> Any:
        return kubectl("apply", "--server-side", "--field-manager=gitops", *flags, "-f", "-", stdin=manifest)

    assert (await apply(MANIFEST)).rc == 0
    await kubectl.ok("scale", "deployment", "bar", "--replicas=3")
    refused = await apply(MANIFEST)
    assert refused.rc != 0 and ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
                                'using apps/v1: .spec.replicas') in refused.err, refused
    assert "--force-conflicts" in refused.err, refused.err  # kubectl recognised the conflict
    assert (await get())["spec"]["replicas"] == 3
    # the same value: no conflict, the field is shared; dropped from the configuration, it stays with the other
    assert (await apply(MANIFEST.replace("replicas: 2", "replicas: 3"))).rc == 0
    assert _replicas_owners(await get()) == {("kubectl", "Update", "scale"), ("gitops", "Apply", "")}
    assert (await apply(MANIFEST.replace("  replicas: 2\n", ""))).rc == 0
    obj = await get()
    assert obj["spec"]["replicas"] == 3 and _replicas_owners(obj) == {("kubectl", "Update", "scale")}, obj
    # forced, the applier takes it; dropped when nobody else owns it, it is reset to the default
    assert (await apply(MANIFEST, "--force-conflicts")).rc == 0
    obj = await get()
    assert obj["spec"]["replicas"] == 2 and _replicas_owners(obj) == {("gitops", "Apply", "")}, obj
    assert (await apply(MANIFEST.replace("  replicas: 2\n", ""))).rc == 0
    assert (await get())["spec"]["replicas"] == 1
    # two managers' fields at once: the Status lists each field as a cause, grouped by manager in the message
    await kubectl.ok("scale", "deployment", "bar", "--replicas=4")
    reply = await http.patch("/apis/apps/v1/namespaces/default/deployments/bar", None,
                             content_type="application/apply-patch+yaml", params={"fieldManager": "other"},
                             raw=MANIFEST.replace("24.05", "25.01").encode())
    image = '.spec.template.spec.containers[name="triton"].image'
    assert reply.status == 409 and reply.body["reason"] == "Conflict", reply
    assert reply.body["message"] == ('Apply failed with 2 conflicts: conflicts with "gitops":\n- ' + image + '\n'
                                     'conflicts with "kubectl" with subresource "scale" using apps/v1:\n'
                                     '- .spec.replicas'), reply.body["message"]
    assert sorted((c["reason"], c["field"]) for c in reply.body["details"]["causes"]) == [
        ("FieldManagerConflict", ".spec.replicas"), ("FieldManagerConflict", image)]


async def test_auth_logs_api_resources(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """auth can-i (protobuf SSAR), logs and api-resources."""
    assert (await kubectl.ok("auth", "can-i", "patch", "deployments/scale")).strip() == "yes"
    cluster.create_deployment("triton-a")
    await cluster.wait_for_ready("default", "triton-a")
    assert "started" in await kubectl.ok("logs", "deployment/triton-a")
    resources = await kubectl.ok("api-resources")
    for name in ("deployments", "leases", "podmonitors", "prometheusrules", "events", "configmaps"):
        assert name in resources


async def test_custom_resources_and_leases(kubectl: Kubectl) -> None:
    """PodMonitors and PrometheusRules can be created and listed; leases are listable."""
    pm = ("apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: triton, labels: "
          "{release: prometheus}}\nspec:\n  selector: {matchLabels: {app: triton-a}}\n  podMetricsEndpoints: "
          "[{port: metrics}]\n")
    await kubectl.ok("create", "-f", "-", stdin=pm)
    assert "triton" in await kubectl.ok("get", "podmonitors")
    await kubectl.ok("get", "leases", "-A")


async def test_imperative_create_commands(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """create namespace/configmap/deployment send protobuf bodies; they arrive whole."""
    await kubectl.ok("create", "namespace", "team")
    await kubectl.ok("create", "configmap", "policy", "-n", "team", "--from-literal=enable=true")
    assert (await kubectl.ok("get", "cm", "policy", "-n", "team", "-o", "jsonpath={.data.enable}")) == "true"
    await kubectl.ok("create", "deployment", "d1", "-n", "team", "--image=triton:1", "--replicas=2",
                     "--port=8000")
    await cluster.wait_for_ready("team", "d1")
    obj = json.loads(await kubectl.ok("get", "deployment", "d1", "-n", "team", "-o", "json"))
    [container] = obj["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "triton:1" and container["ports"][0]["containerPort"] == 8000
    await kubectl.ok("create", "deployment", "zero", "--image=x", "--replicas=0")
    assert (await kubectl.ok("get", "deploy", "zero", "-o", "jsonpath={.spec.replicas}")) == "0"
