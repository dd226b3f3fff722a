"""Deployments, their /scale subresource, their pods, and annotation writes.

Scale writes are merge patches that carry the resourceVersion the decision was based on, so a
concurrent change (a human's ``kubectl scale``, another writer) makes the server answer 409 instead
of being overwritten; the controller then re-reads and re-decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from autoscaler.kube.api import MERGE_PATCH, KubeApi


def deployments_path(namespace: str | None = None) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments" if namespace else "/apis/apps/v1/deployments"


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def pods_path(namespace: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim_deployment(obj: dict[str, Any]) -> dict[str, Any]:
    """A Deployment as the controller's cache keeps it: without its pod template, ``managedFields`` and kubectl's
    last-applied annotation (a copy of the whole object), which the controller never reads and which make most
    of a real cluster's Deployment. Everything else (metadata, the selector, replicas, status) is kept."""
    out = dict(obj)
    md = obj.get("metadata")
    if isinstance(md, dict):
        md = {k: v for k, v in md.items() if k != "managedFields"}
        ann = md.get("annotations")
        if isinstance(ann, dict) and LAST_APPLIED in ann:
            md["annotations"] = {k: v for k, v in ann.items() if k != LAST_APPLIED}
        out["metadata"] = md
    spec = obj.get("spec")
    if isinstance(spec, dict) and "template" in spec:
        out["spec"] = {k: v for k, v in spec.items() if k != "template"}
    return out


@dataclass(frozen=True, slots=True)
class Scale:
    namespace: str
    name: str
    spec_replicas: int
    status_replicas: int
    selector: str
    resource_version: str

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Scale:
        md = doc.get("metadata") or {}
        return cls(
            namespace=str(md.get("namespace") or ""), name=str(md.get("name") or ""),
            spec_replicas=int((doc.get("spec") or {}).get("replicas") or 0),
            status_replicas=int((doc.get("status") or {}).get("replicas") or 0),
            selector=str((doc.get("status") or {}).get("selector") or ""),
            resource_version=str(md.get("resourceVersion") or ""),
        )


async def patch_scale(api: KubeApi, namespace: str, name: str, replicas: int,
                      resource_version: str | None) -> Scale:
    """Set ``spec.replicas`` through /scale; with a resourceVersion, a stale view gets 409 Conflict."""
    body: dict[str, Any] = {"spec": {"replicas": replicas}}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return Scale.from_json(await api.patch(deployment_path(namespace, name) + "/scale", body, MERGE_PATCH))


async def patch_annotations(api: KubeApi, namespace: str, name: str,
                            annotations: dict[str, str | None]) -> dict[str, Any]:
    """Merge-patch annotations (None removes one) without touching anything else the user wrote."""
    return await api.patch(deployment_path(namespace, name), {"metadata": {"annotations": annotations}},
                           MERGE_PATCH)


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def compact_json(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)
