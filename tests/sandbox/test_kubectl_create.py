"""kubectl's typed `create` subcommands against the sandbox. They send protobuf bodies (client-go's typed
clients), so each one checks a table of :mod:`autoscaler.sandbox.protobuf` end to end: the stored object
has the fields the flags asked for, and equals what the same command's JSON (`--dry-run=client -o json`
piped to `kubectl create -f -`) stores. Plus the protobuf decoding the commands cannot reach (zero-valued
pointers, IntOrString strings) and the 415 a kind without a table gets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apihelpers import Http, Kubectl

from autoscaler.sandbox.protobuf import MAGIC, UnsupportedKind, decode_object

NS = "team"
RBAC = "rbac.authorization.k8s.io"
PROTOBUF = "application/vnd.kubernetes.protobuf"
# set by the server on every write, so never equal between two creates of the same object
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "managedFields")


async def get(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(await kubectl.ok("get", *args, "-o", "json"))
    return obj


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k not in SERVER_SET}
    return {**obj, "metadata": meta}


async def create_both_ways(kubectl: Kubectl, create: list[str], read: list[str]) -> dict[str, Any]:
    """Run `kubectl create <create>` (protobuf), read the object back, delete it, create it again from the
    command's own JSON rendering (`--dry-run=client -o json | kubectl create -f -`) and assert that both
    stored objects are the same. Returns the protobuf-created one."""
    out = await kubectl.ok("create", *create)
    assert "created" in out, out
    via_protobuf = await get(kubectl, *read)
    await kubectl.ok("delete", *read)
    rendered = await kubectl.ok("create", *create, "--dry-run=client", "-o", "json")
    await kubectl.ok("create", "-f", "-", stdin=rendered)
    via_json = await get(kubectl, *read)
    assert comparable(via_protobuf) == comparable(via_json)
    return via_protobuf


@pytest.mark.kubectl
async def test_create_serviceaccount(kubectl: Kubectl) -> None:
    """kubectl create serviceaccount stores a ServiceAccount in the namespace asked for."""
    await kubectl.ok("create", "namespace", NS)
    sa = await create_both_ways(kubectl, ["serviceaccount", "builder", "-n", NS], ["sa", "builder", "-n", NS])
    assert sa["kind"] == "ServiceAccount" and sa["apiVersion"] == "v1"
    assert sa["metadata"]["name"] == "builder" and sa["metadata"]["namespace"] == NS
    assert "builder" in await kubectl.ok("get", "sa", "-n", NS)


@pytest.mark.kubectl
async def test_create_service_clusterip_and_nodeport(kubectl: Kubectl) -> None:
    """kubectl create service clusterip|nodeport: ports with numeric and named targetPorts (IntOrString),
    the nodePort, the type and the app=<name> selector survive the protobuf encoding."""
    await kubectl.ok("create", "namespace", NS)
    svc = await create_both_ways(kubectl, ["service", "clusterip", "web", "--tcp=80:8080", "--tcp=9090", "-n", NS],
                                 ["svc", "web", "-n", NS])
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["selector"] == {"app": "web"}
    assert spec["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080},
                             {"name": "9090", "port": 9090, "protocol": "TCP", "targetPort": 9090}]
    node = await create_both_ways(kubectl, ["service", "nodeport", "edge", "--tcp=443:https", "--node-port=30443",
                                            "-n", NS], ["svc", "edge", "-n", NS])
    assert node["spec"]["type"] == "NodePort" and node["spec"]["selector"] == {"app": "edge"}
    assert node["spec"]["ports"] == [{"name": "443-https", "nodePort": 30443, "port": 443, "protocol": "TCP",
                                      "targetPort": "https"}]
    _, row = (await kubectl.ok("get", "svc", "edge", "-n", NS)).splitlines()
    assert row.split()[:2] == ["edge", "NodePort"] and "443:30443/TCP" in row


@pytest.mark.kubectl
async def test_create_role_and_rolebinding(kubectl: Kubectl) -> None:
    """kubectl create role|rolebinding: rules keep the core group as apiGroups [""] (an empty element of a
    repeated string), and the binding's roleRef and ServiceAccount subject arrive whole."""
    await kubectl.ok("create", "namespace", NS)
    role = await create_both_ways(kubectl, ["role", "reader", "--verb=get,list", "--resource=pods,deployments",
                                            "-n", NS], ["role", "reader", "-n", NS])
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                             {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]
    named = await create_both_ways(kubectl, ["role", "one-cm", "--verb=get", "--resource=configmaps",
                                             "--resource-name=policy", "-n", NS], ["role", "one-cm", "-n", NS])
    assert named["rules"] == [{"apiGroups": [""], "resourceNames": ["policy"], "resources": ["configmaps"],
                               "verbs": ["get"]}]
    binding = await create_both_ways(kubectl, ["rolebinding", "reader-sa", "--role=reader",
                                               f"--serviceaccount={NS}:builder", "--user=alice", "-n", NS],
                                     ["rolebinding", "reader-sa", "-n", NS])
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "Role", "name": "reader"}
    assert binding["subjects"] == [{"apiGroup": RBAC, "kind": "User", "name": "alice"},
                                   {"kind": "ServiceAccount", "name": "builder", "namespace": NS}]
    _, row = (await kubectl.ok("get", "rolebinding", "reader-sa", "-n", NS, "-o", "wide")).splitlines()
    assert row.split()[:2] == ["reader-sa", "Role/reader"] and f"{NS}/builder" in row


