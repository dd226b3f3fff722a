"""The project's own install manifests (`kubectl apply -k manifests/`) against the sandbox, with the real
kubectl in a fresh HOME: every kind they contain is served (ServiceAccount, Service, RBAC, PodDisruptionBudget,
ServiceMonitor besides Namespace, ConfigMap and Deployment), client-side apply is idempotent, `kubectl get`
prints the real columns and round-trips the fields, and kubectl's strict validation rejects unknown fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from apihelpers import Kubectl, eventually

from autoscaler.sandbox.cluster import SandboxCluster

pytestmark = pytest.mark.kubectl

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
NS = "inference-autoscaler"
NAME = "inference-autoscaler"
RBAC = "rbac.authorization.k8s.io"
# what `kubectl apply` prints for each object of the kustomization
OBJECTS = [f"namespace/{NS}", f"serviceaccount/{NAME}", f"role.{RBAC}/{NAME}", f"clusterrole.{RBAC}/{NAME}",
           f"rolebinding.{RBAC}/{NAME}", f"clusterrolebinding.{RBAC}/{NAME}", "configmap/inference-autoscaler-dashboard",
           "configmap/inference-autoscaler-policy", f"service/{NAME}", f"deployment.apps/{NAME}",
           f"poddisruptionbudget.policy/{NAME}", f"servicemonitor.monitoring.coreos.com/{NAME}"]


def printed(out: str) -> dict[str, str]:
    """`kind.group/name verb` lines -> {object: verb}."""
    pairs = [line.rsplit(" ", 1) for line in out.splitlines() if line.strip()]
    return {obj: verb for obj, verb in pairs}


async def rendered(kubectl: Kubectl) -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all(await kubectl.ok("kustomize", str(MANIFESTS)))
    return {d["kind"]: d for d in docs if d and d["kind"] != "ConfigMap"}


async def get_yaml(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(await kubectl.ok("get", *args, "-o", "yaml"))
    return obj


async def test_apply_k_manifests(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """apply -k creates every object, a second apply -k changes nothing, get lists and round-trips each new
    kind by its short name, and delete -k removes them."""
    first = printed(await kubectl.ok("apply", "-k", str(MANIFESTS)))
    assert first == dict.fromkeys(OBJECTS, "created")
    # client-side apply: three-way strategic merge (JSON merge for the ServiceMonitor), nothing to send
    second = printed(await kubectl.ok("apply", "-k", str(MANIFESTS)))
    assert second == dict.fromkeys(OBJECTS, "unchanged")

    want = await rendered(kubectl)
    header, *rows = (await kubectl.ok("get", "svc", "-n", NS)).splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert [r.split()[:5] for r in rows] == [[NAME, "ClusterIP", "<none>", "<none>", "8080/TCP"]]
    header, *rows = (await kubectl.ok("get", "pdb", "-n", NS)).splitlines()
    assert header.split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert [r.split()[:4] for r in rows] == [[NAME, "1", "N/A", "0"]]
    for short in ("sa", "smon", "role", "rolebinding"):
        header, *rows = (await kubectl.ok("get", short, "-n", NS)).splitlines()
        assert header.startswith("NAME ") and [r.split()[0] for r in rows] == [NAME], short
    header, *rows = (await kubectl.ok("get", "clusterrolebinding")).splitlines()
    assert header.split() == ["NAME", "ROLE", "AGE"]
    assert [r.split()[:2] for r in rows] == [[NAME, f"ClusterRole/{NAME}"]]
    assert (await kubectl.ok("get", "clusterrole", "-o", "name")).split() == [f"clusterrole.{RBAC}/{NAME}"]

    cluster_role = await get_yaml(kubectl, "clusterrole", NAME)
    assert "namespace" not in cluster_role["metadata"]
    assert cluster_role["rules"] == want["ClusterRole"]["rules"]
    role = await get_yaml(kubectl, "role", NAME, "-n", NS)
    assert role["rules"] == want["Role"]["rules"]
    assert role["rules"][0]["resourceNames"] == ["inference-autoscaler-policy"]
    for kind, short in (("RoleBinding", "rolebinding"), ("ClusterRoleBinding", "clusterrolebinding")):
        binding = await get_yaml(kubectl, short, NAME, "-n", NS)
        assert binding["roleRef"] == want[kind]["roleRef"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}]
    sa = await get_yaml(kubectl, "sa", NAME, "-n", NS)
    assert sa["metadata"]["labels"] == want["ServiceAccount"]["metadata"]["labels"]
    svc = await get_yaml(kubectl, "svc", NAME, "-n", NS)
    assert svc["spec"]["ports"] == want["Service"]["spec"]["ports"]
    assert svc["spec"]["selector"] == want["Service"]["spec"]["selector"] and svc["spec"]["type"] == "ClusterIP"
    pdb = await get_yaml(kubectl, "pdb", NAME, "-n", NS)
    assert pdb["spec"] == want["PodDisruptionBudget"]["spec"] and pdb["metadata"]["generation"] == 1
    smon = await get_yaml(kubectl, "smon", NAME, "-n", NS)
    assert smon["spec"] == want["ServiceMonitor"]["spec"]
    assert smon["metadata"]["labels"]["release"] == "prometheus"

    # Deleting the namespace first races with the namespaced deletes that follow (on a real cluster too):
    # whatever the namespace controller removed first is NotFound, hence --ignore-not-found.
    out = await kubectl.ok("delete", "-k", str(MANIFESTS), "--ignore-not-found")
    assert f'namespace "{NS}" deleted' in out and f'clusterrole.{RBAC} "{NAME}" deleted' in out
    assert f'clusterrolebinding.{RBAC} "{NAME}" deleted' in out
    assert (await kubectl.ok("get", "clusterrole,clusterrolebinding", "-o", "name")).strip() == ""

    async def namespace_gone() -> bool:
        return (await kubectl("get", "namespace", NS)).rc != 0

    await eventually(namespace_gone, timeout_s=10)


CLUSTER_ROLE = f"""
apiVersion: {RBAC}/v1
kind: ClusterRole
metadata: {{name: reader}}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
"""


async def test_rbac_validation(kubectl: Kubectl) -> None:
    """kubectl's strict validation rejects unknown RBAC fields; the server's rejects bad rules and bindings
    and a changed roleRef (immutable), as the real API server does. RBAC is stored, not enforced."""
    typo = await kubectl("apply", "-f", "-", stdin=CLUSTER_ROLE.replace("verbs:", "verb:"))
    assert typo.rc != 0 and 'unknown field "rules[0].verb"' in typo.err
    top = await kubectl("create", "-f", "-", stdin=CLUSTER_ROLE + "bogus: 1\n")
    assert top.rc != 0 and 'unknown field "bogus"' in top.err
    no_verbs = await kubectl("create", "-f", "-", stdin=CLUSTER_ROLE.replace("verbs: [get, list]", "verbs: []"))
    assert no_verbs.rc != 0 and "rules[0].verbs: Required value" in no_verbs.err
    assert f"clusterrole.{RBAC}/reader created" in await kubectl.ok("apply", "-f", "-", stdin=CLUSTER_ROLE)

    binding = f"""
