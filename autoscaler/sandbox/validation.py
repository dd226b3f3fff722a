"""Decoding, defaulting and validation of request bodies, as kube-apiserver does them.

* :func:`parse_json` keeps track of duplicate keys (the real decoder reports them under
  ``fieldValidation=Strict``/``Warn``).
* :func:`decode` walks the body against the kind's OpenAPI schema: a value of the wrong type is a 400
  ("cannot be handled as a Deployment"), unknown and duplicate fields are rejected (Strict, 400),
  reported in ``Warning`` headers (Warn, the default) or silently dropped (Ignore). Unknown fields never
  reach storage, as with the Go structs of the real server.
* :func:`apply_defaults` fills in the defaults the real server fills in (replicas, strategy, pod spec
  defaults, ...).
* :func:`validate` returns the 422 causes (names, selectors, required fields, immutable fields).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from autoscaler.sandbox import conversion
from autoscaler.sandbox.errors import ApiError, bad_request
from autoscaler.sandbox.resources import ResourceType
from autoscaler.sandbox.schemas import RBAC_GROUP, SCHEMAS, resolve
from autoscaler.sandbox.selectors import from_label_selector_object

Obj = dict[str, Any]
Cause = tuple[str, str, str]  # (field, reason, message)

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                  "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                 "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                 "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


class _Dict(dict[str, Any]):
    """A JSON object that remembers which keys appeared more than once."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Dict:
    d = _Dict()
    d.dups = []
    for k, v in pairs:
        if k in d:
            d.dups.append(k)
        d[k] = v
    return d


def parse_json(raw: bytes | str) -> Any:
    """json.loads that records duplicate keys; raises ValueError on malformed input."""
    return json.loads(raw, object_pairs_hook=_pairs)


# ---------------------------------------------------------------------------------------------------
# schema walk

_GO_TYPES = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool", "object": "map",
             "array": "slice"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


class _Walk:
    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.duplicate: list[str] = []
        self.type_errors: list[str] = []

    def type_error(self, value: Any, path: str, want: str) -> None:
        self.type_errors.append(f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                                f"{path or '.'} of type {_GO_TYPES.get(want, want)}")

    def walk(self, value: Any, schema: Obj, path: str) -> Any:
        schema = resolve(schema)
        if value is None:
            return None
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, bool) or not isinstance(value, (int, str, float)):
                self.type_errors.append(f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                                        f"{path} of type intstr.IntOrString")
            return value
        want = schema.get("type")
        if want == "object" or "properties" in schema:
            if not isinstance(value, dict):
                self.type_error(value, path, "object")
                return value
            for dup in getattr(value, "dups", []):
                self.duplicate.append(f"{path}.{dup}" if path else dup)
            props: Obj = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
            out: Obj = {}
            for k, v in value.items():
                sub = f"{path}.{k}" if path else k
                if k in props:
                    walked = self.walk(v, props[k], sub)
                elif isinstance(extra, dict):
                    walked = self.walk(v, extra, sub)
                elif preserve:
                    walked = _plain(v)
                else:
                    self.unknown.append(sub)
                    continue
                if walked is not None:
                    out[k] = walked
            return out
        if want == "array":
            if not isinstance(value, list):
                self.type_error(value, path, "array")
                return value
            items = schema.get("items", {})
            return [self.walk(v, items, f"{path}[{i}]") for i, v in enumerate(value)]
        if want == "string" and not isinstance(value, str):
            self.type_error(value, path, "string")
        elif schema.get("format") == "byte":  # a []byte: kept re-encoded, as the real server prints it back
            at = base64_error(value)
            if at is None:
                return base64.b64encode(base64.b64decode(value)).decode()
            self.type_errors.append(f"illegal base64 data at input byte {at}")
        elif want == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            if not (isinstance(value, float) and value.is_integer()):
                self.type_error(value, path, "integer")
            else:
                return int(value)
        elif want == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            self.type_error(value, path, "number")
        elif want == "boolean" and not isinstance(value, bool):
            self.type_error(value, path, "boolean")
        return _plain(value)


