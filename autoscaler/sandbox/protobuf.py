"""Reading request bodies in the Kubernetes protobuf encoding.

client-go's typed clients (``kubectl create namespace|configmap|secret|deployment|serviceaccount|service|
role|rolebinding|clusterrole|clusterrolebinding|poddisruptionbudget``, ``kubectl auth can-i``, ``kubectl
autoscale``) send ``application/vnd.kubernetes.protobuf``: the ``k8s\\0`` magic, then a ``runtime.Unknown``
envelope (type meta + the message bytes). They accept JSON back, so only decoding is needed. The tables
below give the field numbers of the upstream ``generated.proto`` files (fields are never renumbered
there) for the messages those clients send; fields outside them are dropped, as an older server would.
Zero values of non-pointer fields are dropped too, which is what JSON's ``omitempty`` gives, so the
decoded object equals the JSON the same client would have sent. A kind without a table (custom resources
never come as protobuf; a built-in kind the sandbox does not serve might) is :class:`UnsupportedKind`,
which the API server answers with 415 (`kubectl create -f`, which sends JSON, works for any kind).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

MAGIC = b"k8s\x00"

# field number -> (json name, type, flags). Types: str, int, bool, bytes, time, intorstr, quantity,
# map (string->string), mapq (string->Quantity), mapb (string->bytes) or a message name below.
# Flags: "rep" repeated, "ptr" pointer field (its zero value is kept).
Field = tuple[str, str, str]
MESSAGES: dict[str, dict[int, Field]] = {
    "ObjectMeta": {1: ("name", "str", ""), 2: ("generateName", "str", ""), 3: ("namespace", "str", ""),
                   5: ("uid", "str", ""), 6: ("resourceVersion", "str", ""), 7: ("generation", "int", ""),
                   10: ("deletionGracePeriodSeconds", "int", "ptr"), 11: ("labels", "map", ""),
                   12: ("annotations", "map", ""), 13: ("ownerReferences", "OwnerReference", "rep"),
                   14: ("finalizers", "str", "rep")},
    "OwnerReference": {1: ("kind", "str", ""), 3: ("name", "str", ""), 4: ("uid", "str", ""),
                       5: ("apiVersion", "str", ""), 6: ("controller", "bool", "ptr"),
                       7: ("blockOwnerDeletion", "bool", "ptr")},
    "LabelSelector": {1: ("matchLabels", "map", ""), 2: ("matchExpressions", "LabelSelectorRequirement", "rep")},
    "LabelSelectorRequirement": {1: ("key", "str", ""), 2: ("operator", "str", ""), 3: ("values", "str", "rep")},
    "Namespace": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "NamespaceSpec", ""),
                  3: ("status", "NamespaceStatus", "")},
    "NamespaceSpec": {1: ("finalizers", "str", "rep")},
    "NamespaceStatus": {1: ("phase", "str", "")},
    "ConfigMap": {1: ("metadata", "ObjectMeta", ""), 2: ("data", "map", ""), 3: ("binaryData", "mapb", ""),
                  4: ("immutable", "bool", "ptr")},
    # core/v1 Secret (`kubectl create secret generic|docker-registry|tls`): data values are raw bytes
    # (base64 in JSON); stringData, which no kubectl command sends, is merged into data as for JSON.
    "Secret": {1: ("metadata", "ObjectMeta", ""), 2: ("data", "mapb", ""), 3: ("type", "str", ""),
               4: ("stringData", "map", ""), 5: ("immutable", "bool", "ptr")},
    "Pod": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "PodSpec", ""), 3: ("status", "PodStatus", "")},
    "PodStatus": {},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "PodSpec", "")},
    "PodSpec": {2: ("containers", "Container", "rep"), 3: ("restartPolicy", "str", ""),
                4: ("terminationGracePeriodSeconds", "int", "ptr"), 5: ("activeDeadlineSeconds", "int", "ptr"),
                6: ("dnsPolicy", "str", ""), 7: ("nodeSelector", "map", ""), 8: ("serviceAccountName", "str", ""),
                9: ("serviceAccount", "str", ""), 10: ("nodeName", "str", ""), 11: ("hostNetwork", "bool", ""),
                12: ("hostPID", "bool", ""), 13: ("hostIPC", "bool", ""), 16: ("hostname", "str", ""),
                17: ("subdomain", "str", ""), 19: ("schedulerName", "str", ""),
                20: ("initContainers", "Container", "rep"), 21: ("automountServiceAccountToken", "bool", "ptr"),
                24: ("priorityClassName", "str", ""), 25: ("priority", "int", "ptr"),
                29: ("runtimeClassName", "str", "ptr"), 30: ("enableServiceLinks", "bool", "ptr"),
                31: ("preemptionPolicy", "str", "ptr")},
    "Container": {1: ("name", "str", ""), 2: ("image", "str", ""), 3: ("command", "str", "rep"),
                  4: ("args", "str", "rep"), 5: ("workingDir", "str", ""), 6: ("ports", "ContainerPort", "rep"),
                  7: ("env", "EnvVar", "rep"), 8: ("resources", "ResourceRequirements", ""),
                  13: ("terminationMessagePath", "str", ""), 14: ("imagePullPolicy", "str", ""),
                  16: ("stdin", "bool", ""), 17: ("stdinOnce", "bool", ""), 18: ("tty", "bool", ""),
                  20: ("terminationMessagePolicy", "str", ""), 24: ("restartPolicy", "str", "ptr")},
    "ContainerPort": {1: ("name", "str", ""), 2: ("hostPort", "int", ""), 3: ("containerPort", "int", ""),
                      4: ("protocol", "str", ""), 5: ("hostIP", "str", "")},
    "EnvVar": {1: ("name", "str", ""), 2: ("value", "str", "")},
    "ResourceRequirements": {1: ("limits", "mapq", ""), 2: ("requests", "mapq", "")},
    "Deployment": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "DeploymentSpec", ""),
                   3: ("status", "DeploymentStatus", "")},
    "DeploymentStatus": {},
    "DeploymentSpec": {1: ("replicas", "int", "ptr"), 2: ("selector", "LabelSelector", ""),
                       3: ("template", "PodTemplateSpec", ""), 4: ("strategy", "DeploymentStrategy", ""),
                       5: ("minReadySeconds", "int", ""), 6: ("revisionHistoryLimit", "int", "ptr"),
                       7: ("paused", "bool", ""), 9: ("progressDeadlineSeconds", "int", "ptr")},
    "DeploymentStrategy": {1: ("type", "str", ""), 2: ("rollingUpdate", "RollingUpdateDeployment", "")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intorstr", ""), 2: ("maxSurge", "intorstr", "")},
    "Lease": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "LeaseSpec", "")},
    "LeaseSpec": {1: ("holderIdentity", "str", "ptr"), 2: ("leaseDurationSeconds", "int", "ptr"),
                  3: ("acquireTime", "microtime", ""), 4: ("renewTime", "microtime", ""),
                  5: ("leaseTransitions", "int", "ptr"), 6: ("strategy", "str", "ptr"),
                  7: ("preferredHolder", "str", "ptr")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "SelfSubjectAccessReviewSpec", "")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", ""),
                                    2: ("nonResourceAttributes", "NonResourceAttributes", "")},
    "ResourceAttributes": {1: ("namespace", "str", ""), 2: ("verb", "str", ""), 3: ("group", "str", ""),
                           4: ("version", "str", ""), 5: ("resource", "str", ""), 6: ("subresource", "str", ""),
                           7: ("name", "str", "")},
    "NonResourceAttributes": {1: ("path", "str", ""), 2: ("verb", "str", "")},
    # autoscaling/v1, what `kubectl autoscale` (1.32) sends
    "HorizontalPodAutoscaler": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "HorizontalPodAutoscalerSpec", ""),
                                3: ("status", "HorizontalPodAutoscalerStatus", "")},
    "HorizontalPodAutoscalerSpec": {1: ("scaleTargetRef", "CrossVersionObjectReference", ""),
                                    2: ("minReplicas", "int", "ptr"), 3: ("maxReplicas", "int", ""),
                                    4: ("targetCPUUtilizationPercentage", "int", "ptr")},
    "HorizontalPodAutoscalerStatus": {},
    "CrossVersionObjectReference": {1: ("kind", "str", ""), 2: ("name", "str", ""), 3: ("apiVersion", "str", "")},
    # core/v1 ServiceAccount (`kubectl create serviceaccount`)
    "ServiceAccount": {1: ("metadata", "ObjectMeta", ""), 2: ("secrets", "ObjectReference", "rep"),
                       3: ("imagePullSecrets", "LocalObjectReference", "rep"),
                       4: ("automountServiceAccountToken", "bool", "ptr")},
    "ObjectReference": {1: ("kind", "str", ""), 2: ("namespace", "str", ""), 3: ("name", "str", ""),
                        4: ("uid", "str", ""), 5: ("apiVersion", "str", ""), 6: ("resourceVersion", "str", ""),
                        7: ("fieldPath", "str", "")},
    "LocalObjectReference": {1: ("name", "str", "")},
    # core/v1 Service (`kubectl create service clusterip|nodeport|loadbalancer|externalname`). Field 16
    # (topologyKeys) was removed upstream and is not in the sandbox's schema: dropped, as a newer server would.
    "Service": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "ServiceSpec", ""),
                3: ("status", "ServiceStatus", "")},
    "ServiceStatus": {},
    "ServiceSpec": {1: ("ports", "ServicePort", "rep"), 2: ("selector", "map", ""), 3: ("clusterIP", "str", ""),
                    4: ("type", "str", ""), 5: ("externalIPs", "str", "rep"), 7: ("sessionAffinity", "str", ""),
                    8: ("loadBalancerIP", "str", ""), 9: ("loadBalancerSourceRanges", "str", "rep"),
                    10: ("externalName", "str", ""), 11: ("externalTrafficPolicy", "str", ""),
                    12: ("healthCheckNodePort", "int", ""), 13: ("publishNotReadyAddresses", "bool", ""),
                    14: ("sessionAffinityConfig", "SessionAffinityConfig", ""), 17: ("ipFamilyPolicy", "str", "ptr"),
                    18: ("clusterIPs", "str", "rep"), 19: ("ipFamilies", "str", "rep"),
                    20: ("allocateLoadBalancerNodePorts", "bool", "ptr"), 21: ("loadBalancerClass", "str", "ptr"),
                    22: ("internalTrafficPolicy", "str", "ptr")},
    # targetPort is a non-pointer IntOrString: an unset one arrives as the int 0 and is dropped here; the
    # sandbox then defaults it to `port`, as it does for JSON's `"targetPort": 0`.
    "ServicePort": {1: ("name", "str", ""), 2: ("protocol", "str", ""), 3: ("port", "int", ""),
                    4: ("targetPort", "intorstr", ""), 5: ("nodePort", "int", ""), 6: ("appProtocol", "str", "ptr")},
    "SessionAffinityConfig": {1: ("clientIP", "ClientIPConfig", "")},
    "ClientIPConfig": {1: ("timeoutSeconds", "int", "ptr")},
    # rbac.authorization.k8s.io/v1 (`kubectl create role|clusterrole|rolebinding|clusterrolebinding`). Repeated
    # strings keep their empty elements: `--resource=pods` gives apiGroups [""], the core group.
    "Role": {1: ("metadata", "ObjectMeta", ""), 2: ("rules", "PolicyRule", "rep")},
    "ClusterRole": {1: ("metadata", "ObjectMeta", ""), 2: ("rules", "PolicyRule", "rep"),
                    3: ("aggregationRule", "AggregationRule", "")},
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", "rep")},
    "PolicyRule": {1: ("verbs", "str", "rep"), 2: ("apiGroups", "str", "rep"), 3: ("resources", "str", "rep"),
                   4: ("resourceNames", "str", "rep"), 5: ("nonResourceURLs", "str", "rep")},
    "RoleBinding": {1: ("metadata", "ObjectMeta", ""), 2: ("subjects", "Subject", "rep"),
                    3: ("roleRef", "RoleRef", "")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", ""), 2: ("subjects", "Subject", "rep"),
                           3: ("roleRef", "RoleRef", "")},
    "Subject": {1: ("kind", "str", ""), 2: ("apiGroup", "str", ""), 3: ("name", "str", ""),
                4: ("namespace", "str", "")},
    "RoleRef": {1: ("apiGroup", "str", ""), 2: ("kind", "str", ""), 3: ("name", "str", "")},
    # policy/v1 PodDisruptionBudget (`kubectl create poddisruptionbudget`). minAvailable and maxUnavailable are
    # IntOrString pointers: present only when set, and then kept even as 0 (`--max-unavailable=0`: no evictions).
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta", ""), 2: ("spec", "PodDisruptionBudgetSpec", ""),
                            3: ("status", "PodDisruptionBudgetStatus", "")},
    "PodDisruptionBudgetSpec": {1: ("minAvailable", "intorstr", "ptr"), 2: ("selector", "LabelSelector", ""),
                                3: ("maxUnavailable", "intorstr", "ptr"),
                                4: ("unhealthyPodEvictionPolicy", "str", "ptr")},
    "PodDisruptionBudgetStatus": {},
}
KINDS = {("v1", "Namespace"): "Namespace", ("v1", "ConfigMap"): "ConfigMap", ("v1", "Secret"): "Secret",
         ("v1", "Pod"): "Pod",
         ("v1", "ServiceAccount"): "ServiceAccount", ("v1", "Service"): "Service",
         ("apps/v1", "Deployment"): "Deployment", ("coordination.k8s.io/v1", "Lease"): "Lease",
         ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
         ("autoscaling/v1", "HorizontalPodAutoscaler"): "HorizontalPodAutoscaler",
         **{("rbac.authorization.k8s.io/v1", kind): kind
            for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")},
         ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget"}


class ProtobufError(ValueError):
    pass


class UnsupportedKind(ProtobufError):
    """The sandbox has no protobuf table for this kind (the client should use JSON)."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs in order: ints for varints, bytes for length-delimited."""
    out: list[tuple[int, Any]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise ProtobufError("truncated field")
            value, i = buf[i:i + length], i + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if i + size > len(buf):
                raise ProtobufError("truncated field")
            value, i = buf[i:i + size], i + size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, raw: Any) -> Any:
    if kind == "str":
        if not isinstance(raw, bytes):
            raise ProtobufError("expected a string")
        return raw.decode("utf-8", errors="replace")
    if kind == "int":
        if not isinstance(raw, int):
            raise ProtobufError("expected a varint")
        return _signed(raw)
    if kind == "bool":
        return bool(raw)
    if not isinstance(raw, bytes):
        raise ProtobufError(f"expected a length-delimited {kind}")
    sub = dict(fields(raw))
    if kind in ("time", "microtime"):
        seconds, nanos = _signed(int(sub.get(1, 0))), int(sub.get(2, 0))
        if not seconds and not nanos:
            return None
        stamp = datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if kind == "microtime" else "%Y-%m-%dT%H:%M:%SZ")
    if kind == "quantity":
        return _scalar("str", sub.get(1, b""))
    if kind == "intorstr":
        return _signed(int(sub.get(2, 0))) if int(sub.get(1, 0)) == 0 else _scalar("str", sub.get(3, b""))
    return decode_message(kind, raw)


