"""The three PATCH flavours of the Kubernetes API, on plain JSON values.

* JSON merge patch (RFC 7386, ``application/merge-patch+json``): maps merge, ``null`` deletes, lists
  are replaced whole.
* Strategic merge patch (``application/strategic-merge-patch+json``): merge patch, but lists of
  structs with a patch merge key (containers by ``name``, ports by ``containerPort``, conditions by
  ``type``, ...) are merged element by element, and the ``$patch``, ``$deleteFromPrimitiveList``,
  ``$setElementOrder`` and ``$retainKeys`` directives are honoured. Merge keys come from the kind's
  schema (``x-kubernetes-patch-merge-key``, e.g. a Service's ``ports`` by ``port``) when it declares
  one, else from the field name (a container's ``ports`` by ``containerPort``).
* JSON patch (RFC 6902, ``application/json-patch+json``): add, remove, replace, move, copy, test.

Errors raise :class:`PatchError`; the API server maps malformed patches to 400 and patches that do
not apply to 422, as kube-apiserver does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any


class PatchError(Exception):
    """The patch does not apply to the document (HTTP 422)."""


class MalformedPatch(Exception):
    """The patch document itself is not a valid patch (HTTP 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------------
# strategic merge

# field name -> patch merge key, as declared on the built-in API types (patchStrategy=merge).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "podIPs": "ip",
    "hostIPs": "ip",
}
# lists of scalars merged as sets (patchStrategy=merge on a []string)
MERGE_PRIMITIVE_LISTS = frozenset({"finalizers"})

_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


Schema = dict[str, Any]
Resolve = Callable[[Schema], Schema]


def strategic_merge_patch(target: Any, patch: Any, schema: Schema, resolve: Resolve) -> Any:
    """Kubernetes strategic merge patch of ``patch`` onto ``target`` (neither is modified). ``schema`` is
    the kind's OpenAPI schema, with ``resolve`` following its ``$ref``s."""
    if not isinstance(patch, dict):
        raise MalformedPatch("strategic merge patch must be a JSON object")
    return _smp_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch,
                    _Schema(resolve(schema), resolve))


class _Schema:
    """Where the merge is in the kind's schema (an empty schema when unknown)."""

    def __init__(self, schema: Schema, resolve: Resolve) -> None:
        self.schema, self.resolve = schema, resolve

    def field(self, name: str) -> _Schema:
        sub = (self.schema.get("properties") or {}).get(name)
        if sub is None and isinstance(self.schema.get("additionalProperties"), dict):
            sub = self.schema["additionalProperties"]
        return _Schema(self.resolve(sub) if isinstance(sub, dict) else {}, self.resolve)

    def items(self) -> _Schema:
        sub = self.schema.get("items")
        return _Schema(self.resolve(sub) if isinstance(sub, dict) else {}, self.resolve)

    def merge_key(self, field: str) -> str | None:
        declared = self.schema.get("x-kubernetes-patch-merge-key")
        return str(declared) if declared else MERGE_KEYS.get(field)


def _smp_map(original: dict[str, Any], patch: dict[str, Any], schema: _Schema) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}")
    retain = patch.get("$retainKeys")
    result = original
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_SET_ORDER):
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if not isinstance(value, list):
                raise MalformedPatch(f"{key} must be a list")
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        cur = result.get(key)
        if isinstance(value, dict):
            merged = _smp_map(copy.deepcopy(cur) if isinstance(cur, dict) else {}, value, schema.field(key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, cur if isinstance(cur, list) else [], value, schema.field(key))
        else:
            result[key] = copy.deepcopy(value)
    if retain is not None:
        if not isinstance(retain, list):
            raise MalformedPatch("$retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(field: str, original: list[Any], patch: list[Any], schema: _Schema) -> list[Any]:
    # a {"$patch": "replace"} element replaces the whole list with the other elements
    if any(isinstance(e, dict) and e.get("$patch") == "replace" for e in patch):
        return [copy.deepcopy(e) for e in patch if not (isinstance(e, dict) and e.get("$patch") == "replace")]
    key = schema.merge_key(field)
    items = schema.items()
    if field in MERGE_PRIMITIVE_LISTS:
        out = list(original)
        for v in patch:
            if v not in out:
                out.append(copy.deepcopy(v))
        return out
    if key is None or not all(isinstance(e, dict) for e in patch):
        return copy.deepcopy(patch)
    out = [copy.deepcopy(e) for e in original]
    for elem in patch:
        if key not in elem:
            raise PatchError(f"map: {elem} does not contain declared merge key: {key}")
        idx = next((i for i, e in enumerate(out) if isinstance(e, dict) and e.get(key) == elem[key]), None)
        if elem.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            merged = _smp_map({}, elem, items)
            if merged is not None:
                out.append(merged)
        else:
            merged = _smp_map(out[idx], elem, items)
            if merged is None:
                out.pop(idx)
            else:
                out[idx] = merged
    return out


# ---------------------------------------------------------------------------------------------------
# JSON patch

def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise MalformedPatch(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'JSON pointer must start with "/": {path!r}')
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise PatchError(f"array index {i} out of bounds")
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"doc is missing path: {path}")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, allow_end=False)]
        else:
            raise PatchError(f"doc is missing path: {path}")
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing path: {path}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise PatchError(f"doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        parent.pop(_index(parent, last, allow_end=False))
    else:
        raise PatchError(f"doc is missing path: {path}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; the target is not modified."""
    if not isinstance(operations, list):
        raise MalformedPatch("json patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise MalformedPatch(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op.get("path")
        if not isinstance(path, str):
            raise MalformedPatch(f'json patch operation "{kind}" needs a string "path"')
        if kind in ("add", "replace", "test") and "value" not in op:
            raise MalformedPatch(f'json patch operation "{kind}" needs a "value"')
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            tokens = _pointer(path)
            if not tokens:
                doc = copy.deepcopy(op["value"])
            else:
                parent = _parent(doc, tokens, path)
                if isinstance(parent, list):
                    parent[_index(parent, tokens[-1], allow_end=False)] = copy.deepcopy(op["value"])
                else:
                    parent[tokens[-1]] = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str):
                raise MalformedPatch(f'json patch operation "{kind}" needs a string "from"')
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                if path.startswith(src + "/"):
                    raise PatchError("cannot move a value into one of its children")
                doc = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed")
        else:
            raise MalformedPatch(f"Unexpected kind: {kind}")
    return doc
