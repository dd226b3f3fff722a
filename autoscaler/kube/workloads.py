"""Deployments, their /scale subresource, their pods, and annotation writes.

Scale writes are merge patches that carry the resourceVersion the decision was based on, so a
concurrent change (a human's ``kubectl scale``, another writer) makes the server answer 409 instead
of being overwritten; the controller then re-reads and re-decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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
    """A Deployment as the controller's cache keeps it: without its pod template (but its containers' command lines,
    :func:`command_lines`), ``managedFields`` and kubectl's last-applied annotation (a copy of the whole object),
    which the controller never reads and which make most of a real cluster's Deployment. Everything else (metadata,
    the selector, replicas, status) is kept."""
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
        containers = command_lines(spec["template"])
        if containers:
            out["spec"]["template"] = {"spec": {"containers": containers}}
    return out


_MAX_NUM_SEQS = re.compile(r"--max[-_]num[-_]seqs(?:=|\s+)[\"']?(\d+)")
_ENV_REF = re.compile(r"\$\(([-._a-zA-Z0-9]+)\)")


def _words(container: Mapping[str, Any]) -> list[str]:
    """A container's command and args, in order."""
    return [w for key in ("command", "args") if isinstance(container.get(key), list)
            for w in container[key] if isinstance(w, str)]


def command_lines(template: Any) -> list[dict[str, Any]]:
    """The command lines of a pod template's containers, as :func:`max_num_seqs` reads them (and all the
    controller's cache keeps of a Deployment's template): their name, command and args, and the env variables with a
    literal value that these refer to (``$(VAR)``) or that carry flags (``--``); containers with none of them left
    out."""
    spec = template.get("spec") if isinstance(template, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    out: list[dict[str, Any]] = []
    for c in containers if isinstance(containers, list) else []:
        if not isinstance(c, Mapping):
            continue
        refs = set(_ENV_REF.findall(" ".join(_words(c))))
        env = [{"name": e["name"], "value": e["value"]} for e in c.get("env") or []
               if isinstance(e, Mapping) and isinstance(e.get("name"), str) and isinstance(e.get("value"), str)
               and (e["name"] in refs or "--" in e["value"])]
        kept: dict[str, Any] = {k: c[k] for k in ("command", "args") if c.get(k)}
        if env:
            kept["env"] = env
        if kept:
            out.append({"name": c.get("name"), **kept})
    return out


def _expand(word: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` references in a command-line word replaced by the container's env values, as the kubelet does."""
    return _ENV_REF.sub(lambda m: env.get(m[1], m[0]), word)


def max_num_seqs(obj: Mapping[str, Any]) -> int | None:
    """The most requests a Deployment's pods run at once by their command line: vLLM's ``--max-num-seqs`` (or
    ``--max_num_seqs``) in a container's command or args, its ``$(VAR)`` references expanded from the container's
    env as the kubelet does, or in an env value (NIM's ``NIM_PASSTHROUGH_ARGS``, a chart's extra-arguments
    variable). None when no container says it, or when they say different numbers."""
    spec = obj.get("spec")
    found: set[int] = set()
    for c in command_lines(spec.get("template") if isinstance(spec, Mapping) else None):
        env = {e["name"]: e["value"] for e in c.get("env", [])}
        for text in (" ".join(_expand(w, env) for w in _words(c)), *env.values()):
            found.update(int(n) for n in _MAX_NUM_SEQS.findall(text))
    found.discard(0)
    return found.pop() if len(found) == 1 else None


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
