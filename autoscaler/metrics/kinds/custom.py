"""Admin-defined metrics: a PromQL template from the cluster policy, batched like the built-ins.

The template is trusted (it comes from the administrator's ConfigMap); only the placeholders are
filled from lease data, and they are filled with escaped matchers from `promql.selector`:

* ``{{namespace}}`` -> ``namespace=~"ns1|ns2"`` (or ``namespace="ns"``)
* ``{{pods}}``      -> ``pod=~"p1|p2"``
* ``{{selector}}``  -> both, comma-separated
* ``{{window}}``    -> the window as a PromQL duration, e.g. ``1m`` -> ``60s``

The template must produce one series per (namespace, pod), typically
``sum by (namespace, pod) (rate(my_counter{ {{selector}} }[{{window}}]))``; several series for one
pod become `MultiSeries`. No staleness check: the template hides which raw series it reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.metrics.kinds.base import PodSeries, single_value
from autoscaler.metrics.promql import LeaseTarget, duration, selector
from autoscaler.metrics.results import Outcome

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]*)\s*\}\}")
PLACEHOLDERS = frozenset({"namespace", "pods", "selector", "window"})


@dataclass(frozen=True)
class CustomPromQL:
    """A named template; `Ok.value` is whatever the template computes, in `unit`."""

    name: str
    template: str
    unit: str = ""
    window_s: float = 60.0

    def __post_init__(self) -> None:
        used = set(_PLACEHOLDER.findall(self.template))
        unknown = sorted(used - PLACEHOLDERS)
        if unknown:
            raise ValueError(f"custom metric {self.name!r}: unknown placeholder(s) "
                             f"{', '.join('{{' + u + '}}' for u in unknown)} in template "
                             f"(known: {', '.join(sorted(PLACEHOLDERS))})")
        if not used & {"pods", "selector"}:
            raise ValueError(f"custom metric {self.name!r}: template must scope pods with {{{{pods}}}} "
                             "or {{selector}}")

    @property
    def raw_series(self) -> tuple[str, ...]:
        return ()  # a template may read anything

    def build(self, leases: Sequence[LeaseTarget]) -> str:
        """The template with its placeholders replaced (one pass: filled text is never re-scanned)."""
        sel = selector(leases)
        values = {"namespace": sel.namespace, "pods": sel.pods, "selector": sel.both,
                  "window": duration(self.window_s)}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)

    def interpret(self, series: PodSeries, eval_time: float) -> Outcome:
        """One finite value per pod."""
        return single_value(series, eval_time, None)
