"""OpenAPI v3 schemas of the kinds the sandbox serves, named as in the real ``/openapi/v3`` documents.

They serve twice: published under ``/openapi/v3`` (kubectl reads them to learn that the server does
field validation, and for ``kubectl explain``), and used by :mod:`autoscaler.sandbox.validation` to
decode request bodies: wrong types give 400, unknown and duplicate fields are rejected, warned about or
dropped according to ``fieldValidation``. Deep, rarely written structs (affinity, probes, volumes, ...)
are left open (``x-kubernetes-preserve-unknown-fields``) so that valid manifests are never rejected.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

PREFIX = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."


def ref(name: str) -> Obj:
    return {"$ref": PREFIX + name}


def obj(props: Obj, required: tuple[str, ...] = (), description: str = "") -> Obj:
    s: Obj = {"type": "object", "properties": props}
    if required:
        s["required"] = list(required)
    if description:
        s["description"] = description
    return s


def arr(items: Obj) -> Obj:
    return {"type": "array", "items": items}


def merge_list(items: Obj, key: str, strategy: str = "merge") -> Obj:
    """A list that strategic merge patches merge element by element on ``key`` (patchStrategy=merge), as
    the real OpenAPI declares it: kubectl apply then diffs such lists element by element, so fields the
    server defaults inside the elements do not make every apply a change."""
    return {**arr(items), "x-kubernetes-patch-merge-key": key, "x-kubernetes-patch-strategy": strategy}


STR: Obj = {"type": "string"}
BOOL: Obj = {"type": "boolean"}
I32: Obj = {"type": "integer", "format": "int32"}
I64: Obj = {"type": "integer", "format": "int64"}
TIME: Obj = {"type": "string", "format": "date-time"}
MICROTIME: Obj = {"type": "string", "format": "date-time"}
MAP_STR: Obj = {"type": "object", "additionalProperties": {"type": "string"}}
BYTES: Obj = {"type": "string", "format": "byte"}  # a Go []byte: base64 in JSON
MAP_BYTES: Obj = {"type": "object", "additionalProperties": BYTES}
STRS: Obj = arr(STR)
OPEN: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
INT_OR_STRING: Obj = {"x-kubernetes-int-or-string": True}
QUANTITY: Obj = {"x-kubernetes-int-or-string": True}
MAP_QUANTITY: Obj = {"type": "object", "additionalProperties": QUANTITY}


def kind_schema(group: str, version: str, kind: str, props: Obj, description: str = "") -> Obj:
    s = obj({"apiVersion": STR, "kind": STR, "metadata": ref(META + "ObjectMeta"), **props},
            description=description)
    s["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return s


CONTAINER = obj({
    "args": STRS, "command": STRS, "env": merge_list(OPEN, "name"), "envFrom": arr(OPEN), "image": STR,
    "imagePullPolicy": STR, "lifecycle": OPEN, "livenessProbe": OPEN, "name": STR,
    "ports": merge_list(obj({"containerPort": I32, "hostIP": STR, "hostPort": I32, "name": STR, "protocol": STR},
                            ("containerPort",)), "containerPort"),
    "readinessProbe": OPEN, "resizePolicy": arr(OPEN),
    "resources": obj({"claims": arr(OPEN), "limits": MAP_QUANTITY, "requests": MAP_QUANTITY}),
    "restartPolicy": STR, "securityContext": OPEN, "startupProbe": OPEN, "stdin": BOOL, "stdinOnce": BOOL,
    "terminationMessagePath": STR, "terminationMessagePolicy": STR, "tty": BOOL,
    "volumeDevices": merge_list(OPEN, "devicePath"), "volumeMounts": merge_list(OPEN, "mountPath"), "workingDir": STR,
}, ("name",))

POD_SPEC = obj({
    "activeDeadlineSeconds": I64, "affinity": OPEN, "automountServiceAccountToken": BOOL,
    "containers": merge_list(ref("io.k8s.api.core.v1.Container"), "name"), "dnsConfig": OPEN, "dnsPolicy": STR,
    "enableServiceLinks": BOOL, "ephemeralContainers": merge_list(OPEN, "name"),
    "hostAliases": merge_list(OPEN, "ip"), "hostIPC": BOOL, "hostNetwork": BOOL, "hostPID": BOOL, "hostUsers": BOOL,
    "hostname": STR, "imagePullSecrets": merge_list(OPEN, "name"),
    "initContainers": merge_list(ref("io.k8s.api.core.v1.Container"), "name"), "nodeName": STR,
    "nodeSelector": MAP_STR,
    "os": OPEN, "overhead": MAP_QUANTITY, "preemptionPolicy": STR, "priority": I32, "priorityClassName": STR,
    "readinessGates": arr(OPEN), "resourceClaims": merge_list(OPEN, "name", "merge,retainKeys"), "resources": OPEN,
    "restartPolicy": STR,
    "runtimeClassName": STR, "schedulerName": STR, "schedulingGates": arr(OPEN), "securityContext": OPEN,
    "serviceAccount": STR, "serviceAccountName": STR, "setHostnameAsFQDN": BOOL,
    "shareProcessNamespace": BOOL, "subdomain": STR, "terminationGracePeriodSeconds": I64,
    "tolerations": arr(OPEN), "topologySpreadConstraints": merge_list(OPEN, "topologyKey"),
    "volumes": merge_list(OPEN, "name", "merge,retainKeys"),
}, ("containers",))

LABEL_SELECTOR = obj({
    "matchExpressions": arr(obj({"key": STR, "operator": STR, "values": STRS}, ("key", "operator"))),
    "matchLabels": MAP_STR,
})

CONDITION_COMMON = {"lastTransitionTime": TIME, "message": STR, "reason": STR, "status": STR, "type": STR}
META_CONDITIONS = arr(obj({**CONDITION_COMMON, "observedGeneration": I64},
                          ("type", "status", "lastTransitionTime", "reason", "message")))
"""A list of ``metav1.Condition``: the status conditions of the newer kinds (Service, PodDisruptionBudget)."""

OBJECT_REFERENCE = obj({"apiVersion": STR, "fieldPath": STR, "kind": STR, "name": STR, "namespace": STR,
                        "resourceVersion": STR, "uid": STR})

# autoscaling/v2 HorizontalPodAutoscaler (lists are atomic upstream, conditions merge by type).
AS2 = "io.k8s.api.autoscaling.v2."
_METRIC_TARGET = obj({"averageUtilization": I32, "averageValue": QUANTITY, "type": STR, "value": QUANTITY},
                     ("type",))
_METRIC_VALUE = obj({"averageUtilization": I32, "averageValue": QUANTITY, "value": QUANTITY})
_METRIC_ID = obj({"name": STR, "selector": ref(META + "LabelSelector")}, ("name",))
_SCALING_RULES = obj({"policies": arr(obj({"periodSeconds": I32, "type": STR, "value": I32},
                                          ("type", "value", "periodSeconds"))),
                      "selectPolicy": STR, "stabilizationWindowSeconds": I32})
_CROSS_VERSION_REF = obj({"apiVersion": STR, "kind": STR, "name": STR}, ("kind", "name"))


def _metric_props(target: str, schema: str) -> Obj:
    """A MetricSpec's (``target``) or MetricStatus's (``current``) type and five source structs."""
    t = {target: ref(AS2 + schema)}
    return {
        "containerResource": obj({"container": STR, "name": STR, **t}, ("name", target, "container")),
        "external": obj({"metric": ref(AS2 + "MetricIdentifier"), **t}, ("metric", target)),
        "object": obj({"describedObject": ref(AS2 + "CrossVersionObjectReference"),
                       "metric": ref(AS2 + "MetricIdentifier"), **t}, ("describedObject", target, "metric")),
        "pods": obj({"metric": ref(AS2 + "MetricIdentifier"), **t}, ("metric", target)),
        "resource": obj({"name": STR, **t}, ("name", target)),
        "type": STR,
    }


HPA_SCHEMAS: dict[str, Obj] = {
    AS2 + "CrossVersionObjectReference": _CROSS_VERSION_REF,
    AS2 + "MetricIdentifier": _METRIC_ID,
    AS2 + "MetricTarget": _METRIC_TARGET,
    AS2 + "MetricValueStatus": _METRIC_VALUE,
    AS2 + "MetricSpec": obj(_metric_props("target", "MetricTarget"), ("type",)),
    AS2 + "MetricStatus": obj(_metric_props("current", "MetricValueStatus"), ("type",)),
    AS2 + "HPAScalingRules": _SCALING_RULES,
    AS2 + "HorizontalPodAutoscalerSpec": obj({
        "behavior": obj({"scaleDown": ref(AS2 + "HPAScalingRules"), "scaleUp": ref(AS2 + "HPAScalingRules")}),
        "maxReplicas": I32, "metrics": arr(ref(AS2 + "MetricSpec")), "minReplicas": I32,
        "scaleTargetRef": ref(AS2 + "CrossVersionObjectReference"),
    }, ("scaleTargetRef", "maxReplicas")),
    AS2 + "HorizontalPodAutoscalerStatus": obj({
        "conditions": arr(obj(CONDITION_COMMON, ("type", "status"))),
        "currentMetrics": arr(ref(AS2 + "MetricStatus")), "currentReplicas": I32, "desiredReplicas": I32,
        "lastScaleTime": TIME, "observedGeneration": I64,
    }, ("desiredReplicas",)),
    AS2 + "HorizontalPodAutoscaler": kind_schema("autoscaling", "v2", "HorizontalPodAutoscaler", {
        "spec": ref(AS2 + "HorizontalPodAutoscalerSpec"), "status": ref(AS2 + "HorizontalPodAutoscalerStatus")}),
    "io.k8s.api.autoscaling.v1.CrossVersionObjectReference": _CROSS_VERSION_REF,
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler": kind_schema(
        "autoscaling", "v1", "HorizontalPodAutoscaler", {
            "spec": obj({"maxReplicas": I32, "minReplicas": I32,
                         "scaleTargetRef": ref("io.k8s.api.autoscaling.v1.CrossVersionObjectReference"),
                         "targetCPUUtilizationPercentage": I32}, ("scaleTargetRef", "maxReplicas")),
            "status": obj({"currentCPUUtilizationPercentage": I32, "currentReplicas": I32, "desiredReplicas": I32,
                           "lastScaleTime": TIME, "observedGeneration": I64},
                          ("currentReplicas", "desiredReplicas"))}),
}

# rbac.authorization.k8s.io/v1: stored, not enforced (lists are atomic upstream).
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC = "io.k8s.api.rbac.v1."
_POLICY_RULE = obj({"apiGroups": STRS, "nonResourceURLs": STRS, "resourceNames": STRS, "resources": STRS,
                    "verbs": STRS}, ("verbs",))
_ROLE_REF = obj({"apiGroup": STR, "kind": STR, "name": STR}, ("apiGroup", "kind", "name"))
_SUBJECT = obj({"apiGroup": STR, "kind": STR, "name": STR, "namespace": STR}, ("kind", "name"))
RBAC_SCHEMAS: dict[str, Obj] = {
    RBAC + "PolicyRule": _POLICY_RULE,
    RBAC + "RoleRef": _ROLE_REF,
    RBAC + "Subject": _SUBJECT,
    RBAC + "AggregationRule": obj({"clusterRoleSelectors": arr(ref(META + "LabelSelector"))}),
    RBAC + "ClusterRole": kind_schema(RBAC_GROUP, "v1", "ClusterRole", {
        "aggregationRule": ref(RBAC + "AggregationRule"), "rules": arr(ref(RBAC + "PolicyRule"))}),
    RBAC + "Role": kind_schema(RBAC_GROUP, "v1", "Role", {"rules": arr(ref(RBAC + "PolicyRule"))}),
    **{RBAC + kind: {**kind_schema(RBAC_GROUP, "v1", kind, {
        "roleRef": ref(RBAC + "RoleRef"), "subjects": arr(ref(RBAC + "Subject"))}), "required": ["roleRef"]}
       for kind in ("ClusterRoleBinding", "RoleBinding")},
}

# core/v1 Service: stored only (no cluster IP allocation, no endpoints). Ports merge by port upstream.
SERVICE_PORT = obj({"appProtocol": STR, "name": STR, "nodePort": I32, "port": I32, "protocol": STR,
                    "targetPort": INT_OR_STRING}, ("port",))
SERVICE_SPEC = obj({
    "allocateLoadBalancerNodePorts": BOOL, "clusterIP": STR, "clusterIPs": STRS, "externalIPs": STRS,
    "externalName": STR, "externalTrafficPolicy": STR, "healthCheckNodePort": I32,
    "internalTrafficPolicy": STR, "ipFamilies": STRS, "ipFamilyPolicy": STR, "loadBalancerClass": STR,
    "loadBalancerIP": STR, "loadBalancerSourceRanges": STRS,
    "ports": merge_list(ref("io.k8s.api.core.v1.ServicePort"), "port"),
    "publishNotReadyAddresses": BOOL, "selector": MAP_STR, "sessionAffinity": STR,
    "sessionAffinityConfig": obj({"clientIP": obj({"timeoutSeconds": I32})}), "trafficDistribution": STR,
    "type": STR,
})
SERVICE_STATUS = obj({
    "conditions": META_CONDITIONS,
    "loadBalancer": obj({"ingress": arr(obj({
        "hostname": STR, "ip": STR, "ipMode": STR,
        "ports": arr(obj({"error": STR, "port": I32, "protocol": STR}, ("port", "protocol")))}))}),
})

# policy/v1 PodDisruptionBudget: stored only (no disruption controller, no evictions).
PDB_SPEC = obj({"maxUnavailable": INT_OR_STRING, "minAvailable": INT_OR_STRING,
                "selector": ref(META + "LabelSelector"), "unhealthyPodEvictionPolicy": STR})
PDB_STATUS = obj({
    "conditions": META_CONDITIONS,
    "currentHealthy": I32, "desiredHealthy": I32, "disruptedPods": {"type": "object", "additionalProperties": TIME},
    "disruptionsAllowed": I32, "expectedPods": I32, "observedGeneration": I64,
}, ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"))

SCHEMAS: dict[str, Obj] = {
    META + "ObjectMeta": obj({
        "annotations": MAP_STR, "creationTimestamp": TIME, "deletionGracePeriodSeconds": I64,
        "deletionTimestamp": TIME, "finalizers": {**STRS, "x-kubernetes-patch-strategy": "merge"},
        "generateName": STR, "generation": I64, "labels": MAP_STR, "managedFields": arr(OPEN), "name": STR,
        "namespace": STR, "ownerReferences": merge_list(ref(META + "OwnerReference"), "uid"), "resourceVersion": STR,
        "selfLink": STR,
        "uid": STR,
    }),
    META + "OwnerReference": obj({"apiVersion": STR, "blockOwnerDeletion": BOOL, "controller": BOOL,
                                  "kind": STR, "name": STR, "uid": STR},
                                 ("apiVersion", "kind", "name", "uid")),
    META + "LabelSelector": LABEL_SELECTOR,
    META + "Status": obj({"apiVersion": STR, "code": I32, "details": OPEN, "kind": STR, "message": STR,
                          "metadata": OPEN, "reason": STR, "status": STR}),
    META + "DeleteOptions": obj({"apiVersion": STR, "dryRun": STRS, "gracePeriodSeconds": I64, "kind": STR,
                                 "orphanDependents": BOOL, "preconditions": OPEN, "propagationPolicy": STR}),
    META + "Patch": {"type": "object", "description": "A patch document (JSON patch, merge patch, strategic "
                                                       "merge patch or apply configuration)."},
    "io.k8s.api.core.v1.Container": CONTAINER,
    "io.k8s.api.core.v1.PodSpec": POD_SPEC,
    "io.k8s.api.core.v1.PodTemplateSpec": obj({"metadata": ref(META + "ObjectMeta"),
                                               "spec": ref("io.k8s.api.core.v1.PodSpec")}),
    "io.k8s.api.core.v1.Pod": kind_schema("", "v1", "Pod", {
        "spec": ref("io.k8s.api.core.v1.PodSpec"), "status": OPEN}),
    "io.k8s.api.core.v1.Namespace": kind_schema("", "v1", "Namespace", {
        "spec": obj({"finalizers": STRS}), "status": obj({"conditions": arr(OPEN), "phase": STR})}),
    "io.k8s.api.core.v1.ConfigMap": kind_schema("", "v1", "ConfigMap", {
        "binaryData": MAP_BYTES, "data": MAP_STR, "immutable": BOOL}),
    # stringData is write-only: validation.decode merges it into data, base64-encoded
    "io.k8s.api.core.v1.Secret": kind_schema("", "v1", "Secret", {
        "data": MAP_BYTES, "immutable": BOOL, "stringData": MAP_STR, "type": STR}),
    "io.k8s.api.core.v1.ObjectReference": OBJECT_REFERENCE,
    "io.k8s.api.core.v1.Event": kind_schema("", "v1", "Event", {
        "action": STR, "count": I32, "eventTime": MICROTIME, "firstTimestamp": TIME,
        "involvedObject": ref("io.k8s.api.core.v1.ObjectReference"), "lastTimestamp": TIME, "message": STR,
        "reason": STR, "related": ref("io.k8s.api.core.v1.ObjectReference"), "reportingComponent": STR,
        "reportingInstance": STR, "series": obj({"count": I32, "lastObservedTime": MICROTIME}),
        "source": obj({"component": STR, "host": STR}), "type": STR}),
    "io.k8s.api.events.v1.Event": kind_schema("events.k8s.io", "v1", "Event", {
        "action": STR, "deprecatedCount": I32, "deprecatedFirstTimestamp": TIME,
        "deprecatedLastTimestamp": TIME, "deprecatedSource": obj({"component": STR, "host": STR}),
        "eventTime": MICROTIME, "note": STR, "reason": STR,
        "regarding": ref("io.k8s.api.core.v1.ObjectReference"),
        "related": ref("io.k8s.api.core.v1.ObjectReference"), "reportingController": STR,
        "reportingInstance": STR, "series": obj({"count": I32, "lastObservedTime": MICROTIME}), "type": STR}),
    "io.k8s.api.apps.v1.Deployment": kind_schema("apps", "v1", "Deployment", {
        "spec": obj({
            "minReadySeconds": I32, "paused": BOOL, "progressDeadlineSeconds": I32, "replicas": I32,
            "revisionHistoryLimit": I32, "selector": ref(META + "LabelSelector"),
            "strategy": obj({"rollingUpdate": obj({"maxSurge": INT_OR_STRING, "maxUnavailable": INT_OR_STRING}),
                             "type": STR}),
            "template": ref("io.k8s.api.core.v1.PodTemplateSpec"),
        }, ("selector", "template")),
        "status": obj({
            "availableReplicas": I32, "collisionCount": I32,
            "conditions": merge_list(obj({**CONDITION_COMMON, "lastUpdateTime": TIME}, ("type", "status")), "type"),
            "observedGeneration": I64, "readyReplicas": I32, "replicas": I32, "terminatingReplicas": I32,
            "unavailableReplicas": I32, "updatedReplicas": I32}),
    }),
    "io.k8s.api.apps.v1.ReplicaSet": kind_schema("apps", "v1", "ReplicaSet", {
        "spec": obj({"minReadySeconds": I32, "replicas": I32, "selector": ref(META + "LabelSelector"),
                     "template": ref("io.k8s.api.core.v1.PodTemplateSpec")}, ("selector",)),
        "status": obj({"availableReplicas": I32, "conditions": arr(OPEN), "fullyLabeledReplicas": I32,
                       "observedGeneration": I64, "readyReplicas": I32, "replicas": I32,
                       "terminatingReplicas": I32}),
    }),
    "io.k8s.api.autoscaling.v1.Scale": kind_schema("autoscaling", "v1", "Scale", {
        "spec": obj({"replicas": I32}), "status": obj({"replicas": I32, "selector": STR}, ("replicas",))}),
    "io.k8s.api.core.v1.ServiceAccount": kind_schema("", "v1", "ServiceAccount", {
        "automountServiceAccountToken": BOOL,
        "imagePullSecrets": arr(obj({"name": STR})),
        "secrets": merge_list(ref("io.k8s.api.core.v1.ObjectReference"), "name")}),
    "io.k8s.api.core.v1.ServicePort": SERVICE_PORT,
    "io.k8s.api.core.v1.ServiceSpec": SERVICE_SPEC,
    "io.k8s.api.core.v1.ServiceStatus": SERVICE_STATUS,
    "io.k8s.api.core.v1.Service": kind_schema("", "v1", "Service", {
        "spec": ref("io.k8s.api.core.v1.ServiceSpec"), "status": ref("io.k8s.api.core.v1.ServiceStatus")}),
    "io.k8s.api.policy.v1.PodDisruptionBudgetSpec": PDB_SPEC,
    "io.k8s.api.policy.v1.PodDisruptionBudgetStatus": PDB_STATUS,
    "io.k8s.api.policy.v1.PodDisruptionBudget": kind_schema("policy", "v1", "PodDisruptionBudget", {
        "spec": ref("io.k8s.api.policy.v1.PodDisruptionBudgetSpec"),
        "status": ref("io.k8s.api.policy.v1.PodDisruptionBudgetStatus")}),
    "io.k8s.api.coordination.v1.Lease": kind_schema("coordination.k8s.io", "v1", "Lease", {
        "spec": obj({"acquireTime": MICROTIME, "holderIdentity": STR, "leaseDurationSeconds": I32,
                     "leaseTransitions": I32, "preferredHolder": STR, "renewTime": MICROTIME,
                     "strategy": STR})}),
    "io.k8s.api.authorization.v1.SelfSubjectAccessReview": kind_schema(
        "authorization.k8s.io", "v1", "SelfSubjectAccessReview", {
            "spec": obj({"nonResourceAttributes": OPEN, "resourceAttributes": OPEN}),
            "status": obj({"allowed": BOOL, "denied": BOOL, "evaluationError": STR, "reason": STR})}),
    "com.coreos.monitoring.v1.PodMonitor": kind_schema("monitoring.coreos.com", "v1", "PodMonitor", {
        "spec": OPEN, "status": OPEN}),
    "com.coreos.monitoring.v1.ServiceMonitor": kind_schema("monitoring.coreos.com", "v1", "ServiceMonitor", {
        "spec": OPEN, "status": OPEN}),
    "com.coreos.monitoring.v1.PrometheusRule": kind_schema("monitoring.coreos.com", "v1", "PrometheusRule", {
        "spec": OPEN, "status": OPEN}),
    "sh.keda.v1alpha1.ScaledObject": kind_schema("keda.sh", "v1alpha1", "ScaledObject", {
        "spec": OPEN, "status": OPEN}),
    **HPA_SCHEMAS,
    **RBAC_SCHEMAS,
}


def resolve(schema: Obj) -> Obj:
    """Follow ``$ref``s to the schema they name."""
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"][len(PREFIX):]]
    return schema