def base64_error(text: str) -> int | None:
    """Where Go's ``base64.StdEncoding`` (which decodes a JSON ``[]byte``) fails on ``text``: the byte
    offset of its "illegal base64 data at input byte N", None when it decodes. Newlines are skipped."""
    src, i = text.encode(), 0
    while True:
        n = 0  # alphabet characters in this 4-character quantum
        while n < 4:
            if i == len(src):
                return None if n == 0 else i - n
            c, i = src[i], i + 1
            if c in BASE64_ALPHABET:
                n += 1
            elif c in b"\r\n":
                continue
            elif c != ord("=") or n < 2:
                return i - 1
            else:  # padding ends the input: "==" after two characters, "=" after three, then newlines only
                if n == 2:  # the second "=" must follow
                    i = len(src) - len(src[i:].lstrip(b"\r\n"))
                    if i == len(src):
                        return i
                    if src[i] != ord("="):
                        return i - 1
                    i += 1
                i = len(src) - len(src[i:].lstrip(b"\r\n"))
                return i if i < len(src) else None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def decode(rt: ResourceType, body: Any, field_validation: str, schema_name: str | None = None,
           kind: str | None = None, api_version: str | None = None) -> tuple[Obj, list[str]]:
    """Check apiVersion/kind and the schema; returns the pruned object and any warnings."""
    kind = kind or rt.kind
    api_version = api_version or rt.api_version
    if not isinstance(body, dict):
        raise bad_request(f"the object provided is unrecognized (must be of type {kind}): "
                          f"couldn't get version/kind; json parse error: expected an object")
    got_version, got_kind = body.get("apiVersion"), body.get("kind")
    if got_kind not in (None, "", kind):
        raise bad_request(f"the object provided is unrecognized (must be of type {kind}): "
                          f"{got_kind} in version {got_version!r} cannot be handled as a {kind}")
    if got_version not in (None, "", api_version):
        raise bad_request(f"the API version in the data ({got_version}) does not match the expected API "
                          f"version ({api_version})")
    mode = (field_validation or "Warn").capitalize()
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f"fieldValidation parameter unsupported: {field_validation}")
    w = _Walk()
    out = w.walk(body, SCHEMAS[schema_name or rt.schema], "")
    if w.type_errors:
        raise bad_request(f'{kind} in version "{api_version.split("/")[-1]}" cannot be handled as a {kind}: '
                          f"{w.type_errors[0]}")
    problems = [f'unknown field "{p}"' for p in w.unknown] + [f'duplicate field "{p}"' for p in w.duplicate]
    warnings: list[str] = []
    if problems and mode == "Strict":
        raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(problems))
    if problems and mode == "Warn":
        warnings = problems
    out.pop("apiVersion", None)
    out.pop("kind", None)
    if rt.kind == "Secret" and (strings := out.pop("stringData", None)):
        # write-only: merged into data, winning on shared keys, as upstream's v1 -> internal conversion does
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in strings.items()}
        out["data"] = {**(out.get("data") or {}), **encoded}
    if not isinstance(out.get("metadata"), dict):
        out["metadata"] = {}
    return out, warnings


# ---------------------------------------------------------------------------------------------------
# defaults

def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        if not isinstance(c, dict):
            continue
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


# An HPA's behavior, when given, gets these for each unset field (scale-down's window stays unset: the
# controller's --horizontal-pod-autoscaler-downscale-stabilization applies).
HPA_SCALING_DEFAULTS: dict[str, Obj] = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
    "scaleDown": {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
}


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """Fill in defaults on the stored form (``rt`` is the storage version)."""
    spec = obj.get("spec")
    if rt.kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    if rt.kind == "ReplicaSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    if rt.kind in ("Deployment", "ReplicaSet") and isinstance(spec, dict):
        tmpl = spec.get("template")
        if isinstance(tmpl, dict):
            tmpl.setdefault("metadata", {})
            if isinstance(tmpl.get("spec"), dict):
                _default_pod_spec(tmpl["spec"])
    if rt.kind == "Pod" and isinstance(spec, dict):
        _default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
    if rt.kind == "HorizontalPodAutoscaler" and isinstance(spec, dict):  # the autoscaling/v2 (stored) form
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 80}}}]
        behavior = spec.get("behavior")
        if isinstance(behavior, dict):
            for direction, defaults in HPA_SCALING_DEFAULTS.items():
                rules = behavior.get(direction)
                behavior[direction] = {**defaults, **(rules if isinstance(rules, dict) else {})}
    if rt.kind == "Service" and isinstance(spec, dict):  # no cluster IP allocation: clusterIP stays as given
        stype = spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if stype != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if port.get("targetPort") in (None, 0, "") and "port" in port:
                    port["targetPort"] = port["port"]
    if rt.kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects") or []:
            if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = RBAC_GROUP
    if rt.kind == "Secret" and not obj.get("type"):
        obj["type"] = "Opaque"
    if rt.kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")


