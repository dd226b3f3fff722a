"""The table of resources the sandbox serves: group, version, kind, scope, verbs and subresources.

Discovery, OpenAPI, routing, validation and the Table printer all read this one table, so adding a
resource is one entry here (plus, if it has one, its schema in :mod:`autoscaler.sandbox.schemas`).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    schema: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    storage: str = ""  # storage key; resources sharing it are views of the same objects (events)
    # (the same group and plural in two versions share one by default; the first listed is the stored form)
    generation: bool = False  # metadata.generation bumps on spec changes
    builtin: bool = True  # False for custom resources (kind/apiVersion on list items, no strategic merge)
    return_deleted: bool = False  # DELETE answers with the object (else a Success Status)
    field_selectors: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def storage_key(self) -> str:
        return self.storage or f"{self.group}/{self.plural}"

    @property
    def has_status(self) -> bool:
        """Status is a subresource: writes to the main resource leave it alone, and the reverse."""
        return "status" in self.subresources

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def supported_fields(self) -> frozenset[str]:
        base = {"metadata.name"}
        if self.namespaced:
            base.add("metadata.namespace")
        return frozenset(base | set(self.field_selectors))

    def storage_version_hash(self) -> str:
        digest = hashlib.sha256(f"{self.api_version}/{self.kind}".encode()).digest()
        return base64.b64encode(digest[:8]).decode()


_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                 "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, "io.k8s.api.core.v1.Namespace",
                 short_names=("ns",), verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 subresources=("status",), return_deleted=True, field_selectors=("status.phase",)),
    ResourceType("", "v1", "pods", "Pod", True, "io.k8s.api.core.v1.Pod", short_names=("po",),
                 categories=("all",), subresources=("status", "log"), return_deleted=True,
                 field_selectors=("status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                  "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName")),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "io.k8s.api.core.v1.ConfigMap",
                 short_names=("cm",)),
    # Stored only, like ConfigMaps: no service account token controller, nothing mounts them.
    ResourceType("", "v1", "secrets", "Secret", True, "io.k8s.api.core.v1.Secret"),
    # Stored only, like ConfigMaps: no token controller, no cluster IPs or endpoints.
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, "io.k8s.api.core.v1.ServiceAccount",
                 short_names=("sa",)),
    ResourceType("", "v1", "services", "Service", True, "io.k8s.api.core.v1.Service", short_names=("svc",),
                 categories=("all",), subresources=("status",), return_deleted=True),
    ResourceType("", "v1", "events", "Event", True, "io.k8s.api.core.v1.Event", short_names=("ev",),
                 storage="events", field_selectors=_EVENT_FIELDS),
    ResourceType("apps", "v1", "deployments", "Deployment", True, "io.k8s.api.apps.v1.Deployment",
                 short_names=("deploy",), categories=("all",), subresources=("scale", "status"),
                 generation=True),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, "io.k8s.api.apps.v1.ReplicaSet",
                 short_names=("rs",), categories=("all",), subresources=("status",), generation=True,
                 field_selectors=("status.replicas",)),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, "io.k8s.api.events.v1.Event",
                 short_names=("ev",), storage="events", field_selectors=_EVENT_FIELDS),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, "io.k8s.api.coordination.v1.Lease"),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
                 "io.k8s.api.authorization.v1.SelfSubjectAccessReview", verbs=("create",)),
    ResourceType("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", True,
                 "com.coreos.monitoring.v1.PodMonitor", short_names=("pmon",), categories=("prometheus-operator",),
                 generation=True, builtin=False, return_deleted=True),
    ResourceType("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", True,
                 "com.coreos.monitoring.v1.PrometheusRule", short_names=("promrule",),
                 categories=("prometheus-operator",), generation=True, builtin=False, return_deleted=True),
    ResourceType("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True,
                 "com.coreos.monitoring.v1.ServiceMonitor", short_names=("smon",),
                 categories=("prometheus-operator",), generation=True, builtin=False, return_deleted=True),
    # Stored only: no KEDA operator acts on them (`autoscaler migrate-hpa` reads them).
    ResourceType("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject", True, "sh.keda.v1alpha1.ScaledObject",
                 short_names=("so",), categories=("keda",), subresources=("status",), generation=True, builtin=False,
                 return_deleted=True),
    # RBAC is stored, not enforced: every request is allowed whatever these say.
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
                 "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False,
                 "io.k8s.api.rbac.v1.ClusterRole"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True,
                 "io.k8s.api.rbac.v1.RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, "io.k8s.api.rbac.v1.Role"),
    # Stored only: no disruption controller fills the status, and nothing evicts.
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True,
                 "io.k8s.api.policy.v1.PodDisruptionBudget", short_names=("pdb",), subresources=("status",),
                 generation=True),
    # Stored only: no HPA controller acts on them. v2 is the storage form (and the preferred version);
    # v1, which kubectl 1.32's `autoscale` writes, is a converted view of the same objects.
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
                 "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", short_names=("hpa",), categories=("all",),
                 subresources=("status",), generation=True),
    ResourceType("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
                 "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler", short_names=("hpa",), categories=("all",),
                 subresources=("status",), generation=True),
)

# Subresource response kinds (group, version, kind) and verbs, for discovery.
SUBRESOURCE_KINDS: dict[str, tuple[tuple[str, str, str], tuple[str, ...]]] = {
    "status": (("", "", ""), ("get", "patch", "update")),
    "scale": (("autoscaling", "v1", "Scale"), ("get", "patch", "update")),
    "log": (("", "v1", "Pod"), ("get",)),
}


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs in discovery order, core first; a group's preferred version first."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.api_version == api_version and r.kind == kind:
            return r
    return None


def _served(group: str, plural: str) -> ResourceType:
    return next(r for r in RESOURCES if r.group == group and r.plural == plural)


NAMESPACES = _served("", "namespaces")
PODS = _served("", "pods")
CONFIGMAPS = _served("", "configmaps")
EVENTS = _served("", "events")
DEPLOYMENTS = _served("apps", "deployments")
REPLICASETS = _served("apps", "replicasets")
LEASES = _served("coordination.k8s.io", "leases")
HPAS = _served("autoscaling", "horizontalpodautoscalers")  # the first listed: v2, the stored form
