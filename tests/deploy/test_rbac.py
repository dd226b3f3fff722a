"""RBAC is exactly what the controller uses: recorded from a real run against the sandbox, both ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from recording import Attrs, RecordingProxy, running_controller, wait_for

from autoscaler.activator import Activator, ActivatorSettings
from autoscaler.kube.api import KubeApi
from autoscaler.kube.promobjects import POD_MONITOR, PROMETHEUS_RULE
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import CONFIGMAPS, DEPLOYMENTS
from tests.deploy.conftest import by_kind

NS = "inference-autoscaler"
POLICY = """
autoscaling:
  enable: true
  metrics:
    queueTime: {allowed: true, enabled: true}
  prometheus:
    url: http://127.0.0.1:9          # nothing listens: every query fails, the fallback scales
    timeoutSeconds: 0.2
    createObjects: %s
    podMonitorLabels: {release: %s}
    ruleLabels: {release: %s}
  fallback: {failureThreshold: 1, action: replicas, replicas: 3}
  loopIntervalSeconds: 0.1
"""
LEASE = {"inference-autoscaler.io/enabled": "true"}


def grants(docs: list[dict[str, Any]], deployment: str = "inference-autoscaler") -> set[tuple[str, str, str, str, str]]:
    """(scope, group, resource, verb, resourceName) for the ServiceAccount of the Deployment ``deployment`` (the
    controller's); scope '' = cluster."""
    (dep,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == deployment]
    sa = (dep["spec"]["template"]["spec"]["serviceAccountName"], dep["metadata"]["namespace"])
    out: set[tuple[str, str, str, str, str]] = set()
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for b in by_kind(docs, binding_kind):
            subjects = {(s["name"], s.get("namespace")) for s in b["subjects"] if s["kind"] == "ServiceAccount"}
            if sa not in subjects:
                continue
            assert b["roleRef"]["kind"] == role_kind
            scope = b["metadata"].get("namespace", "") if binding_kind == "RoleBinding" else ""
            role = next(r for r in by_kind(docs, role_kind) if r["metadata"]["name"] == b["roleRef"]["name"]
                        and r["metadata"].get("namespace", "") == scope)
            for rule in role["rules"]:
                assert "nonResourceURLs" not in rule
                for g in rule["apiGroups"]:
                    for res in rule["resources"]:
                        for verb in rule["verbs"]:
                            assert "*" not in (g, res, verb), f"wildcard in {role_kind} {role['metadata']['name']}"
                            for rn in rule.get("resourceNames") or [""]:
                                out.add((scope, g, res, verb, rn))
    return out


def allows(grant: tuple[str, str, str, str, str], a: Attrs) -> bool:
    scope, group, resource, verb, rn = grant
    return (scope in ("", a.namespace) and group == a.group and resource == a.resource and verb == a.verb
            and rn in ("", a.name))


def compare(docs: list[dict[str, Any]], used: set[Attrs], deployment: str = "inference-autoscaler") -> None:
    g = grants(docs, deployment)
    missing = sorted(a for a in used if not any(allows(x, a) for x in g))
    assert not missing, f"{deployment} needs grants the manifests lack: {missing}"
    unused = sorted(x for x in g if not any(allows(x, a) for a in used))
    assert not unused, f"the manifests grant {deployment} more than it uses: {unused}"


async def exercise(cluster: SandboxCluster, tmp_path: Path, create_objects: bool) -> set[Attrs]:
    """Drive every write path once: scale (with a 409 and re-read), annotations, events (create, then patch),
    leader election, and with createObjects the per-lease objects' list, create, update and delete; each write
    with the controller's fieldManager."""
    cluster.ensure_namespace(NS)
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inference-autoscaler-policy",
                    "namespace": NS}, "data": {"policy.yaml": POLICY % (str(create_objects).lower(), "a", "a")}})
    cluster.create_deployment("good", replicas=1, annotations=LEASE)
    cluster.create_deployment("bad", replicas=1, annotations={**LEASE, "inference-autoscaler.io/max-replicas": "x"})
    bumped = False

    async def conflict_once(method: str, path: str) -> None:
        nonlocal bumped
        if method == "PATCH" and path.endswith("/deployments/good/scale") and not bumped:
            bumped = True  # someone else writes first: the controller's resourceVersion is now stale
            dep = cluster.registry.get(DEPLOYMENTS, "default", "good")
            dep["metadata"].setdefault("labels", {})["touched"] = "yes"
            cluster.registry.update(DEPLOYMENTS, "default", "good", dep)

    async with RecordingProxy(upstream=cluster.url, before=conflict_once) as proxy:
        kc = tmp_path / "kubeconfig"
        kc.write_text(yaml.safe_dump({**cluster.kubeconfig(), "clusters": [
            {"name": "sandbox", "cluster": {"server": proxy.url}}]}))
        async with running_controller(cluster, proxy, kc) as ctl:
            await wait_for(lambda: cluster.registry.get(DEPLOYMENTS, "default", "good")["spec"]["replicas"] == 3,
                           "fallback scale to 3 after a conflict")
            assert ctl.conflicts == 1
            managed = cluster.registry.get(DEPLOYMENTS, "default", "good")["metadata"]["managedFields"]
            assert [(m["manager"], m["operation"], m.get("subresource")) for m in managed
                    if "f:replicas" in m["fieldsV1"].get("f:spec", {})] == [
                ("inference-autoscaler", "Update", "scale")], managed  # who owns spec.replicas: the controller
            await wait_for(lambda: any(m == "PATCH" and "/events/" in p for m, p in proxy.seen), "an Event patch")
            await wait_for(lambda: sum(m == "PUT" and "/leases/" in p for m, p in proxy.seen) >= 1, "a lease renewal")
            if create_objects:
                store = cluster.store
                await wait_for(lambda: len(store.list_objects(f"monitoring.coreos.com/{POD_MONITOR.plural}",
                                                              "default")) == 1, "a PodMonitor")
                cm = cluster.registry.get(CONFIGMAPS, NS, "inference-autoscaler-policy")
                cm["data"]["policy.yaml"] = POLICY % ("true", "b", "b")
                cluster.registry.update(CONFIGMAPS, NS, "inference-autoscaler-policy", cm)
                await wait_for(lambda: any(m == "PUT" and POD_MONITOR.plural in p for m, p in proxy.seen), "an update")
                await wait_for(lambda: any(m == "PUT" and PROMETHEUS_RULE.plural in p for m, p in proxy.seen), "update")
                dep = cluster.registry.get(DEPLOYMENTS, "default", "good")
                dep["metadata"]["annotations"] = {}
                cluster.registry.update(DEPLOYMENTS, "default", "good", dep)
                await wait_for(lambda: not store.list_objects(f"monitoring.coreos.com/{PROMETHEUS_RULE.plural}",
                                                              "default"), "the objects deleted")
        # every write names the controller as its field manager (managedFields then say who owns spec.replicas)
        writes = [p for m, p in proxy.seen if m in ("POST", "PUT", "PATCH")]
        assert writes and not [p for p in writes if "fieldManager=inference-autoscaler" not in p], writes
        return proxy.attributes()


