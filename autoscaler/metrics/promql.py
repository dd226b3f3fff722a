"""Safe PromQL text: string and regex escaping, and batched pod selectors.

Every value that reaches a query (namespace, pod name, pod regex) comes from the Kubernetes API or
from a lease annotation, so it is untrusted. It only ever enters PromQL through `quote` (a PromQL
double-quoted string literal) and, for regex matchers over literal names, through `regex_quote`
first. Nothing else in this package builds matcher text by hand.

A batch of leases becomes ONE selector: ``namespace=~"ns1|ns2", pod=~"p1|p2|(?:regex)"``. That is a
cross product, so it can over-select a pod named like a pod of another namespace; `LeaseIndex` filters
the answer back to exactly the requested (namespace, pod) pairs on the client side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

# Go's regexp.QuoteMeta escapes exactly these; Prometheus parses regexes with Go's RE2 syntax.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
# Escapes understood by the PromQL lexer inside double-quoted strings (Go strconv.Unquote).
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

PART_LABEL = "autoscaler_part"
"""Label our queries add to tell auxiliary series (sample timestamps, request rates) from values."""


class PodTarget(NamedTuple):
    """One pod, the key of every per-pod metric value."""

    namespace: str
    pod: str


@dataclass(frozen=True)
class LeaseTarget:
    """The pods of one lease: explicit names (preferred) or an RE2 pattern fully matching pod names.

    The pattern must stay in the subset where RE2 and Python `re` agree (no backreferences, no
    lookarounds): Prometheus selects with RE2 and the client filters the answer with Python `re`.
    """

    namespace: str
    pods: frozenset[str] = field(default_factory=frozenset)
    pod_regex: str | None = None

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("LeaseTarget.namespace must not be empty")
        if self.pod_regex is not None:
            if self.pods:
                raise ValueError("LeaseTarget takes pods or pod_regex, not both")
            try:
                re.compile(self.pod_regex)
            except re.error as exc:
                raise ValueError(
                    f"LeaseTarget.pod_regex {self.pod_regex!r} is not a valid regex: {exc}") from exc
        object.__setattr__(self, "pods", frozenset(self.pods))

    @classmethod
    def of(cls, namespace: str, pods: Iterable[str]) -> LeaseTarget:
        """A lease given by explicit pod names."""
        return cls(namespace=namespace, pods=frozenset(pods))


def quote(value: str) -> str:
    """Return `value` as a PromQL double-quoted string literal that cannot end early."""
    out = []
    for ch in value:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def regex_quote(value: str) -> str:
    """Escape RE2 metacharacters so that `value` matches only itself (like Go's QuoteMeta).

    Literal alternations escaped this way stay eligible for Prometheus's set-match fast path.
    """
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def deployment_pods(namespace: str, name: str, namespace_label: str = "namespace", pod_label: str = "pod") -> str:
    """Matchers for every pod a Deployment has had (``<name>-<pod-template-hash>-<suffix>``), those gone included:
    for its history, where the pods of the moment are not the ones that served it."""
    return f"{namespace_label}={quote(namespace)}, {pod_label}=~{quote(regex_quote(name) + '-[a-z0-9]+-[a-z0-9]+')}"


def duration(seconds: float) -> str:
    """A PromQL duration literal for a window in seconds (whole milliseconds)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"window must be positive, got {seconds!r} s")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def parse_duration(text: str) -> float | None:
    """The seconds of a Prometheus duration (``15s``, ``1m30s``, ``500ms``, as ``/api/v1/targets`` reports a scrape
    interval); None if ``text`` is not one. The inverse of :func:`duration`."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _matcher(label: str, alternatives: Sequence[str], literal: bool) -> str:
    if literal and len(alternatives) == 1:
        return f"{label}={quote(alternatives[0])}"
    return f"{label}=~{quote('|'.join(alternatives))}"


@dataclass(frozen=True)
class Selector:
    """Matcher text for a batch of leases, for a given pair of namespace/pod label names."""

    namespace: str
    """e.g. ``namespace=~"a|b"`` (no braces)."""
    pods: str
    """e.g. ``pod=~"p1|p2"`` (no braces)."""

    @property
    def both(self) -> str:
        """Both matchers, comma-separated, to put inside ``{...}``."""
        return f"{self.namespace}, {self.pods}"


POD_NAMES_LIMIT = 500
"""Above this many pod names in one batch, select by namespace only (see `selector`)."""


def selector(leases: Sequence[LeaseTarget], namespace_label: str = "namespace",
             pod_label: str = "pod", pod_names_limit: int | None = None) -> Selector:
    """One selector covering every pod of every lease in the batch (see the module docstring).

    With more than `pod_names_limit` (default `POD_NAMES_LIMIT`) pod names the pod matcher becomes
    ``pod!=""``: Prometheus spends far more compiling and matching a regex of thousands of names than
    returning the few extra series of unleased pods in the same namespaces, which `LeaseIndex` drops.
    """
    limit = POD_NAMES_LIMIT if pod_names_limit is None else pod_names_limit
    if not leases:
        raise ValueError("selector needs at least one lease")
    namespaces = sorted({lease.namespace for lease in leases})
    names = sorted({pod for lease in leases for pod in lease.pods})
    patterns = sorted({lease.pod_regex for lease in leases if lease.pod_regex is not None})
    ns = _matcher(namespace_label, [regex_quote(n) for n in namespaces] if len(namespaces) > 1
                  else namespaces, literal=len(namespaces) == 1)
    if len(names) + len(patterns) > limit:
        return Selector(namespace=ns, pods=f'{pod_label}!=""')
    if not patterns and len(names) == 1:
        pods = _matcher(pod_label, names, literal=True)
    else:
        alternatives = [regex_quote(n) for n in names] + [f"(?:{p})" for p in patterns]
        if not alternatives:  # only leases with no pods: match nothing rather than everything
            alternatives = ["$^"]
        pods = _matcher(pod_label, alternatives, literal=False)
    return Selector(namespace=ns, pods=pods)


class LeaseIndex:
    """Answers "was this (namespace, pod) asked for by some lease of the batch?"."""

    def __init__(self, leases: Sequence[LeaseTarget]) -> None:
        self._exact: set[PodTarget] = set()
        self._patterns: dict[str, list[re.Pattern[str]]] = {}
        for lease in leases:
            self._exact.update(PodTarget(lease.namespace, p) for p in lease.pods)
            if lease.pod_regex is not None:
                self._patterns.setdefault(lease.namespace, []).append(re.compile(lease.pod_regex))

    @property
    def explicit(self) -> frozenset[PodTarget]:
        """The pods named explicitly (each gets an outcome even when absent from the answer)."""
        return frozenset(self._exact)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, PodTarget):
            return False
        if key in self._exact:
            return True
        return any(p.fullmatch(key.pod) for p in self._patterns.get(key.namespace, ()))


def tag(expr: str, part: str) -> str:
    """Label every series of `expr` with ``autoscaler_part="<part>"`` (auxiliary series)."""
    return f'label_replace({expr}, "{PART_LABEL}", {quote(part)}, "", "")'
