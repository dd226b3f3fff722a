"""Discovery and OpenAPI documents, built from the resource table.

* ``/version`` reports v1.32 (kubectl's version dispatcher picks its own version from it).
* ``/api`` and ``/apis`` answer in the aggregated ``apidiscovery.k8s.io/v2`` form when the client
  asks for it in ``Accept`` (kubectl and client-go do), and in the legacy form otherwise; ``/api/v1``
  and ``/apis/<group>/<version>`` list the resources with their subresources.
* ``/openapi/v3`` and ``/openapi/v3/<api|apis/group>/<version>`` publish paths whose PATCH operations
  carry ``x-kubernetes-group-version-kind`` and a ``fieldValidation`` parameter: this is how kubectl
  decides that the server validates fields itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from autoscaler.sandbox.resources import RESOURCES, SUBRESOURCE_KINDS, ResourceType, group_versions
from autoscaler.sandbox.schemas import META, SCHEMAS, ref

Obj = dict[str, Any]

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "sandbox",
                "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
                "compiler": "gc", "platform": "linux/amd64"}
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def media_params(accept: str) -> list[dict[str, str]]:
    """The parameters of each media range of an Accept header, with the type under ``""``."""
    out = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        params = {"": fields[0].lower()}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip()] = v.strip()
        out.append(params)
    return out


def wants_aggregated(accept: str) -> bool:
    return any(p.get("g") == "apidiscovery.k8s.io" and p.get("v") == "v2" and p.get("as") == "APIGroupDiscoveryList"
               for p in media_params(accept))


def _resources(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def resource_list(group: str, version: str) -> Obj:
    gv = f"{group}/{version}" if group else version
    out: list[Obj] = []
    for r in _resources(group, version):
        entry: Obj = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                      "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entry["storageVersionHash"] = r.storage_version_hash()
        out.append(entry)
        for sub in r.subresources:
            (sg, sv, sk), verbs = SUBRESOURCE_KINDS[sub]
            s: Obj = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                      "kind": sk or r.kind, "verbs": list(verbs)}
            if sk:
                s["group"], s["version"] = sg, sv
            out.append(s)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _groups() -> dict[str, list[str]]:
    """Group -> its versions, preferred first, in discovery order (core is ``""``)."""
    out: dict[str, list[str]] = {}
    for group, version in group_versions():
        out.setdefault(group, []).append(version)
    return out


def api_group(group: str) -> Obj | None:
    versions = _groups().get(group) if group else None
    if not versions:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list() -> Obj:
    groups = [api_group(g) for g in _groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{k: v for k, v in g.items() if k not in ("kind", "apiVersion")} for g in groups if g]}


def _aggregated_resource(r: ResourceType) -> Obj:
    entry: Obj = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    if r.subresources:
        subs = []
        for sub in r.subresources:
            (sg, sv, sk), verbs = SUBRESOURCE_KINDS[sub]
            kind = {"group": sg, "version": sv, "kind": sk} if sk else {"group": r.group, "version": r.version,
                                                                        "kind": r.kind}
            subs.append({"subresource": sub, "responseKind": kind, "verbs": list(verbs)})
        entry["subresources"] = subs
    return entry


def aggregated(core: bool) -> Obj:
    """``/api`` (core=True) or ``/apis`` as an APIGroupDiscoveryList."""
    items = []
    for group, versions in _groups().items():
        if (group == "") != core:
            continue
        items.append({
            "metadata": {"name": group, "creationTimestamp": None},
            "versions": [{"version": version, "resources": [_aggregated_resource(r) for r in _resources(group, version)],
                          "freshness": "Current"} for version in versions],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


# ---------------------------------------------------------------------------------------------------
# OpenAPI v3

def _param(name: str, description: str, where: str = "query", schema: Obj | None = None) -> Obj:
    p: Obj = {"name": name, "in": where, "description": description, "schema": schema or {"type": "string"}}
    if where == "path":
        p["required"] = True
    return p


_WRITE_PARAMS = [
    _param("dryRun", "When present, indicates that modifications should not be persisted."),
    _param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these "
                           "changes."),
    _param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
                              "containing unknown or duplicate fields. Valid values are: Ignore, Warn (the "
                              "default), Strict."),
]
_LIST_PARAMS = [_param(n, n) for n in ("labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                                       "resourceVersionMatch", "timeoutSeconds", "watch",
                                       "allowWatchBookmarks", "sendInitialEvents")]


def _op(r: ResourceType, action: str, schema: Obj, params: list[Obj], body: bool = False,
        patch: bool = False, kind: tuple[str, str, str] | None = None) -> Obj:
    g, v, k = kind or (r.group, r.version, r.kind)
    content = {"application/json": {"schema": schema}}
    op: Obj = {
        "description": f"{action} {k}",
        "operationId": f"{action}{k}",
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": content}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": k},
    }
    if body:
        # custom resources take no strategic merge patch: kubectl apply then sends a JSON merge patch
        types = ([t for t in ("application/json-patch+json", "application/merge-patch+json",
                              "application/strategic-merge-patch+json", "application/apply-patch+yaml")
                  if r.builtin or "strategic" not in t] if patch else ["*/*"])
        op["requestBody"] = {"content": {t: {"schema": ref(META + "Patch") if patch else schema} for t in types},
                             "required": True}
    return op


def openapi_paths(group: str, version: str) -> Obj:
    paths: Obj = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for r in _resources(group, version):
        schema = ref(r.schema)
        base = f"{prefix}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{prefix}/{r.plural}"
        ns_param = [_param("namespace", "object name and auth scope", "path")] if r.namespaced else []
        name_param = [_param("name", f"name of the {r.kind}", "path")]
        collection: Obj = {"parameters": ns_param}
        if "create" in r.verbs:
            collection["post"] = _op(r, "post", schema, _WRITE_PARAMS, body=True)
        if "list" in r.verbs:
            collection["get"] = _op(r, "list", {"type": "object"}, _LIST_PARAMS)
        paths[base] = collection
        if "get" not in r.verbs:
            continue
        item: Obj = {"parameters": ns_param + name_param,
                     "get": _op(r, "get", schema, []),
                     "put": _op(r, "put", schema, _WRITE_PARAMS, body=True),
                     "patch": _op(r, "patch", schema, _WRITE_PARAMS, body=True, patch=True),
                     "delete": _op(r, "delete", ref(META + "Status"), [_param("gracePeriodSeconds", "grace"),
                                                                         _param("propagationPolicy", "policy")])}
        paths[f"{base}/{{name}}"] = item
        for sub in r.subresources:
            if sub not in ("status", "scale"):
                continue
            kind = ("autoscaling", "v1", "Scale") if sub == "scale" else None
            sub_schema = ref("io.k8s.api.autoscaling.v1.Scale") if sub == "scale" else schema
            paths[f"{base}/{{name}}/{sub}"] = {
                "parameters": ns_param + name_param,
                "get": _op(r, "get", sub_schema, [], kind=kind),
                "put": _op(r, "put", sub_schema, _WRITE_PARAMS, body=True, kind=kind),
                "patch": _op(r, "patch", sub_schema, _WRITE_PARAMS, body=True, patch=True, kind=kind),
            }
    return paths


def openapi_document(group: str, version: str) -> Obj:
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": openapi_paths(group, version),
        "components": {"schemas": SCHEMAS},
    }


def openapi_gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def openapi_hash(group: str, version: str) -> str:
    """Content hash for the document URL (the documents are static, so computed once)."""
    doc = json.dumps(openapi_document(group, version), sort_keys=True).encode()
    return hashlib.sha512(doc).hexdigest()[:128].upper()


def openapi_root() -> Obj:
    paths = {}
    for group, version in group_versions():
        key = openapi_gv_key(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={openapi_hash(group, version)}"}
    return {"paths": paths}
