"""Label and field selectors with the real server's syntax and semantics.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists) and
``!a`` (does not exist), comma-separated and ANDed. ``!=`` and ``notin`` also match objects without the
label, as in Kubernetes. Field selectors: ``path=value``, ``path==value``, ``path!=value`` on a fixed set
of supported fields per resource. Parse errors raise :class:`~autoscaler.sandbox.errors.ApiError` 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.sandbox.errors import bad_request

Obj = dict[str, Any]

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        return not has  # "!exists"

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return "!" + self.key
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _check_key(key: str, text: str) -> None:
    if not key or not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in selector "{text}"')


def _check_value(value: str, text: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise bad_request(f'unable to parse requirement: invalid label value: "{value}" in selector "{text}"')


_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter; an empty string selects everything."""
    if text is None or not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for raw in _split_top(text):
        part = raw.strip()
        if not part:
            raise bad_request(f'couldn\'t parse the selector string "{text}": found \'\', expected: identifier')
        m = _SET.match(part)
        if m:
            key, op, inner = m.group(1), m.group(2), m.group(3)
            values = tuple(v.strip() for v in inner.split(",")) if inner.strip() else ()
            if not values:
                raise bad_request(f'couldn\'t parse the selector string "{text}": for \'{op}\', \'notin\' '
                                  "operators, values set can't be empty")
            _check_key(key, text)
            for v in values:
                _check_value(v, text)
            reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
            continue
        for token, op in (("!=", "!="), ("==", "="), ("=", "=")):
            if token in part:
                key, _, value = part.partition(token)
                key, value = key.strip(), value.strip()
                _check_key(key, text)
                _check_value(value, text)
                reqs.append(Requirement(key, op, (value,)))
                break
        else:
            if part.startswith("!"):
                key = part[1:].strip()
                _check_key(key, text)
                reqs.append(Requirement(key, "!exists"))
            else:
                if " " in part or "(" in part or ")" in part:
                    raise bad_request(f'couldn\'t parse the selector string "{text}": unable to parse '
                                      f'requirement: found \'{part}\'')
                _check_key(part, text)
                reqs.append(Requirement(part, "exists"))
    return LabelSelector(tuple(reqs))


def from_label_selector_object(sel: Obj | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels / matchExpressions) as a matcher. ``None`` matches nothing
    in Kubernetes controllers, an empty selector everything: callers decide what ``None`` means."""
    if not sel:
        return LabelSelector()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in sel.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise ValueError(f"invalid operator {expr.get('operator')!r}")
        reqs.append(Requirement(str(expr.get("key")), op, tuple(sorted(str(v) for v in expr.get("values") or []))))
    return LabelSelector(tuple(reqs))


# --------------------------------------------------------------------------------------------------
# field selectors

@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Obj, extract: Callable[[Obj, str], str]) -> bool:
        for r in self.requirements:
            got = extract(obj, r.path)
            if (got == r.value) == r.negate:
                return False
        return True


def parse_field_selector(text: str | None, supported: frozenset[str]) -> FieldSelector:
    """Parse ``fieldSelector``; fields outside ``supported`` give the real server's 400."""
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for raw in text.split(","):
        part = raw.strip()
        for token, negate in (("!=", True), ("==", False), ("=", False)):
            if token in part:
                path, _, value = part.partition(token)
                path = path.strip()
                if path not in supported:
                    raise bad_request(f'field label not supported: {path}')
                reqs.append(FieldRequirement(path, negate, value.strip()))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    return FieldSelector(tuple(reqs))


def field_value(obj: Obj, path: str) -> str:
    """Value of a dotted field path as the server's field-label conversion gives it ("" when absent)."""
    cur: Any = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)
