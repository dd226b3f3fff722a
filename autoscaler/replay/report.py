"""Replay outputs: per-policy summary figures, the Markdown table with ratios, PNG plots.

Why separate: the simulator produces per-step arrays; users and the benchmark want a few numbers per
policy (SLO-violation fraction, GPU-seconds, p50/p99 queue time, scale events, peak replicas), their
ratios to ``hpa`` and to ``oracle``, and pictures small enough to commit.

The queue-time percentiles are over requests, of each request's *expected* queue time in its second
(the serving model's per-step mean wait on its replica): they show sustained queueing, not the tail
of individual requests inside a second (that tail is what ``sloViolationFraction`` counts exactly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.replay.sim import PolicyRun
from autoscaler.replay.workload import Workload

FloatArray = npt.NDArray[np.float64]


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    keep = weights > 0
    if not keep.any():
        return 0.0
    v, w = values[keep], weights[keep]
    order = np.argsort(v)
    c = np.cumsum(w[order])
    i = int(np.searchsorted(c, q * c[-1]))
    return float(v[order][min(i, len(v) - 1)])


def summarize(run: PolicyRun) -> dict[str, Any]:
    """The JSON figures of one policy (camelCase, the ``--json`` contract plus extras)."""
    arrived = float(run.arrived.sum())
    viol = float(run.violations.sum() + run.dropped.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(run.arrived > 0, run.queue_wait_sum_us / run.arrived, 0.0)
    return {
        "sloViolationFraction": viol / arrived if arrived else 0.0,
        "gpuSeconds": run.gpu_seconds,
        "p50QueueTimeUs": _weighted_quantile(wait, run.arrived, 0.50),
        "p99QueueTimeUs": _weighted_quantile(wait, run.arrived, 0.99),
        "meanQueueTimeUs": float(run.queue_wait_sum_us.sum() / arrived) if arrived else 0.0,
        "scaleEvents": int(run.scale_events),
        "peakReplicas": int(run.spec_replicas.max()) if run.spec_replicas.size else 0,
        "meanReadyReplicas": float(run.ready_replicas.mean()) if run.ready_replicas.size else 0.0,
        "requests": arrived,
        "droppedRequests": float(run.dropped.sum()),
        "wallSeconds": run.wall_s,
        **run.extra,
    }


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.2f}"


def markdown_table(summaries: dict[str, dict[str, Any]]) -> str:
    """One row per policy, with cost and violation ratios to ``hpa`` and ``oracle`` when present."""
    head = ("| policy | SLO viol. | GPU-s | p50 queue (ms) | p99 queue (ms) | scale events | peak | "
            "viol/hpa | GPU/hpa | viol/oracle | GPU/oracle |")
    lines = [head, "|" + "---|" * 11]
    base, orc = summaries.get("hpa"), summaries.get("oracle")
    for name, s in summaries.items():
        v, g = s["sloViolationFraction"], s["gpuSeconds"]
        cells = [name, f"{v:.4f}", f"{g:,.0f}", f"{s['p50QueueTimeUs'] / 1000:.1f}",
                 f"{s['p99QueueTimeUs'] / 1000:.1f}", str(s["scaleEvents"]), str(s["peakReplicas"])]
        for ref in (base, orc):
            if ref is None:
                cells += ["-", "-"]
            else:
                cells += [_ratio(v, ref["sloViolationFraction"]), _ratio(g, ref["gpuSeconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BASELINES = ("hpa", "keda", "kpa")
"""The policies issue 8's checks compare `default` with, besides the oracle."""
VIOLATIONS_VS_HPA = 0.5
"""Issue 8: `default` has at most this fraction of hpa's SLO-violation fraction..."""
GPU_VS_ORACLE = 1.25
"""...and at most this multiple of the oracle's GPU-seconds (besides hpa's, keda's and kpa's)."""


def criteria(summaries: dict[str, dict[str, Any]], policy: str = "default") -> list[tuple[str, bool | None, str]]:
    """Issue 8's acceptance checks of ``policy`` against the baselines present, as (check, passed, figures).

    ``passed`` is None when a baseline is missing from the replay. "No worse" means both numbers <=.
    """
    me = summaries.get(policy)
    if me is None:
        return []
    v, g = me["sloViolationFraction"], me["gpuSeconds"]
    out: list[tuple[str, bool | None, str]] = []

    def ref(name: str) -> tuple[float, float] | None:
        s = summaries.get(name)
        return None if s is None else (s["sloViolationFraction"], s["gpuSeconds"])

    hpa, orc = ref("hpa"), ref("oracle")
    out.append((f"violations <= {VIOLATIONS_VS_HPA:g} x hpa", None if hpa is None else v <= VIOLATIONS_VS_HPA * hpa[0],
                "-" if hpa is None else f"{v:.4f} vs {VIOLATIONS_VS_HPA * hpa[0]:.4f}"))
    out.append(("GPU-s <= hpa", None if hpa is None else g <= hpa[1],
                "-" if hpa is None else f"{g:,.0f} vs {hpa[1]:,.0f}"))
    out.append((f"GPU-s <= {GPU_VS_ORACLE:g} x oracle", None if orc is None else g <= GPU_VS_ORACLE * orc[1],
                "-" if orc is None else f"{g:,.0f} vs {GPU_VS_ORACLE * orc[1]:,.0f}"))
    for name in ("keda", "kpa"):
        r = ref(name)
        out.append((f"no worse than {name} (both)", None if r is None else (v <= r[0] and g <= r[1]),
                    "-" if r is None else f"{v:.4f} / {g:,.0f} vs {r[0]:.4f} / {r[1]:,.0f}"))
    return out


