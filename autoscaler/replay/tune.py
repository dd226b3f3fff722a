"""One knob of the shipped policy swept over a trace: SLO violations against GPU-seconds for each value, beside
the baselines, and the value to put in the cluster policy.

Where ``autoscaler replay`` answers "how does the shipped policy do on this traffic", ``autoscaler tune`` answers
"what should this cluster set": record a lease's traffic (``autoscaler record``), sweep
``predictive.violationTarget`` (the cost / SLO trade-off) or any other ``predictive.*`` knob over it, and read off
the cheapest value that keeps the violations within a budget. Every value is a run of `default` in one
:func:`~autoscaler.replay.run.replay` (same arrivals, worker processes on long traces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autoscaler.config import ClusterPolicy
from autoscaler.replay.policies import ReplaySettings
from autoscaler.replay.report import criteria
from autoscaler.replay.run import Progress, ReplayResult, replay

DEFAULT_KNOB = "predictive.violationTarget"
DEFAULT_VALUES = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16)
"""``violationTarget``'s sweep: doublings around the shipped 0.04."""


def knob_value(cluster: ClusterPolicy, knob: str) -> float:
    """The cluster policy's value of a ``predictive.KEY`` knob (camelCase, as in the ConfigMap)."""
    section, _, key = knob.partition(".")
    if section != "predictive" or not key:
        raise ValueError(f"--knob {knob!r}: expected predictive.KEY, e.g. {DEFAULT_KNOB}")
    values = cluster.autoscaling.predictive.model_dump(by_alias=True)
    if key not in values:
        raise ValueError(f"--knob {knob!r}: the predictive settings have no {key!r} "
                         f"(they have: {', '.join(sorted(values))})")
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"--knob {knob!r}: {key} is not a number ({value!r})")
    return float(value)


def check_values(cluster: ClusterPolicy, knob: str, values: Sequence[float]) -> None:
    """Each value as the policy's validation takes it (a ValueError naming the first it rejects), before any run."""
    key = knob.partition(".")[2]
    for v in values:
        try:
            cluster.autoscaling.predictive.with_options({key: v})
        except ValidationError as exc:
            raise ValueError(f"{knob}={v:g} is not a valid value: {exc.errors()[0]['msg']}") from None


def label(knob: str, value: float) -> str:
    """The run's name in the results: ``default@violationTarget=0.02``."""
    return f"default@{knob.partition('.')[2]}={value:g}"


@dataclass(frozen=True)
class SweepRow:
    value: float
    label: str
    summary: dict[str, Any]
    missed: tuple[str, ...] | None
    """Issue 8's checks this value misses against the baselines replayed (None: hpa was not replayed)."""
    current: bool
    """The cluster policy's own value."""

    @property
    def violations(self) -> float:
        return float(self.summary["sloViolationFraction"])

    @property
    def gpu_seconds(self) -> float:
        return float(self.summary["gpuSeconds"])


@dataclass(frozen=True)
class Sweep:
    knob: str
    rows: tuple[SweepRow, ...]
    """One per value, in increasing order of the value."""
    baselines: dict[str, dict[str, Any]]
    result: ReplayResult
    max_violations: float | None

    def recommended(self) -> tuple[SweepRow | None, str]:
        """The cheapest value within the violation budget (``max_violations``), or without one the cheapest that
        meets every check against the baselines; and a sentence saying which and why (or why none)."""
        if self.max_violations is not None:
            ok = [r for r in self.rows if r.violations <= self.max_violations]
            if not ok:
                best = min(self.rows, key=lambda r: r.violations)
                return None, (f"no value keeps SLO violations within {self.max_violations:g} on this trace; the "
                              f"fewest: {best.violations:.4f} at {self.knob}={best.value:g}")
            pick = min(ok, key=lambda r: r.gpu_seconds)
            return pick, (f"{self.knob}={pick.value:g}: the cheapest with SLO violations within "
                          f"{self.max_violations:g} ({pick.violations:.4f} at {pick.gpu_seconds:,.0f} GPU-s)")
        ok = [r for r in self.rows if r.missed is not None and not r.missed]
        if not ok:
            why = "hpa was not replayed" if all(r.missed is None for r in self.rows) else "every value misses one"
            return None, f"no value meets every check against the baselines ({why}); give --max-violations"
        pick = min(ok, key=lambda r: r.gpu_seconds)
        return pick, (f"{self.knob}={pick.value:g}: the cheapest that meets every check against "
                      f"{', '.join(self.baselines)} ({pick.violations:.4f} at {pick.gpu_seconds:,.0f} GPU-s)")

    def to_json(self) -> dict[str, Any]:
        pick, why = self.recommended()
        return {"trace": self.result.workload.name, "knob": self.knob,
                "rows": [{"value": r.value, "current": r.current, **r.summary,
                          "missedChecks": None if r.missed is None else list(r.missed)} for r in self.rows],
                "baselines": self.baselines,
                "recommended": None if pick is None else pick.value, "reason": why}

    def markdown(self) -> str:
        hpa, orc = self.baselines.get("hpa"), self.baselines.get("oracle")
        key = self.knob.partition(".")[2]
        lines = [f"| {key} | SLO viol. | GPU-s | viol/hpa | GPU/hpa | GPU/oracle | checks missed |",
                 "|---|---|---|---|---|---|---|"]

        def ratio(a: float, ref: dict[str, Any] | None, field: str) -> str:
            return "-" if ref is None or not ref[field] else f"{a / ref[field]:.2f}"

        for r in self.rows:
            missed = "-" if r.missed is None else (", ".join(r.missed) or "none")
            lines.append(f"| {r.value:g}{' (current)' if r.current else ''} | {r.violations:.4f} | "
                         f"{r.gpu_seconds:,.0f} | {ratio(r.violations, hpa, 'sloViolationFraction')} | "
                         f"{ratio(r.gpu_seconds, hpa, 'gpuSeconds')} | {ratio(r.gpu_seconds, orc, 'gpuSeconds')} | "
                         f"{missed} |")
        for name, s in self.baselines.items():
            lines.append(f"| {name} | {s['sloViolationFraction']:.4f} | {s['gpuSeconds']:,.0f} | "
                         f"{ratio(s['sloViolationFraction'], hpa, 'sloViolationFraction')} | "
                         f"{ratio(s['gpuSeconds'], hpa, 'gpuSeconds')} | {ratio(s['gpuSeconds'], orc, 'gpuSeconds')} | |")
        return "\n".join(lines)

    def snippet(self) -> str | None:
        """The cluster policy lines that set the recommended value."""
        pick, _ = self.recommended()
        if pick is None:
            return None
        return f"autoscaling:\n  predictive:\n    {self.knob.partition('.')[2]}: {pick.value:g}"