apiVersion: {RBAC}/v1
kind: RoleBinding
metadata: {{name: read, namespace: default}}
roleRef: {{apiGroup: {RBAC}, kind: ClusterRole, name: reader}}
subjects:
- {{kind: User, name: jane}}
- {{kind: ServiceAccount, name: default}}
"""
    assert f"rolebinding.{RBAC}/read created" in await kubectl.ok("apply", "-f", "-", stdin=binding)
    stored = await get_yaml(kubectl, "rolebinding", "read")
    assert stored["subjects"] == [{"apiGroup": RBAC, "kind": "User", "name": "jane"},  # defaulted, as upstream
                                  {"kind": "ServiceAccount", "name": "default"}]
    changed = await kubectl("apply", "-f", "-", stdin=binding.replace("name: reader", "name: writer"))
    assert changed.rc != 0 and "roleRef: Invalid value" in changed.err and "cannot change roleRef" in changed.err
    bad_kind = await kubectl("create", "-f", "-", stdin=binding.replace("name: read,", "name: other,")
                             .replace("kind: User", "kind: Robot"))
    assert bad_kind.rc != 0 and 'subjects[0].kind: Unsupported value: "Robot"' in bad_kind.err
    # subjects is an atomic list upstream: apply replaces it whole
    await kubectl.ok("apply", "-f", "-", stdin=binding.replace("- {kind: User, name: jane}\n", ""))
    assert (await get_yaml(kubectl, "rolebinding", "read"))["subjects"] == [{"kind": "ServiceAccount",
                                                                            "name": "default"}]


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc, port: 9000}
"""


async def test_service_and_pdb(kubectl: Kubectl) -> None:
    """Service defaults (no cluster IP is allocated), strategic merge of ports by `port` through apply, the
    PORT(S) column; a PDB with both minAvailable and maxUnavailable is invalid."""
    await kubectl.ok("apply", "-f", "-", stdin=SERVICE)
    svc = await get_yaml(kubectl, "svc", "web")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                                    {"name": "grpc", "port": 9000, "protocol": "TCP", "targetPort": 9000}]
    assert svc["spec"]["sessionAffinity"] == "None" and "clusterIP" not in svc["spec"]
    # drop a port and renumber the other: the $setElementOrder / $patch: delete directives apply
    out = await kubectl.ok("apply", "-f", "-", stdin=SERVICE.replace("  - {name: grpc, port: 9000}\n", "")
                           .replace("port: 80,", "port: 81,"))
    assert "service/web configured" in out
    assert [p["port"] for p in (await get_yaml(kubectl, "svc", "web"))["spec"]["ports"]] == [81]
    row = (await kubectl.ok("get", "svc", "web", "--no-headers")).split()
    assert row[:5] == ["web", "ClusterIP", "<none>", "<none>", "81/TCP"]
    typo = await kubectl("apply", "-f", "-", stdin=SERVICE.replace("targetPort", "targetport"))
    assert typo.rc != 0 and 'unknown field "spec.ports[0].targetport"' in typo.err

    pdb = """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {minAvailable: 1, maxUnavailable: "50%", selector: {matchLabels: {app: web}}}
"""
    both = await kubectl("apply", "-f", "-", stdin=pdb)
    assert both.rc != 0 and "minAvailable and maxUnavailable cannot be both set" in both.err
    await kubectl.ok("apply", "-f", "-", stdin=pdb.replace("minAvailable: 1, ", ""))
    row = (await kubectl.ok("get", "pdb", "web", "--no-headers")).split()
    assert row[:4] == ["web", "N/A", "50%", "0"]
