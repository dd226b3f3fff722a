"""The kustomize manifests: they render, validate against Kubernetes 1.32, are hardened, and the sandbox takes them."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from crd_schemas import SCHEMAS

from autoscaler.activator import ActivatorSettings
from autoscaler.activator import Metrics as ActivatorMetrics
from autoscaler.commands.activator import add_arguments as add_activator_arguments
from autoscaler.config import parse_policy
from autoscaler.controller import Settings
from autoscaler.kube.promobjects import desired_objects
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import by_kind as served
from autoscaler.telemetry import Telemetry
from tests.deploy.conftest import MANIFESTS, REPO, Kubectl, by_kind, one

K8S_VERSION = "1.32"
EXAMPLE = MANIFESTS / "examples" / "triton-deployment.yaml"


def validate(doc: dict[str, Any]) -> None:
    """Built-in kinds against kubernetes-validate's bundled 1.32 schemas (strict); CRD kinds against crd_schemas."""
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(doc, SCHEMAS[doc["kind"]])
        return
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_renders_the_expected_objects(rendered: list[dict[str, Any]]) -> None:
    """kubectl kustomize manifests gives exactly the controller's objects, all in its namespace."""
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered)
    assert kinds == sorted([
        "Namespace/inference-autoscaler", "ServiceAccount/inference-autoscaler", "ClusterRole/inference-autoscaler",
        "ClusterRoleBinding/inference-autoscaler", "Role/inference-autoscaler", "RoleBinding/inference-autoscaler",
        "ConfigMap/inference-autoscaler-policy", "ConfigMap/inference-autoscaler-dashboard",
        "Deployment/inference-autoscaler", "PodDisruptionBudget/inference-autoscaler", "Service/inference-autoscaler",
        "ServiceMonitor/inference-autoscaler"])
    for d in rendered:
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "inference-autoscaler", d["kind"]


def test_validate_against_kubernetes_schemas(rendered: list[dict[str, Any]],
                                             rendered_with_prometheus_objects: list[dict[str, Any]]) -> None:
    """Every rendered object, the component's RBAC, the example lease and per-lease objects validate (1.32, strict)."""
    example = yaml.safe_load(EXAMPLE.read_text())
    pol = parse_policy((MANIFESTS / "policy.yaml").read_text()).autoscaling.prometheus
    lease_objects = list(desired_objects([{**example, "metadata": {**example["metadata"], "uid": "u-1"}}], pol).values())
    docs = [*rendered_with_prometheus_objects, example, *lease_objects]
    assert len(rendered_with_prometheus_objects) == len(rendered) + 2
    for doc in docs:
        validate(doc)