# ---------------------------------------------------------------------------------------------------
# validation (422)

def _required(field: str) -> Cause:
    return (field, "FieldValueRequired", "Required value")


def _invalid(field: str, value: Any, why: str) -> Cause:
    shown = json.dumps(value) if isinstance(value, str) else repr(value)
    return (field, "FieldValueInvalid", f"Invalid value: {shown}: {why}")


def validate_name(name: str, field: str, *, label: bool = False) -> list[Cause]:
    if label:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            return [_invalid(field, name, LABEL_MSG)]
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [_invalid(field, name, SUBDOMAIN_MSG)]
    return []


def _validate_key(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    bad = (not name or len(name) > 63 or not QUALIFIED_NAME.match(name)
           or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))))
    if bad:
        return [_invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                                     "must start and end with an alphanumeric character")]
    return []


def _validate_meta(rt: ResourceType, meta: Obj, path: str = "metadata") -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        causes += _validate_key(key, f"{path}.labels")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(_invalid(f"{path}.labels", value, "a valid label must be an empty string or consist "
                                   "of alphanumeric characters, '-', '_' or '.', and must start and end with "
                                   "an alphanumeric character"))
    for key in (meta.get("annotations") or {}):
        causes += _validate_key(key, f"{path}.annotations")
    if len(json.dumps(meta.get("annotations") or {})) > 256 * 1024:
        causes.append((f"{path}.annotations", "FieldValueTooLong", "Too long: must have at most 262144 bytes"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                causes.append(_required(f"{path}.ownerReferences[{i}].{f}"))
    return causes


def _validate_pod_spec(spec: Any, path: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [_required(path)]
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_required(f"{path}.containers"))
    seen: set[str] = set()
    for i, c in enumerate([*containers, *(spec.get("initContainers") or [])]):
        cp = f"{path}.containers[{i}]" if i < len(containers) else f"{path}.initContainers[{i - len(containers)}]"
        name = c.get("name") if isinstance(c, dict) else None
        if not name:
            causes.append(_required(f"{cp}.name"))
        else:
            causes += validate_name(str(name), f"{cp}.name", label=True)
            if name in seen:
                causes.append((f"{cp}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
            seen.add(str(name))
        if isinstance(c, dict) and not c.get("image"):
            causes.append(_required(f"{cp}.image"))
        for j, p in enumerate((c.get("ports") or []) if isinstance(c, dict) else []):
            port = p.get("containerPort")
            if not isinstance(port, int) or not 0 < port < 65536:
                causes.append(_invalid(f"{cp}.ports[{j}].containerPort", port, "must be between 1 and 65535, "
                                                                               "inclusive"))
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        causes.append((f"{path}.restartPolicy", "FieldValueNotSupported",
                       f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"'))
    return causes


def _validate_workload(rt: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        causes.append(_invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(_required("spec.selector"))
        if not selector:
            return [*causes, ("spec.selector", "FieldValueInvalid", 'Invalid value: "null": empty selector '
                              "is invalid for deployment")]
    try:
        matcher = from_label_selector_object(selector)
    except ValueError as exc:
        return [*causes, _invalid("spec.selector", selector, str(exc))]
    template = spec.get("template")
    if not isinstance(template, dict):
        return [*causes, _required("spec.template")]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not matcher.empty and not matcher.matches(labels):
        causes.append(("spec.template.metadata.labels", "FieldValueInvalid",
                       f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`"))
    causes += _validate_meta(rt, template.get("metadata") or {}, "spec.template.metadata")
    causes += _validate_pod_spec(template.get("spec"), "spec.template.spec")
    tspec = template.get("spec")
    if isinstance(tspec, dict) and tspec.get("restartPolicy") not in (None, "Always"):
        causes.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported",
                       f'Unsupported value: "{tspec.get("restartPolicy")}": supported values: "Always"'))
    strategy = (spec.get("strategy") or {}).get("type")
    if rt.kind == "Deployment" and strategy not in (None, "RollingUpdate", "Recreate"):
        causes.append(("spec.strategy.type", "FieldValueNotSupported",
                       f'Unsupported value: "{strategy}": supported values: "Recreate", "RollingUpdate"'))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(_invalid("spec.selector", selector, "field is immutable"))
    return causes


_MUTABLE_POD_FIELDS = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _pod_spec_for_compare(spec: Obj) -> Obj:
    s = {k: v for k, v in spec.items() if k not in _MUTABLE_POD_FIELDS}
    for key in ("containers", "initContainers"):
        if isinstance(s.get(key), list):
            s[key] = [{k: v for k, v in c.items() if k != "image"} for c in s[key] if isinstance(c, dict)]
    return s


def validate(rt: ResourceType, obj: Obj, old: Obj | None = None) -> list[Cause]:
    """422 causes for ``obj`` (``old`` is the stored object on update)."""
    meta = obj["metadata"]
    causes: list[Cause] = []
    name = meta.get("name") or ""
    if not name:
        causes.append(("metadata.name", "FieldValueRequired", "Required value: name or generateName is required"))
    elif rt.kind == "Namespace":
        causes += validate_name(name, "metadata.name", label=True)
    elif rt.kind != "SelfSubjectAccessReview":
        causes += validate_name(name, "metadata.name")
    causes += _validate_meta(rt, meta)
    if rt.kind in ("Deployment", "ReplicaSet"):
        causes += _validate_workload(rt, obj, old)
    elif rt.kind == "Pod":
        causes += _validate_pod_spec(obj.get("spec"), "spec")
        if old is not None and isinstance(obj.get("spec"), dict):
            if _pod_spec_for_compare(obj["spec"]) != _pod_spec_for_compare(old.get("spec") or {}):
                causes.append(("spec", "Forbidden", "Forbidden: pod updates may not change fields other than "
                               "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                               "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                               "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if "
                               "it was previously negative)"))
    elif rt.kind in ("ConfigMap", "Secret"):
        causes += _validate_config_data(rt, obj, old)
    elif rt.kind == "Lease":
        duration = (obj.get("spec") or {}).get("leaseDurationSeconds")
        if isinstance(duration, int) and duration <= 0:
            causes.append(_invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
        transitions = (obj.get("spec") or {}).get("leaseTransitions")
        if isinstance(transitions, int) and transitions < 0:
            causes.append(_invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    elif rt.kind == "Event":
        causes += _validate_event(rt, obj)
    elif rt.kind == "HorizontalPodAutoscaler":
        causes += _validate_hpa(conversion.to_storage(rt, obj).get("spec"))
    elif rt.kind in ("Role", "ClusterRole"):
        for i, rule in enumerate(obj.get("rules") or []):
            causes += _validate_policy_rule(rule if isinstance(rule, dict) else {}, f"rules[{i}]", rt.namespaced)
    elif rt.kind in ("RoleBinding", "ClusterRoleBinding"):
        causes += _validate_binding(rt, obj, old)
    elif rt.kind == "Service":
        causes += _validate_service(obj.get("spec"))
    elif rt.kind == "PodDisruptionBudget":
        causes += _validate_pdb(obj.get("spec"))
    return causes


def _config_key(key: str) -> list[str]:
    """IsConfigMapKey: why ``key`` cannot name an entry of a ConfigMap or a Secret."""
    why = ["must be no more than 253 characters"] if len(key.encode()) > 253 else []
    if not CONFIG_KEY.fullmatch(key):
        why.append(CONFIG_KEY_MSG)
    if key in (".", ".."):
        why.append(f"must not be '{key}'")
    elif key.startswith(".."):
        why.append("must not start with '..'")
    return why


def _validate_config_data(rt: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
    """A ConfigMap's or Secret's update rules (a Secret's type, and everything once `immutable` is set),
    then its keys, then what a Secret's type requires."""
    sections = ("data",) if rt.kind == "Secret" else ("data", "binaryData")
    causes: list[Cause] = []
    if old is not None:
        if rt.kind == "Secret" and obj.get("type") != old.get("type"):
            causes.append(_invalid("type", obj.get("type") or "", "field is immutable"))
        if old.get("immutable"):
            changed = [f for f in sections if obj.get(f) != old.get(f)]
            causes += [(f, "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set")
                       for f in ([] if obj.get("immutable") else ["immutable"]) + changed]
    causes += [_invalid(f"{s}[{key}]", key, why) for s in sections for key in obj.get(s) or {}
               for why in _config_key(key)]
    return causes + (_validate_secret(obj) if rt.kind == "Secret" else [])


MAX_SECRET_SIZE = 1 << 20
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
# the data keys a Secret type requires (basic-auth and ssh-auth have their own rules, below)
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "kubernetes.io/dockercfg": (".dockercfg",), "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(obj: Obj) -> list[Cause]:
    """ValidateSecret: the total size, and the keys (and for docker configs, the JSON) the type requires."""
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    stype = obj.get("type") or "Opaque"
    causes: list[Cause] = []
    if sum(map(len, data.values())) > MAX_SECRET_SIZE:
        causes.append(("data", "FieldValueTooLong", f"Too long: must have at most {MAX_SECRET_SIZE} bytes"))
    if stype == "kubernetes.io/service-account-token":
        if not (obj["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION):
            causes.append(_required(f"metadata.annotations[{SA_NAME_ANNOTATION}]"))
    elif stype == "kubernetes.io/basic-auth":  # either may be empty, but one of them must be there
        if "username" not in data and "password" not in data:
            causes += [_required("data[username]"), _required("data[password]")]
    elif stype == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            causes.append(_required("data[ssh-privatekey]"))
    else:
        causes += [_required(f"data[{k}]") for k in SECRET_KEYS.get(stype, ()) if k not in data]
        if stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
            key = SECRET_KEYS[stype][0]
            error = _json_object_error(data[key]) if key in data else None
            if error:
                causes.append(_invalid(f"data[{key}]", "<secret contents redacted>", error))
    return causes


# Python's JSON syntax errors -> where Go's decoder says it was (the others: "looking for beginning of value")
_GO_JSON_WHERE = {"Expecting property name enclosed in double quotes": "looking for beginning of object key string",
                  "Expecting ':' delimiter": "after object key", "Extra data": "after top-level value"}


def _json_object_error(raw: bytes) -> str | None:
    """What Go's json.Unmarshal into a map says of ``raw`` (its usual wordings), None when it decodes."""
    try:
        value = json.loads(raw.decode(errors="replace"))
    except json.JSONDecodeError as exc:
        rest = exc.doc[exc.pos:].strip()
        if not rest:
            return "unexpected end of JSON input"
        return f"invalid character '{rest[0]}' {_GO_JSON_WHERE.get(exc.msg, 'looking for beginning of value')}"
    if value is None or isinstance(value, dict):
        return None
    return f"json: cannot unmarshal {_json_type(value)} into Go value of type map[string]interface {{}}"


SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _validate_policy_rule(rule: Obj, path: str, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not rule.get("verbs"):
        causes.append((f"{path}.verbs", "FieldValueRequired", "Required value: verbs must contain at least one value"))
    if rule.get("nonResourceURLs"):
        if namespaced:
            causes.append(_invalid(f"{path}.nonResourceURLs", rule["nonResourceURLs"],
                                   "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            causes.append(_invalid(f"{path}.nonResourceURLs", rule["nonResourceURLs"],
                                   "rules cannot apply to both regular resources and non-resource URLs"))
        return causes
    if not rule.get("apiGroups"):
        causes.append((f"{path}.apiGroups", "FieldValueRequired",
                       "Required value: resource rules must supply at least one api group"))
    if not rule.get("resources"):
        causes.append((f"{path}.resources", "FieldValueRequired",
                       "Required value: resource rules must supply at least one resource"))
    return causes


def _validate_binding(rt: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
    causes: list[Cause] = []
    ref = obj.get("roleRef") or {}
    if ref.get("apiGroup") != RBAC_GROUP:
        causes.append(_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (RBAC_GROUP,)))
    kinds = ("Role", "ClusterRole") if rt.namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        causes.append(_supported("roleRef.kind", ref.get("kind") or "", kinds))
    if not ref.get("name"):
        causes.append(_required("roleRef.name"))
    for i, subject in enumerate(obj.get("subjects") or []):
        path = f"subjects[{i}]"
        subject = subject if isinstance(subject, dict) else {}
        if not subject.get("name"):
            causes.append(_required(f"{path}.name"))
        kind = subject.get("kind")
        if kind not in SUBJECT_KINDS:
            causes.append(_supported(f"{path}.kind", kind or "", SUBJECT_KINDS))
        elif kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(_supported(f"{path}.apiGroup", subject["apiGroup"], ("",)))
            if not subject.get("namespace") and not rt.namespaced:
                causes.append(_required(f"{path}.namespace"))
        elif subject.get("apiGroup") not in (None, "", RBAC_GROUP):  # empty: defaulted to the RBAC group
            causes.append(_supported(f"{path}.apiGroup", subject["apiGroup"], (RBAC_GROUP,)))
    if old is not None and (old.get("roleRef") or {}) != ref:
        shown = ", ".join(f"{go}:{json.dumps(str(ref.get(f, '')))}"
                          for f, go in (("apiGroup", "APIGroup"), ("kind", "Kind"), ("name", "Name")))
        causes.append(("roleRef", "FieldValueInvalid",
                       f"Invalid value: rbac.RoleRef{{{shown}}}: cannot change roleRef"))
    return causes


SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")


def _validate_service(spec: Any) -> list[Cause]:
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    stype = spec.get("type") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        causes.append(_supported("spec.type", stype, SERVICE_TYPES))
    ports = [p if isinstance(p, dict) else {} for p in spec.get("ports") or []]
    if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(_required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        name = port.get("name")
        if len(ports) > 1 and not name:
            causes.append(_required(f"{path}.name"))
        elif name:
            causes += validate_name(str(name), f"{path}.name", label=True)
            if name in names:
                causes.append((f"{path}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
            names.add(str(name))
        number = port.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(_invalid(f"{path}.port", number, "must be between 1 and 65535, inclusive"))
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            causes.append(_supported(f"{path}.protocol", protocol, PROTOCOLS))
        node_port = port.get("nodePort")
        if node_port and stype not in ("NodePort", "LoadBalancer"):
            causes.append((f"{path}.nodePort", "FieldValueForbidden",
                           f"Forbidden: may not be used when `type` is '{stype}'"))
    return causes


EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def _validate_pdb(spec: Any) -> list[Cause]:
    if not isinstance(spec, dict):
        return []
    causes: list[Cause] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(_invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for field in ("minAvailable", "maxUnavailable"):
        value = spec.get(field)
        if isinstance(value, int) and value < 0:
            causes.append(_invalid(f"spec.{field}", value, "must be greater than or equal to 0"))
        elif isinstance(value, str) and not re.fullmatch(r"\d+%", value):
            causes.append(_invalid(f"spec.{field}", value, "a valid percent string must be a numeric string "
                                   "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                                   "'[0-9]+%')"))
    if spec.get("selector") is not None:
        try:
            from_label_selector_object(spec["selector"])
        except ValueError as exc:
            causes.append(_invalid("spec.selector", spec["selector"], str(exc)))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in EVICTION_POLICIES:
        causes.append(_supported("spec.unhealthyPodEvictionPolicy", policy, EVICTION_POLICIES))
    return causes


METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
TARGET_TYPES = ("AverageValue", "Utilization", "Value")


def _supported(field: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    return (field, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: '
            + ", ".join(f'"{a}"' for a in allowed))


def _validate_hpa(spec: Any) -> list[Cause]:
    """autoscaling/v2 HorizontalPodAutoscalerSpec (v1 objects are checked in their v2 form)."""
    if not isinstance(spec, dict):
        return [_required("spec")]
    causes: list[Cause] = []
    ref = spec.get("scaleTargetRef") or {}
    for f in ("kind", "name"):
        if not ref.get(f):
            causes.append(_required(f"spec.scaleTargetRef.{f}"))
    min_r, max_r = spec.get("minReplicas"), spec.get("maxReplicas")
    if isinstance(min_r, int) and min_r < 1:
        causes.append(_invalid("spec.minReplicas", min_r, "must be greater than or equal to 1"))
    if not isinstance(max_r, int) or max_r < 1:
        causes.append(_invalid("spec.maxReplicas", max_r or 0, "must be greater than 0"))
    elif isinstance(min_r, int) and max_r < min_r:
        causes.append(_invalid("spec.maxReplicas", max_r, "must be greater than or equal to `minReplicas`"))
    for i, m in enumerate(spec.get("metrics") or []):
        path = f"spec.metrics[{i}]"
        mtype = m.get("type") if isinstance(m, dict) else None
        if not mtype:
            causes.append((f"{path}.type", "FieldValueRequired", "Required value: must specify a metric source type"))
            continue
        if mtype not in METRIC_TYPES:
            causes.append(_supported(f"{path}.type", mtype, METRIC_TYPES))
            continue
        field = mtype[:1].lower() + mtype[1:]
        source = m.get(field)
        if not isinstance(source, dict):
            causes.append((f"{path}.{field}", "FieldValueRequired",
                           "Required value: must populate information for the given metric source"))
            continue
        target = source.get("target") or {}
        ttype = target.get("type")
        if ttype not in TARGET_TYPES:
            causes.append(_supported(f"{path}.{field}.target.type", ttype or "", TARGET_TYPES))
        utilization = target.get("averageUtilization")
        if isinstance(utilization, int) and utilization <= 0:
            causes.append(_invalid(f"{path}.{field}.target.averageUtilization", utilization, "must be greater than 0"))
    for direction in ("scaleUp", "scaleDown"):
        rules = (spec.get("behavior") or {}).get(direction) or {}
        window = rules.get("stabilizationWindowSeconds")
        if isinstance(window, int) and not 0 <= window <= 3600:
            causes.append(_invalid(f"spec.behavior.{direction}.stabilizationWindowSeconds", window,
                                   "must be less than or equal to 3600" if window > 0 else
                                   "must be greater than or equal to zero"))
        for j, policy in enumerate(rules.get("policies") or []):
            value, period = policy.get("value"), policy.get("periodSeconds")
            if not isinstance(value, int) or value <= 0:
                causes.append(_invalid(f"spec.behavior.{direction}.policies[{j}].value", value or 0,
                                       "must be greater than zero"))
            if not isinstance(period, int) or not 0 < period <= 1800:
                causes.append(_invalid(f"spec.behavior.{direction}.policies[{j}].periodSeconds", period or 0,
                                       "must be greater than zero and less than or equal to 1800"))
    return causes


def _validate_event(rt: ResourceType, obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    etype = obj.get("type")
    if etype not in (None, "", "Normal", "Warning") or (rt.group and not etype):
        causes.append(("type", "FieldValueNotSupported",
                       f'Unsupported value: "{etype or ""}": supported values: "Normal", "Warning"'))
    if rt.group:  # events.k8s.io/v1 is stricter than core/v1
        for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
            if not obj.get(f):
                causes.append(_required(f))
    else:
        involved = obj.get("involvedObject") or {}
        ns = obj["metadata"].get("namespace", "")
        if involved.get("namespace") and involved.get("namespace") != ns:
            causes.append(_invalid("involvedObject.namespace", involved.get("namespace"),
                                   "does not match event.namespace"))
    return causes


def validate_scale(scale: Obj) -> list[Cause]:
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if isinstance(replicas, int) and replicas < 0:
        return [_invalid("spec.replicas", replicas, "must be greater than or equal to 0")]
    return []