def checks_target(summaries: dict[str, dict[str, Any]]) -> tuple[float, float] | None:
    """What issue 8's checks ask of one point together: (violation fraction, GPU-seconds) upper limits.

    None unless hpa, keda, kpa and the oracle were all replayed.
    """
    if not all(n in summaries for n in (*BASELINES, "oracle")):
        return None
    v = min(VIOLATIONS_VS_HPA * summaries["hpa"]["sloViolationFraction"], summaries["keda"]["sloViolationFraction"],
            summaries["kpa"]["sloViolationFraction"])
    g = min(summaries["hpa"]["gpuSeconds"], GPU_VS_ORACLE * summaries["oracle"]["gpuSeconds"],
            summaries["keda"]["gpuSeconds"], summaries["kpa"]["gpuSeconds"])
    return v, g


def frontier_sentence(frontier: dict[str, Any]) -> str:
    """One line saying whether any replica schedule could meet every check (a ``checksFrontier`` object)."""
    v, g, lo = frontier["violationFraction"], frontier["gpuSecondsLimit"], frontier["cheapestGpuSecondsLower"]
    up = frontier["cheapestGpuSecondsUpper"]
    head = f"Together the checks ask for <= {v:.4f} violations at <= {g:,.0f} GPU-s. The cheapest schedule there"
    if up is None:
        return f"{head} does not exist: even the largest fleet, all along, violates more (no policy can meet them all)."
    span = f"{lo:,.0f}" if up - lo <= 0.005 * up else f"{lo:,.0f}-{up:,.0f}"
    verdict = {True: "some schedule meets them all", False: "no policy can meet them all",
               None: "too close to tell"}[frontier["feasible"]]
    return f"{head}, knowing the future, costs {span} GPU-s ({frontier_ratio(frontier):.2f}x the limit): {verdict}."


def frontier_ratio(frontier: dict[str, Any]) -> float:
    """The cheapest schedule's cost over the GPU limit, as far as the bracket tells: its upper end where a schedule
    is known to meet the limit (the bracket may not have closed), else its lower end."""
    end = frontier["cheapestGpuSecondsUpper"] if frontier["feasible"] else frontier["cheapestGpuSecondsLower"]
    return float(end) / float(frontier["gpuSecondsLimit"])


def criteria_table(checks: list[tuple[str, bool | None, str]]) -> str:
    lines = ["| check | met | figures |", "|---|---|---|"]
    for name, ok, fig in checks:
        lines.append(f"| {name} | {'-' if ok is None else ('yes' if ok else '**no**')} | {fig} |")
    return "\n".join(lines)


def plot(workload: Workload, runs: dict[str, PolicyRun], path: Path, target_queue_time_us: float) -> Path:
    """Load, replicas per policy and queue time, one panel each; a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = workload.steps
    step = max(1, T // 900)  # ~900 points per line keeps the PNG small (< 200 KB)
    n = T // step
    hours = T > 3 * 3600
    x = (np.arange(n) * step + step / 2) / (3600.0 if hours else 60.0)
    xlabel = "time (hours)" if hours else "time (minutes)"

    def agg(a: FloatArray, how: str = "mean") -> FloatArray:
        b = a[: n * step].reshape(n, step)
        out: FloatArray = b.max(axis=1) if how == "max" else b.mean(axis=1)
        return out

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True, dpi=72)
    ax = axes[0]
    ax.plot(x, agg(workload.counts), color="black", lw=0.8, label="arrivals")
    ax.set_ylabel("requests / s")
    ax2 = ax.twinx()
    ax2.set_ylabel("replicas needed")
    lo, hi = ax.get_ylim()
    ax2.set_ylim(lo / workload.replica_capacity_rps, hi / workload.replica_capacity_rps)
    ax.set_title(f"{workload.name}: load (x{workload.rate_scale:.3g}, peak {workload.peak_rate_rps:.0f} req/s)")
    ax = axes[1]
    for name, r in runs.items():
        ax.plot(x, agg(r.ready_replicas), lw=1.0 if name != "oracle" else 1.6,
                ls="--" if name == "oracle" else "-", label=name)
    ax.set_ylabel("Ready replicas")
    ax.legend(loc="upper left", fontsize=8, ncol=min(6, len(runs)))
    ax.set_title("Ready replicas per policy")
    ax = axes[2]
    for name, r in runs.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            w = agg(r.queue_wait_sum_us) / np.maximum(agg(r.arrived), 1e-9) / 1000.0
        ax.plot(x, np.maximum(w, 1e-3), lw=0.8, label=name)
    ax.axhline(target_queue_time_us / 1000.0, color="red", ls=":", lw=1, label="target")
    ax.set_yscale("log")
    ax.set_ylabel("mean queue time (ms)")
    ax.set_xlabel(xlabel)
    ax.set_title("Queue time (mean over requests, per interval)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    # a 64-colour palette keeps a week of noisy lines well under 200 KB
    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path
