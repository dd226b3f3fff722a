"""API semantics on top of the store: create, read, list, update, patch and delete as kube-apiserver
does them, shared by the HTTP layer and the in-process controllers.

What lives here: optimistic concurrency (409 on a stale resourceVersion), AlreadyExists / NotFound,
generation bumps on spec changes, status-vs-spec separation for resources with a ``status``
subresource, the ``scale`` subresource, graceful pod deletion (``deletionTimestamp``), finalizers,
cascading deletion through ``ownerReferences`` (the garbage collector's job), ``dryRun``, namespace
lifecycle checks and list pagination. Objects are stored in one version; the others are converted
(:mod:`autoscaler.sandbox.conversion`), and defaults apply to the stored form.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from autoscaler.sandbox import conversion, errors
from autoscaler.sandbox.errors import ApiError
from autoscaler.sandbox.patch import MalformedPatch, PatchError, json_patch, merge_patch, strategic_merge_patch
from autoscaler.sandbox.resources import NAMESPACES, PODS, RESOURCES, ResourceType
from autoscaler.sandbox.schemas import SCHEMAS, resolve
from autoscaler.sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    field_value,
    from_label_selector_object,
)
from autoscaler.sandbox.store import Store, clone
from autoscaler.sandbox.validation import apply_defaults, decode, parse_json, validate, validate_scale

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH]
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
SCALE_SCHEMA = "io.k8s.api.autoscaling.v1.Scale"
RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated names


def now_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(RANDOM_ALPHABET) for _ in range(n))


def _primary(storage: str) -> ResourceType:
    return next(r for r in RESOURCES if r.storage_key == storage)


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ representation
    def external(self, rt: ResourceType, stored: Obj, *, with_type: bool = True) -> Obj:
        """The stored object as ``rt``'s apiVersion presents it."""
        body = conversion.to_version(rt, clone(stored))
        if not with_type:
            return body
        return {"kind": rt.kind, "apiVersion": rt.api_version, **body}

    @staticmethod
    def _to_storage(rt: ResourceType, obj: Obj, current: Obj | None = None) -> Obj:
        return conversion.to_storage(rt, obj, current)

    def _from_storage(self, rt: ResourceType, stored: Obj) -> Obj:
        return self.external(rt, stored, with_type=False)

    # ------------------------------------------------------------------ reads
    def get_stored(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(rt.storage_key, ns if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def get(self, rt: ResourceType, ns: str, name: str, subresource: str = "") -> Obj:
        stored = self.get_stored(rt, ns, name)
        if subresource == "scale":
            return self.scale_of(stored)
        return self.external(rt, stored)

    def matches(self, rt: ResourceType, stored: Obj, labels: LabelSelector, fields: FieldSelector) -> bool:
        if not labels.matches(stored["metadata"].get("labels")):
            return False
        return fields.matches(stored, field_value)

    def list_objects(self, rt: ResourceType, ns: str | None, labels: LabelSelector, fields: FieldSelector,
             limit: int = 0, cont: str = "") -> Obj:
        rv = self.store.resource_version
        start = ""
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                rv, start = int(token["rv"]), str(token["start"])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise errors.bad_request(f"continue key is not valid: {exc}") from exc
            if rv < self.store.compacted_rv:
                raise errors.gone("The provided continue parameter is too old to display a consistent list "
                                  "result. You can start a new list without the continue parameter.")
        items: list[Obj] = []
        remaining = 0
        last = ""
        for stored in self.store.iter(rt.storage_key, ns):
            meta = stored["metadata"]
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            if start and key <= start:
                continue
            if not self.matches(rt, stored, labels, fields):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(self.external(rt, stored, with_type=not rt.builtin))
            last = key
        meta_out: Obj = {"resourceVersion": str(rv)}
        if remaining:
            meta_out["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "start": last}).encode()).decode()
            if labels.empty and not fields.requirements:
                meta_out["remainingItemCount"] = remaining
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta_out, "items": items}

    # ------------------------------------------------------------------ helpers
    def _check_namespace(self, rt: ResourceType, ns: str, name: str) -> None:
        if not rt.namespaced:
            return
        nso = self.store.get("/namespaces", "", ns)
        if nso is None:
            raise errors.not_found("", "namespaces", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(rt.group, rt.plural, name, f"unable to create new content in namespace {ns} "
                                   "because it is being terminated")

    def _place(self, rt: ResourceType, ns: str, obj: Obj) -> None:
        meta = obj["metadata"]
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)

    @staticmethod
    def _content(obj: Obj) -> Obj:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

    # ------------------------------------------------------------------ create
    def create(self, rt: ResourceType, ns: str, body: Any, *, dry_run: bool = False,
               field_validation: str = "Warn", managed: list[Obj] | None = None,
               field_manager: str = "") -> tuple[Obj, list[str]]:
        """Create; ``managed``: the ``managedFields`` the server records (server-side apply's), not the client's;
        else, with a ``field_manager``, its ``Update`` entry of the fields the object sets."""
        obj, warnings = decode(rt, body, field_validation)
        self._place(rt, ns, obj)
        meta = obj["metadata"]
        if rt.kind == "SelfSubjectAccessReview":  # a sandbox authorises everything
            obj["status"] = {"allowed": True, "reason": "the sandbox allows every request"}
            meta.setdefault("creationTimestamp", None)
            return {"kind": rt.kind, "apiVersion": rt.api_version, **obj}, warnings
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{random_suffix()}"
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        causes = validate(rt, obj)
        if causes:
            raise errors.invalid(rt.group, rt.kind, meta.get("name", ""), causes)
        self._check_namespace(rt, ns, meta["name"])
        if self.store.exists(rt.storage_key, meta.get("namespace", ""), meta["name"]):
            raise errors.already_exists(rt.group, rt.plural, meta["name"])
        if rt.has_status:
            obj.pop("status", None)
        if not managed and field_manager:  # what the request sets, not the defaults
            fields = fields_v1(_owned_content(obj))
            managed = [_entry(field_manager, "Update", rt.api_version, fields)] if fields else None
        stored = self._prepare_new(rt, obj)
        _set_managed(stored, managed)
        if dry_run:
            return self.external(rt, stored), warnings
        return self.external(rt, self.store.add(rt.storage_key, stored)), warnings

    def _prepare_new(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_time()
        if rt.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        stored = self._to_storage(rt, obj)
        apply_defaults(_primary(rt.storage_key), stored)
        if rt.kind == "Pod":
            stored["status"] = {"phase": "Pending", "qosClass": _qos_class(stored.get("spec") or {})}
        return stored

    def system_create(self, rt: ResourceType, obj: Obj) -> Obj:
        """Create on behalf of a controller (no admission, status kept); returns the stored copy."""
        status = obj.get("status")
        stored = self._prepare_new(rt, clone(obj))
        if status is not None and rt.kind != "Pod":
            stored["status"] = status
        return self.store.add(rt.storage_key, stored)

    # ------------------------------------------------------------------ update
    def update(self, rt: ResourceType, ns: str, name: str, body: Any, *, subresource: str = "",
               dry_run: bool = False, field_validation: str = "Warn", field_manager: str = "",
               applied: Obj | None = None, force: bool = False) -> tuple[Obj, list[str]]:
        """Update (PUT, and every patch once merged). ``managedFields`` are the server's: with a ``field_manager``,
        the fields this write changes move to its ``Update`` entry (``subresource`` ``scale`` for ``/scale``), or,
        for a server-side apply, its ``applied`` entry holds what it applied; either way other managers' entries
        lose the fields changed (an apply that sets a field to the value it has shares it). An apply that changes
        a field another manager owns is a 409 Conflict naming them, unless ``force``d; an update never conflicts."""
        current = self.get_stored(rt, ns, name)
        if subresource == "scale":
            scale, warnings = decode(rt, body, field_validation, SCALE_SCHEMA,
                                     "Scale", "autoscaling/v1")
            return self._update_scale(rt, current, scale, name, dry_run, field_manager), warnings
        obj, warnings = decode(rt, body, field_validation)
        meta = obj["metadata"]
        if meta.get("name") not in (None, "", name):
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on "
                                     f"the URL ({name})")
        meta["name"] = name
        self._place(rt, ns, obj)
        obj = self._to_storage(rt, obj, current)
        self._check_rv(rt, current, meta.get("resourceVersion"))
        if subresource == "status":
            new = clone(current)
            new["status"] = obj.get("status") or {}
        else:
            new = obj
            if rt.has_status:
                if "status" in current:
                    new["status"] = current["status"]
                else:
                    new.pop("status", None)
        managed = (current.get("metadata") or {}).get("managedFields")
        if subresource != "status" and field_manager:
            changed = _changed(_owned_content(current), _owned_content(new))
            if applied is not None and not force:
                conflicts = _conflicts(managed, (field_manager, "Apply", ""), changed)
                if conflicts:
                    raise errors.apply_conflict(conflicts)
            managed = _owned(managed, applied, field_manager, rt.api_version, "", changed)
        _set_managed(new, managed)
        return self.external(rt, self._write_update(rt, current, new, dry_run)), warnings

    def _check_rv(self, rt: ResourceType, current: Obj, rv: Any) -> None:
        if rv and str(rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, current["metadata"]["name"], errors.STALE)

    def _write_update(self, rt: ResourceType, current: Obj, new: Obj, dry_run: bool) -> Obj:
        cur_meta, meta = current["metadata"], new["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                    "namespace", "name", "generation", "resourceVersion"):
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("selfLink", None)
        apply_defaults(_primary(rt.storage_key), new)
        external_old = self._from_storage(rt, current)
        causes = validate(rt, self._from_storage(rt, new), external_old)
        if causes:
            raise errors.invalid(rt.group, rt.kind, meta["name"], causes)
        if rt.generation and self._content(new) != self._content(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        if new == current:  # no-op updates do not get a new resourceVersion
            return current
        if dry_run:
            return new
        if cur_meta.get("deletionTimestamp") and not meta.get("finalizers") and cur_meta.get("finalizers"):
            if rt.kind != "Pod" or not cur_meta.get("deletionGracePeriodSeconds"):
                self.store.replace(rt.storage_key, new)
                return self._remove(rt, new, "Background") or new
        return self.store.replace(rt.storage_key, new)

    def system_update(self, rt: ResourceType, obj: Obj) -> Obj:
        """Write on behalf of a controller: no checks; skipped when nothing changed."""
        meta = obj["metadata"]
        current = self.store.get(rt.storage_key, meta.get("namespace", ""), meta["name"])
        if current is None:
            raise errors.not_found(rt.group, rt.plural, meta["name"])
        obj = clone(obj)
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if obj == current:
            return current
        return self.store.replace(rt.storage_key, obj)

    # ------------------------------------------------------------------ scale subresource
    def scale_of(self, stored: Obj) -> Obj:
        meta = stored["metadata"]
        spec = stored.get("spec") or {}
        selector = from_label_selector_object(spec.get("selector"))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)} if spec.get("replicas") else {},
            "status": {"replicas": (stored.get("status") or {}).get("replicas", 0), "selector": str(selector)},
        }

    def _update_scale(self, rt: ResourceType, current: Obj, scale: Obj, name: str, dry_run: bool,
                      field_manager: str = "") -> Obj:
        meta = scale["metadata"]
        if meta.get("name") not in (None, "", name):
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on "
                                     f"the URL ({name})")
        self._check_rv(rt, current, meta.get("resourceVersion"))
        causes = validate_scale(scale)
        if causes:
            raise errors.invalid("autoscaling", "Scale", name, causes)
        new = clone(current)
        new.setdefault("spec", {})["replicas"] = int((scale.get("spec") or {}).get("replicas", 0))
        if new["spec"]["replicas"] != (current.get("spec") or {}).get("replicas"):
            _set_managed(new, _owned(current["metadata"].get("managedFields"), None, field_manager, rt.api_version,
                                     "scale", {"f:spec": {"f:replicas": {}}}))
        return self.scale_of(self._write_update(rt, current, new, dry_run))

    # ------------------------------------------------------------------ patch
    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, raw: bytes, *,
              subresource: str = "", dry_run: bool = False, field_validation: str = "Warn",
              field_manager: str = "", default_manager: str = "", force: bool = False) -> tuple[Obj, list[str]]:
        """Patch. Server-side apply (``application/apply-patch+yaml``) merges the configuration like a merge patch
        and needs a ``field_manager``; it records the fields it applied as that manager's ``Apply`` entry in
        ``managedFields``, takes those it changes from the other managers (a 409 Conflict unless ``force``: see
        :meth:`update`), and removes the fields it applied before and no longer does that no other manager owns
        (defaults then apply: ``spec.replicas`` dropped from a manifest goes back to 1). Other patches name
        ``field_manager``, else ``default_manager`` (the User-Agent's)."""
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type, PATCH_TYPES)
        if content_type == APPLY_PATCH and not field_manager:
            raise errors.bad_request("PATCH, application/apply-patch+yaml requests must include the fieldManager "
                                     "query parameter")
        field_manager = field_manager or default_manager
        if content_type == STRATEGIC_PATCH and not rt.builtin:
            raise errors.unsupported_media_type(content_type, [JSON_PATCH, MERGE_PATCH, APPLY_PATCH])
        try:
            doc = yaml.safe_load(raw) if content_type == APPLY_PATCH else parse_json(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        stored = self.store.get(rt.storage_key, ns if rt.namespaced else "", name)
        applied = None
        if content_type == APPLY_PATCH and isinstance(doc, dict):
            applied = _entry(field_manager, "Apply", rt.api_version, fields_v1(doc))
        if stored is None:
            if content_type == APPLY_PATCH and not subresource:  # server-side apply creates
                return self.create(rt, ns, doc, dry_run=dry_run, field_validation=field_validation,
                                   managed=[applied] if applied else None)
            raise errors.not_found(rt.group, rt.plural, name)
        base = self.get(rt, ns, name, subresource)
        try:
            if content_type == JSON_PATCH:
                patched = json_patch(base, doc)
            elif content_type == STRATEGIC_PATCH:
                schema = SCHEMAS[SCALE_SCHEMA if subresource == "scale" else rt.schema]
                patched = strategic_merge_patch(base, doc, schema, resolve)
            else:  # merge patch; apply configurations are merged the same way here
                if not isinstance(doc, dict):
                    raise MalformedPatch("merge patch must be a JSON object")
                patched = merge_patch(base, doc)
                if applied is not None and not subresource:
                    _drop_unapplied(patched, (stored.get("metadata") or {}).get("managedFields"), applied)
        except MalformedPatch as exc:
            raise errors.bad_request(str(exc)) from exc
        except PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        # ``base`` carries the current resourceVersion, so only a patch that sets another one conflicts
        return self.update(rt, ns, name, patched, subresource=subresource, dry_run=dry_run,
                           field_validation=field_validation, field_manager=field_manager, applied=applied,
                           force=force)

    # ------------------------------------------------------------------ delete
    def delete(self, rt: ResourceType, ns: str, name: str, options: Obj | None = None, *,
               dry_run: bool = False) -> tuple[Obj, int]:
        """Delete; returns (response body, HTTP code). Pods and objects with finalizers are deleted
        gracefully: they get a ``deletionTimestamp`` now and disappear later."""
        opts = options or {}
        current = self.get_stored(rt, ns, name)
        meta = current["metadata"]
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(rt.group, rt.plural, name, f"Precondition failed: UID in precondition: "
                                  f"{pre['uid']}, UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(rt.group, rt.plural, name, "Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{meta.get('resourceVersion')}")
        if rt is NAMESPACES and name in IMMORTAL_NAMESPACES:
            raise errors.forbidden("", "namespaces", name, "this namespace may not be deleted")
        if dry_run:
            return self.external(rt, current), 200
        propagation = str(opts.get("propagationPolicy") or ("Orphan" if opts.get("orphanDependents") else
                                                             "Background"))
        grace = opts.get("gracePeriodSeconds")
        if rt is NAMESPACES:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_time()
                current.setdefault("status", {})["phase"] = "Terminating"
                current = self.store.replace(rt.storage_key, current)
            return self.external(rt, current), 200
        if rt.storage_key == PODS.storage_key:
            spec, status = current.get("spec") or {}, current.get("status") or {}
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            grace = max(int(grace), 0)
            if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
                grace = 0
            if grace > 0:
                if meta.get("deletionTimestamp") and int(meta.get("deletionGracePeriodSeconds", 0)) <= grace:
                    return self.external(rt, current), 200
                meta["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=grace)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
                meta["deletionGracePeriodSeconds"] = grace
                return self.external(rt, self.store.replace(rt.storage_key, current)), 200
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_time()
                meta["deletionGracePeriodSeconds"] = 0
                current = self.store.replace(rt.storage_key, current)
            return self.external(rt, current), 200
        final = self._remove(rt, current, propagation) or current
        if rt.return_deleted:
            return self.external(rt, final), 200
        details: Obj = {"name": name, "kind": rt.plural, "uid": meta.get("uid")}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}, 200

    def _remove(self, rt: ResourceType, obj: Obj, propagation: str) -> Obj | None:
        meta = obj["metadata"]
        final = self.store.remove(rt.storage_key, meta.get("namespace", ""), meta["name"])
        if final is not None:
            self._collect_dependents(str(meta.get("uid")), propagation)
        return final

    def _collect_dependents(self, uid: str, propagation: str) -> None:
        """The garbage collector: dependents of a deleted owner are deleted, or orphaned."""
        for storage in self.store.storages():
            dep_rt = _primary(storage)
            for dep in self.store.list_objects(storage):
                refs = dep["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                if propagation == "Orphan":
                    dep["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not dep["metadata"]["ownerReferences"]:
                        del dep["metadata"]["ownerReferences"]
                    self.system_update(dep_rt, dep)
                else:
                    try:
                        self.delete(dep_rt, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                                    {"propagationPolicy": "Background"})
                    except ApiError:
                        pass

    def finalize_delete(self, rt: ResourceType, ns: str, name: str) -> Obj | None:
        """Remove an object whose graceful deletion is over (the kubelet's final delete)."""
        current = self.store.get(rt.storage_key, ns, name)
        if current is None:
            return None
        if current["metadata"].get("finalizers"):
            current["metadata"]["deletionGracePeriodSeconds"] = 0
            self.store.replace(rt.storage_key, current)
            return None
        return self._remove(rt, current, "Background")

    def delete_collection(self, rt: ResourceType, ns: str | None, labels: LabelSelector, fields: FieldSelector,
                          options: Obj | None, *, dry_run: bool = False) -> Obj:
        items = []
        for stored in self.store.list_objects(rt.storage_key, ns):
            if not self.matches(rt, stored, labels, fields):
                continue
            meta = stored["metadata"]
            try:
                body, _ = self.delete(rt, meta.get("namespace", ""), meta["name"], options, dry_run=dry_run)
            except ApiError:
                continue
            items.append(body if body.get("kind") != "Status" else self.external(rt, stored, with_type=False))
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items}


def _qos_class(spec: Obj) -> str:
    requests_any = limits_all = False
    guaranteed = True
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
        limits_all = True
    if guaranteed and limits_all:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"


def parse_body(raw: bytes, content_type: str) -> Any:
    """Request body as JSON (default, also without Content-Type) or YAML; 400 when malformed."""
    if not raw.strip():
        raise errors.bad_request("the request body is empty")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return parse_json(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


_MISSING = object()


def fields_v1(config: Obj) -> Obj:
    """The field set (``FieldsV1``) of an applied configuration, as ``managedFields`` records it: ``f:<name>`` for
    each field it sets, nested; an item of a list keyed by ``name`` is ``k:{"name":...}``; other lists and scalars
    are leaves. The object's identity (apiVersion, kind, name, namespace) is not a managed field."""
    def walk(value: Any, top: bool = False) -> Obj:
        out: Obj = {}
        if isinstance(value, dict):
            for key, v in value.items():
                if top and key in ("apiVersion", "kind"):
                    continue
                if top and key == "metadata" and isinstance(v, dict):
                    v = {k: x for k, x in v.items() if k not in ("name", "namespace")}
                    if not v:
                        continue
                out[f"f:{key}"] = walk(v)
        elif (named := _named(value)) is not None:
            for key, item in named.items():
                out[key] = walk(item)
        return out
    return walk(config, top=True)


_UNOWNED_META = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                 "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


def _owned_content(obj: Obj) -> Obj:
    """What of an object fields can be owned of: all but its status and the server's metadata."""
    out = {k: v for k, v in obj.items() if k not in ("status", "apiVersion", "kind")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _UNOWNED_META}
    if meta:
        out["metadata"] = meta
    else:
        out.pop("metadata", None)
    return out


def _named(value: Any) -> dict[str, Any] | None:
    """A list keyed by ``name`` (containers, env, ports) as ``k:`` field keys to its items; None for other values."""
    if isinstance(value, list) and value and all(isinstance(i, dict) and "name" in i for i in value):
        return {"k:" + json.dumps({"name": i["name"]}, separators=(",", ":")): i for i in value}
    return None


def _changed(old: Any, new: Any) -> Obj:
    """The field set (as :func:`fields_v1`) of what ``new`` sets differently from ``old`` (removals aside); a list
    keyed by ``name`` is compared item by item."""
    if isinstance(old, dict) and isinstance(new, dict):
        pairs = [(f"f:{key}", old.get(key, _MISSING), v) for key, v in new.items()]
    else:
        olds, news = _named(old), _named(new)
        if olds is None or news is None:
            return {}
        pairs = [(key, olds.get(key, _MISSING), v) for key, v in news.items()]
    out: Obj = {}
    for key, before, after in pairs:
        if before is _MISSING:
            out[key] = fields_v1(after) if isinstance(after, dict) else {}
        elif before != after:
            out[key] = _changed(before, after)
    return out


def _entry(manager: str, operation: str, api_version: str, fields: Obj, subresource: str = "") -> Obj:
    return {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now_time(),
            "fieldsType": "FieldsV1", "fieldsV1": fields, **({"subresource": subresource} if subresource else {})}


def _without(fields: Obj, taken: Obj) -> Obj:
    """``fields`` less the leaves in ``taken`` (a field taken whole takes what is under it)."""
    out: Obj = {}
    for key, sub in fields.items():
        if key not in taken:
            out[key] = sub
        elif taken[key] and sub:
            rest = _without(sub, taken[key])
            if rest:
                out[key] = rest
    return out


def _union(a: Obj, b: Obj) -> Obj:
    out = dict(a)
    for key, sub in b.items():
        out[key] = _union(out[key], sub) if key in out else sub
    return out


def _identity(entry: Obj) -> tuple[Any, Any, Any]:
    """Who a ``managedFields`` entry is: its manager, operation and subresource."""
    return entry.get("manager"), entry.get("operation"), entry.get("subresource", "")


def _leaves(fields: Obj, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, sub in fields.items():
        if sub:
            yield from _leaves(sub, (*prefix, key))
        else:
            yield (*prefix, key)


def _holds(fields: Obj, path: tuple[str, ...]) -> bool:
    """``fields`` own ``path``: the field itself, a leaf above it (owned whole) or something under it."""
    node = fields
    for key in path:
        if key not in node:
            return False
        node = node[key]
        if not node:
            return True
    return True


def _path_text(path: tuple[str, ...]) -> str:
    """A field path as kube-apiserver prints it: ``.spec.template.spec.containers[name="triton"].image``."""
    out = ""
    for key in path:
        if key.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(key[2:]).items()) + "]"
        else:
            out += "." + key.removeprefix("f:")
    return out


def _manager_text(entry: Obj) -> str:
    """A manager as a conflict names it: ``"kubectl" with subresource "scale" using apps/v1`` (Update entries say
    their API version, Apply entries only the name)."""
    text = json.dumps(entry.get("manager", ""))
    if entry.get("subresource"):
        text += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == "Update":
        text += f" using {entry.get('apiVersion', '')}"
    return text


def _conflicts(managed: list[Obj] | None, applier: tuple[str, str, str], changed: Obj) -> list[tuple[str, str]]:
    """(manager, field path) of each changed field that a manager other than the ``applier`` owns."""
    paths = list(_leaves(changed))
    return [(_manager_text(m), _path_text(path)) for m in managed or [] if _identity(m) != applier
            for path in paths if _holds(m.get("fieldsV1") or {}, path)]


def _drop_unapplied(obj: Obj, managed: list[Obj] | None, applied: Obj) -> None:
    """Remove from ``obj`` the fields the applier's previous apply set and this one does not, where no other manager
    owns them (a server-side apply's configuration is the whole of what its manager wants)."""
    key = _identity(applied)
    before = next((m.get("fieldsV1") or {} for m in managed or [] if _identity(m) == key), {})
    others = [m.get("fieldsV1") or {} for m in managed or [] if _identity(m) != key]
    for path in _leaves(_without(before, applied["fieldsV1"])):
        if not any(_holds(o, path) for o in others):
            _remove_path(obj, path)


def _remove_path(obj: Any, path: tuple[str, ...]) -> None:
    *parents, last = path
    node = obj
    for key in parents:
        node = _child(node, key)
        if node is None:
            return
    if last.startswith("k:") and isinstance(node, list):
        item = _child(node, last)
        if item is not None:
            node.remove(item)
    elif isinstance(node, dict):
        node.pop(last.removeprefix("f:"), None)


def _child(node: Any, key: str) -> Any:
    if key.startswith("k:"):
        return (_named(node) or {}).get(key)
    return node.get(key.removeprefix("f:")) if isinstance(node, dict) else None


def _set_managed(obj: Obj, managed: list[Obj] | None) -> None:
    """Record ``managed`` as the object's ``managedFields`` (none: the key goes)."""
    obj["metadata"].pop("managedFields", None)
    if managed:
        obj["metadata"]["managedFields"] = managed


def _owned(managed: list[Obj] | None, applied: Obj | None, manager: str, api_version: str, subresource: str,
           changed: Obj) -> list[Obj] | None:
    """``managedFields`` after a write: ``applied`` (a server-side apply's entry) replaces its manager's Apply
    entry; else the ``changed`` fields join ``manager``'s Update entry. Others lose the fields changed (an apply of
    a field's current value shares it); entries left with none go. Unchanged without a manager, or for an update
    that changes nothing."""
    if not manager or (applied is None and not changed):
        return managed
    key = (manager, "Apply" if applied is not None else "Update", subresource)
    out: list[Obj] = []
    mine: Obj | None = None
    for m in managed or []:
        if _identity(m) == key:
            mine = m
            continue
        rest = _without(m.get("fieldsV1") or {}, changed)
        if rest:
            out.append({**m, "fieldsV1": rest})
    if applied is not None:
        out.append(applied)
    else:
        fields = _union(mine.get("fieldsV1") or {}, changed) if mine else changed
        out.append(_entry(manager, "Update", api_version, fields, subresource))
    return out