@pytest.mark.kubectl
async def test_create_clusterrole_and_clusterrolebinding(kubectl: Kubectl) -> None:
    """kubectl create clusterrole|clusterrolebinding: cluster-scoped, resource and non-resource rules, a
    ClusterRole roleRef and a ServiceAccount subject in another namespace."""
    role = await create_both_ways(kubectl, ["clusterrole", "deploy-reader", "--verb=get",
                                            "--resource=deployments"], ["clusterrole", "deploy-reader"])
    assert "namespace" not in role["metadata"]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
    urls = await create_both_ways(kubectl, ["clusterrole", "metrics", "--verb=get",
                                            "--non-resource-url=/metrics"], ["clusterrole", "metrics"])
    assert urls["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    binding = await create_both_ways(kubectl, ["clusterrolebinding", "deploy-reader", "--clusterrole=deploy-reader",
                                               f"--serviceaccount={NS}:builder"],
                                     ["clusterrolebinding", "deploy-reader"])
    assert "namespace" not in binding["metadata"]
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "deploy-reader"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "builder", "namespace": NS}]
    _, row = (await kubectl.ok("get", "clusterrolebinding", "deploy-reader")).splitlines()
    assert row.split()[:2] == ["deploy-reader", "ClusterRole/deploy-reader"]


@pytest.mark.kubectl
async def test_create_poddisruptionbudget(kubectl: Kubectl) -> None:
    """kubectl create poddisruptionbudget: the selector's matchLabels, minAvailable as an int or a percent
    string, and maxUnavailable 0 (a set pointer whose zero value must not be dropped)."""
    await kubectl.ok("create", "namespace", NS)
    pdb = await create_both_ways(kubectl, ["poddisruptionbudget", "web", "--selector=app=x", "--min-available=1",
                                           "-n", NS], ["pdb", "web", "-n", NS])
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}
    percent = await create_both_ways(kubectl, ["pdb", "half", "--selector=app=y", "--min-available=50%", "-n", NS],
                                     ["pdb", "half", "-n", NS])
    assert percent["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in percent["spec"]
    frozen = await create_both_ways(kubectl, ["pdb", "frozen", "--selector=app=z", "--max-unavailable=0", "-n", NS],
                                    ["pdb", "frozen", "-n", NS])
    assert frozen["spec"] == {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "z"}}}
    rows = (await kubectl.ok("get", "pdb", "-n", NS)).splitlines()[1:]
    assert sorted(r.split()[:3] for r in rows) == [["frozen", "N/A", "0"], ["half", "50%", "N/A"],
                                                   ["web", "1", "N/A"]]


# --- protobuf bodies built by hand: what kubectl's flags cannot produce --------------------------------
def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages), with a varint length."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _envelope(api_version: str, kind: str, message: bytes) -> bytes:
    return MAGIC + _ld(1, _ld(1, api_version.encode()) + _ld(2, kind.encode())) + _ld(2, message)