def test_validation_really_rejects_mistakes(rendered: list[dict[str, Any]]) -> None:
    """The validators work offline and catch an unknown field, a wrong type and a CRD typo."""
    dep = json.loads(json.dumps(one(rendered, "Deployment")))
    dep["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = json.loads(json.dumps(one(rendered, "Deployment")))
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    sm = json.loads(json.dumps(one(rendered, "ServiceMonitor")))
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(sm)


def test_policy_configmap_is_config_policy(rendered: list[dict[str, Any]]) -> None:
    """The generated ConfigMap has the stable name and key the controller watches, with config/policy.yaml's text."""
    cms = {d["metadata"]["name"]: d for d in by_kind(rendered, "ConfigMap")}
    s = Settings()
    cm = cms[s.configmap]
    assert cm["metadata"]["namespace"] == s.namespace
    assert (MANIFESTS / "policy.yaml").read_text() == (REPO / "config" / "policy.yaml").read_text(), (
        "manifests/policy.yaml must be a copy of config/policy.yaml: cp config/policy.yaml manifests/policy.yaml")
    assert cm["data"]["policy.yaml"] == (REPO / "config" / "policy.yaml").read_text()
    parse_policy(cm["data"][s.configmap_key])


def test_deployment_is_hardened_and_highly_available(rendered: list[dict[str, Any]]) -> None:
    """2 replicas, non-root, read-only root fs, no capabilities, seccomp, resources, probes, PDB."""
    dep = one(rendered, "Deployment")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    assert spec["replicas"] == 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["serviceAccountName"] == one(rendered, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port["http"] == Settings().listen_port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    fields = set(Settings.__dataclass_fields__)
    for name in env:  # every variable is one `autoscaler run` reads
        assert name.startswith("AUTOSCALER_") and name.removeprefix("AUTOSCALER_").lower() in fields, name
    assert env["AUTOSCALER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["AUTOSCALER_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = one(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_service_and_servicemonitor_reach_metrics(rendered: list[dict[str, Any]]) -> None:
    """The Service selects the controller pods and the ServiceMonitor scrapes its /metrics port."""
    dep, svc, sm = one(rendered, "Deployment"), one(rendered, "Service"), one(rendered, "ServiceMonitor")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] == "http"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    assert sm["spec"]["endpoints"][0]["port"] == port["name"] and sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_dashboard_uses_real_metric_names(rendered: list[dict[str, Any]]) -> None:
    """Every metric the Grafana dashboard queries is one the controller or the activator exports (names from their
    registries)."""
    cm = next(d for d in by_kind(rendered, "ConfigMap") if d["metadata"]["name"] == "inference-autoscaler-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["inference-autoscaler.json"])
    t = Telemetry()
    t.watch_api_calls(lambda: {"GET": 1})
    exported = set()
    act = ActivatorMetrics()
    act.known("ns", "name")
    act.hold_seconds.labels("ns", "name").observe(1)
    act.responses.labels("ns", "name", "200").inc()
    for fam in [*t.registry.collect(), *act.registry.collect()]:
        for s in fam.samples:
            exported.add(s.name)
        exported.update({fam.name, fam.name + "_total", fam.name + "_bucket"})
    exprs = [tgt["expr"] for p in dash["panels"] for tgt in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"\b(autoscaler_[a-z_]+)\b", e)}
    assert used and used <= exported, sorted(used - exported)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for want in ("replicas", "target", "reason", "loop", "activator"):
        assert want in titles


async def test_sandbox_accepts_served_kinds(cluster: SandboxCluster, kubectl: Kubectl,
                                            rendered: list[dict[str, Any]]) -> None:
    """kubectl create -f (default validation) accepts every rendered kind the sandbox serves, and the example."""
    docs = [d for d in rendered if served(d["apiVersion"], d["kind"]) is not None]
    assert {d["kind"] for d in docs} == {d["kind"] for d in rendered}  # the sandbox serves every kind
    rc, out, err = await kubectl("create", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert rc == 0, err
    for d in docs:
        assert f"{d['metadata']['name']} created" in out
    # (`kubectl create namespace` posts protobuf, which the sandbox does not decode: create it from a manifest)
    rc, out, err = await kubectl("create", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: inference}\n")
    assert rc == 0, err
    rc, out, err = await kubectl("create", "-f", str(EXAMPLE))
    assert rc == 0 and "deployment.apps/triton-resnet created" in out, err
    rc, out, err = await kubectl("get", "configmap", "inference-autoscaler-policy", "-n", "inference-autoscaler",
                                 "-o", "jsonpath={.data.policy\\.yaml}")
    assert rc == 0 and out.strip() == (REPO / "config" / "policy.yaml").read_text().strip()


def test_example_lease_resolves_against_the_policy() -> None:
    """The example Deployment's annotations are a valid lease under the shipped policy, in shadow mode."""
    from autoscaler.config import Mode, resolve_lease
    doc = yaml.safe_load(Path(EXAMPLE).read_text())
    res = resolve_lease("inference", "triton-resnet", doc["metadata"]["annotations"],
                        parse_policy((MANIFESTS / "policy.yaml").read_text()))
    assert res.lease is not None and not res.issues
    assert res.lease.mode == Mode.SHADOW and res.lease.max_replicas == 8


def activator_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_activator_arguments(p)
    return p.parse_args(argv)


def test_the_activator_component_validates_and_is_hardened(rendered: list[dict[str, Any]],
                                                           rendered_with_activator: list[dict[str, Any]],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The opt-in activator: its objects validate (1.32, strict), in the controller's namespace, hardened as the
    controller is; its Service and ServiceMonitor reach its port; every variable it sets is a flag of the command."""
    added = [d for d in rendered_with_activator if d not in rendered]
    assert sorted(f"{d['kind']}/{d['metadata']['name']}" for d in added) == sorted(
        f"{k}/inference-activator" for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment",
                                             "Service", "PodDisruptionBudget", "ServiceMonitor"))
    for d in added:
        validate(d)
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "inference-autoscaler", d["kind"]
    dep = one(added, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2 and pod["serviceAccountName"] == "inference-activator"
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["command"] == ["autoscaler", "activator"]
    args = activator_args(c["args"])
    assert args.listen.endswith(f":{c['ports'][0]['containerPort']}")
    assert pod["terminationGracePeriodSeconds"] > args.drain_seconds
    base = vars(activator_args([]))
    for e in c["env"]:  # every variable is one the command reads, and its value one it takes
        assert e["name"].startswith("AUTOSCALER_ACTIVATOR_"), e
        monkeypatch.setenv(e["name"], e["value"] + "1")
        assert vars(activator_args([])) != base, e
        monkeypatch.setenv(e["name"], e["value"])
    ActivatorSettings(upstream=activator_args([]).upstream)
    svc, sm = one(added, "Service"), one(added, "ServiceMonitor")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert one(added, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()