def sweep(trace: str | Path, knob: str, values: Sequence[float], settings: ReplaySettings, cluster: ClusterPolicy, *,
          baselines: Sequence[str] = ("hpa", "keda", "kpa", "oracle"), max_violations: float | None = None,
          peak_replicas: float | None = 20, slo_budget: float = 0.01, duration_s: float | None = None,
          options: dict[str, float] | None = None, progress: Progress | None = None,
          jobs: int | None = None) -> Sweep:
    """Replay `default` once per value of ``knob`` (the cluster policy's own value always among them) beside
    ``baselines``, on the same arrivals."""
    if cluster.autoscaling.algorithm != "predictive":
        raise ValueError(f"the cluster policy's algorithm is {cluster.autoscaling.algorithm!r}: the predictive "
                         "knobs apply to `default` only with algorithm: predictive")
    current = knob_value(cluster, knob)
    ordered = sorted({float(v) for v in values} | {current})
    check_values(cluster, knob, ordered)
    variants = {label(knob, v): {knob: v} for v in ordered}
    result = replay(trace, list(baselines), settings, cluster, peak_replicas=peak_replicas, slo_budget=slo_budget,
                    duration_s=duration_s, options=options, progress=progress, jobs=jobs, variants=variants)
    base = {n: result.summaries[n] for n in baselines}
    rows = []
    for v in ordered:
        name = label(knob, v)
        checks = criteria({**base, name: result.summaries[name]}, policy=name)
        missed = None if "hpa" not in base else tuple(c for c, ok, _ in checks if ok is False)
        rows.append(SweepRow(v, name, result.summaries[name], missed, v == current))
    return Sweep(knob, tuple(rows), base, result, max_violations)


def plot(s: Sweep, path: Path) -> Path:
    """SLO violations against GPU-seconds: the sweep as a line through its values, the baselines as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=72)
    xs, ys = [r.gpu_seconds for r in s.rows], [r.violations for r in s.rows]
    ax.plot(xs, ys, "o-", color="tab:blue", label=f"default, {s.knob}")
    for r in s.rows:
        ax.annotate(f"{r.value:g}{' (current)' if r.current else ''}", (r.gpu_seconds, r.violations),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    pick, _ = s.recommended()
    if pick is not None:
        ax.plot([pick.gpu_seconds], [pick.violations], "o", ms=12, mfc="none", mec="tab:green", mew=2,
                label=f"recommended: {pick.value:g}")
    markers = {"hpa": "s", "keda": "D", "kpa": "^", "oracle": "*"}
    for name, b in s.baselines.items():
        ax.plot([b["gpuSeconds"]], [b["sloViolationFraction"]], markers.get(name, "v"), ms=8, alpha=0.8, label=name)
    if s.max_violations is not None:
        ax.axhline(s.max_violations, color="grey", ls="--", lw=0.8, label="violation budget")
    ax.set_xlabel("GPU-seconds")
    ax.set_ylabel("SLO violations (fraction of requests)")
    ax.set_title(f"{s.result.workload.name}: {s.knob}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