def _empty(value: Any) -> bool:
    return value in ("", 0, False, None) and not isinstance(value, dict)


def decode_message(name: str, buf: bytes) -> dict[str, Any]:
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, raw in fields(buf):
        spec = table.get(number)
        if spec is None:
            continue  # a field this table does not know: dropped
        key, kind, flags = spec
        if kind in ("map", "mapq", "mapb"):
            entry = dict(fields(raw))
            k = _scalar("str", entry.get(1, b""))
            v_raw = entry.get(2, b"")
            if kind == "map":
                v: Any = _scalar("str", v_raw)
            elif kind == "mapq":
                v = _scalar("quantity", v_raw)
            else:
                v = base64.b64encode(v_raw).decode()
            out.setdefault(key, {})[k] = v
            continue
        value = _scalar(kind, raw)
        if "rep" in flags:
            out.setdefault(key, []).append(value)
        elif "ptr" in flags or not _empty(value):
            out[key] = value
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of a kind in :data:`KINDS`."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic number")
    envelope = dict(fields(body[len(MAGIC):]))
    type_meta = dict(fields(envelope.get(1, b"")))
    api_version, kind = _scalar("str", type_meta.get(1, b"")), _scalar("str", type_meta.get(2, b""))
    message = KINDS.get((api_version, kind))
    if message is None:
        raise UnsupportedKind(f"no protobuf support for {api_version} {kind}")
    obj = decode_message(message, envelope.get(2, b""))
    return {"apiVersion": api_version, "kind": kind, **obj}