def test_decode_intorstr_and_zero_pointers() -> None:
    """IntOrString as a string (type 1, strVal 3) and as an int; pointer fields keep their zero values,
    non-pointer ones drop them (JSON's omitempty)."""
    meta = _ld(1, _ld(1, b"p") + _ld(3, b"ns"))
    int_or_str_pct = _int(1, 1) + _ld(3, b"25%")
    int_zero = _int(1, 0) + _int(2, 0)
    pdb = meta + _ld(2, _ld(1, int_or_str_pct) + _ld(3, int_zero) + _ld(4, b"AlwaysAllow"))
    assert decode_object(_envelope("policy/v1", "PodDisruptionBudget", pdb)) == {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"minAvailable": "25%", "maxUnavailable": 0, "unhealthyPodEvictionPolicy": "AlwaysAllow"}}
    # a ServicePort as gogo-protobuf writes it: every non-pointer field, zero or not
    port = _ld(1, b"") + _ld(2, b"TCP") + _int(3, 8000) + _ld(4, int_zero) + _int(5, 0)
    spec = _ld(1, port) + _ld(3, b"") + _ld(4, b"ClusterIP") + _ld(14, _ld(1, _int(1, 0)))
    svc = decode_object(_envelope("v1", "Service", meta + _ld(2, spec) + _ld(3, b"")))
    assert svc["spec"] == {"ports": [{"protocol": "TCP", "port": 8000}], "type": "ClusterIP",
                           "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}
    assert svc["status"] == {}


def test_decode_rbac_empty_repeated_elements() -> None:
    """Repeated strings keep empty elements (apiGroups [""] is the core group), and aggregation selectors
    and subjects decode as lists of messages."""
    rule = _ld(1, b"get") + _ld(2, b"") + _ld(3, b"pods")
    label = _ld(1, b"rbac.example/aggregate") + _ld(2, b"true")  # a map entry: key 1, value 2
    aggregation = _ld(1, _ld(1, label))  # clusterRoleSelectors[0].matchLabels
    role = decode_object(_envelope(f"{RBAC}/v1", "ClusterRole", _ld(1, _ld(1, b"agg")) + _ld(2, rule)
                                   + _ld(3, aggregation)))
    assert role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    assert role["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"rbac.example/aggregate": "true"}}]}
    subject = _ld(1, b"Group") + _ld(2, RBAC.encode()) + _ld(3, b"devs") + _ld(4, b"")
    ref = _ld(1, RBAC.encode()) + _ld(2, b"ClusterRole") + _ld(3, b"agg")
    binding = decode_object(_envelope(f"{RBAC}/v1", "ClusterRoleBinding", _ld(1, _ld(1, b"b")) + _ld(2, subject)
                                      + _ld(3, ref)))
    assert binding["subjects"] == [{"kind": "Group", "apiGroup": RBAC, "name": "devs"}]
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "agg"}
    sa = decode_object(_envelope("v1", "ServiceAccount", _ld(1, _ld(1, b"sa")) + _ld(3, _ld(1, b"regcred"))
                                 + _int(4, 0)))
    assert sa["imagePullSecrets"] == [{"name": "regcred"}] and sa["automountServiceAccountToken"] is False


def test_unsupported_kind_is_named() -> None:
    """A kind without a table (a Node, which the sandbox does not serve; a custom resource, which
    client-go never encodes as protobuf) raises UnsupportedKind naming it."""
    with pytest.raises(UnsupportedKind, match="no protobuf support for v1 Node"):
        decode_object(_envelope("v1", "Node", _ld(1, _ld(1, b"n"))))
    with pytest.raises(UnsupportedKind, match=r"monitoring\.coreos\.com/v1 ServiceMonitor"):
        decode_object(_envelope("monitoring.coreos.com/v1", "ServiceMonitor", b""))


async def test_unsupported_kind_answers_415(http: Http) -> None:
    """Over HTTP the same body is a 415 UnsupportedMediaType Status that says which kind and what to send."""
    r = await http.post("/api/v1/namespaces/default/serviceaccounts", raw=_envelope("v1", "Node", b""),
                        content_type=PROTOBUF)
    assert r.status == 415 and r.reason == "UnsupportedMediaType"
    assert "no protobuf support for v1 Node" in r.body["message"]
    assert "application/json" in r.body["message"]
    ok = await http.post("/api/v1/namespaces/default/serviceaccounts", content_type=PROTOBUF,
                         raw=_envelope("v1", "ServiceAccount", _ld(1, _ld(1, b"pb-sa"))))
    assert ok.status == 201 and ok.body["metadata"]["name"] == "pb-sa"