@pytest.mark.parametrize("create_objects", [False, True], ids=["base", "with-prometheus-objects"])
async def test_rbac_matches_recorded_requests(cluster: SandboxCluster, tmp_path: Path, create_objects: bool,
                                              rendered: list[dict[str, Any]],
                                              rendered_with_prometheus_objects: list[dict[str, Any]]) -> None:
    """Every request the controller makes is granted, and every grant is used (base, and with the component)."""
    used = await exercise(cluster, tmp_path, create_objects)
    assert any(a.resource == "deployments/scale" and a.verb == "patch" for a in used)
    compare(rendered_with_prometheus_objects if create_objects else rendered, used)
    if create_objects:  # the base alone must then be too little: the component is what grants these
        with pytest.raises(AssertionError, match="lack"):
            compare(rendered, used)


async def test_the_activator_is_granted_exactly_what_it_uses(cluster: SandboxCluster, tmp_path: Path,
                                                             rendered: list[dict[str, Any]],
                                                             rendered_with_activator: list[dict[str, Any]]) -> None:
    """The activator component's own ServiceAccount: list and watch Deployments, recorded from a real run; the
    controller's grants are unchanged by the component."""
    cluster.create_deployment("good", replicas=0, annotations=LEASE)
    async with RecordingProxy(upstream=cluster.url) as proxy:
        kc = tmp_path / "kubeconfig"
        kc.write_text(yaml.safe_dump({**cluster.kubeconfig(), "clusters": [
            {"name": "sandbox", "cluster": {"server": proxy.url}}]}))
        api = await KubeApi.connect(str(kc))
        act = Activator(api, ActivatorSettings())
        await act.start()
        try:
            await wait_for(lambda: any("watch=true" in p for _, p in proxy.seen), "a watch of Deployments")
            assert ("default", "good") in act.gates
        finally:
            await act.stop()
            await api.close()
    compare(rendered_with_activator, proxy.attributes(), "inference-activator")
    assert grants(rendered_with_activator) == grants(rendered)
