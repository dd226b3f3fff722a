"""Label selectors: parse a Deployment's ``spec.selector`` and match pods against it locally."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # In | NotIn | Exists | DoesNotExist
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "In":
            return labels.get(self.key) in self.values
        if self.op == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.op == "Exists":
            return self.key in labels
        if self.op == "DoesNotExist":
            return self.key not in labels
        return False


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed ``LabelSelector``. An empty selector matches nothing here (a Deployment always has one)."""

    requirements: tuple[Requirement, ...]

    @classmethod
    def from_label_selector(cls, sel: Mapping[str, Any] | None) -> Selector:
        if not sel:
            return cls(())
        reqs = [Requirement(k, "In", frozenset([str(v)])) for k, v in (sel.get("matchLabels") or {}).items()]
        for e in sel.get("matchExpressions") or []:
            reqs.append(Requirement(str(e.get("key")), str(e.get("operator")),
                                    frozenset(str(v) for v in e.get("values") or [])))
        return cls(tuple(reqs))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if not self.requirements:
            return False
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)
