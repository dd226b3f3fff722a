"""The demo's report: summary numbers per lease, a PNG per lease, Markdown + HTML, raw CSV and JSON.

Definitions (all times are wall seconds of the run; the trace itself played ``speed`` times faster):

* replicas: ``spec.replicas`` for enforce leases; for a shadow lease the replicas it *recommended*
  (it never patches), so its scale events and peak say what it would have done;
* scale-ups / scale-downs: increases / decreases of that series;
* SLO violation fraction: requests whose queue time exceeded the demo's SLO (50 ms), or that no pod
  accepted, over all requests of the lease (what the load generator measured, not Prometheus);
* GPU-seconds: the integral of the pods that exist (one GPU each), starting ones included, i.e.
  replica-seconds;
* reaction time: from the start of the largest load step (the largest rise of the 5 s mean rate) to
  the first scale-up patch after it (for a shadow lease: the first recommended increase).
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.demo.runner import RunResult
from autoscaler.demo.scenario import NAMESPACE


def _series(result: RunResult, name: str) -> list[dict[str, Any]]:
    return [r for r in result.samples if r["lease"] == name]


def lease_summary(result: RunResult, name: str) -> dict[str, Any]:
    """The ``--json`` numbers of one lease, plus the scale events for the report."""
    st = result.leases[name]
    rows = _series(result, name)
    mode = st.mode
    key = "desired" if mode == "shadow" else "replicas"
    values = [int(r[key]) for r in rows] or [st.replicas]
    times = [float(r["t"]) for r in rows] or [0.0]
    events: list[dict[str, Any]] = []
    for i in range(1, len(values)):
        if values[i] != values[i - 1]:
            events.append({"t": round(times[i], 1), "from": values[i - 1], "to": values[i],
                           "direction": "up" if values[i] > values[i - 1] else "down", "reason": rows[i]["reason"]})
    gpu_s = 0.0
    for i in range(1, len(rows)):
        gpu_s += float(rows[i - 1]["pods"]) * (times[i] - times[i - 1])
    if rows:
        gpu_s += float(rows[-1]["pods"]) * max(0.0, result.elapsed_s - times[-1])
    load = result.load.get(name, {})
    requests = float(load["requests"][0]) if "requests" in load else 0.0
    violated = float(load["violated"][0]) if "violated" in load else 0.0
    step = result.plan.step_at_s
    first_up = next((e["t"] for e in events if e["direction"] == "up" and e["t"] >= step), None)
    return {
        "mode": mode,
        "minReplicas": st.min_replicas,
        "maxReplicas": st.max_replicas,
        "scaleUps": sum(1 for e in events if e["direction"] == "up"),
        "scaleDowns": sum(1 for e in events if e["direction"] == "down"),
        "peakReplicas": max(values),
        "lowestReplicas": min(values),
        "sloViolationFraction": round(violated / requests, 4) if requests else 0.0,
        "gpuSeconds": round(gpu_s, 1),
        "reactionSeconds": None if first_up is None else round(first_up - step, 1),
        "_events": events,
        "_requests": int(requests),
    }


def activator_line(result: RunResult, name: str) -> str | None:
    """What the activator did for a lease sent through it, in one sentence (None: not sent through it)."""
    c = result.activator.get(name)
    if c is None or not c["requests"]:
        return None
    held = round(c["held"])
    waited = f" ({c['heldSeconds'] / held:.1f} s on average, the woken pod's start-up included)" if held else ""
    lost = round(c["requests"] - c["answered"])
    answered = "every one answered by a pod" if not lost else \
        f"{c['answered']:,.0f} answered by a pod, {lost:,} not (in flight at the end of the run, or an error)"
    return (f"Through the activator: {c['requests']:,.0f} requests, {held:,} of them held while no pod was "
            f"Ready{waited}; {answered}.")


def summarize(result: RunResult, report_dir: Path) -> dict[str, Any]:
    """The exact ``--json`` document."""
    leases = {}
    for lease in result.plan.leases:
        s = lease_summary(result, lease.name)
        leases[f"{NAMESPACE}/{lease.name}"] = {k: v for k, v in s.items() if not k.startswith("_")}
    return {"reportDir": str(report_dir), "leases": leases}


def write_csv(result: RunResult, report_dir: Path) -> list[Path]:
    """``samples.csv`` (controller/cluster view, every 0.5 s) and ``load.csv`` (load view, every second)."""
    cols: list[str] = []
    for r in result.samples:
        for k in r:
            if k not in cols:
                cols.append(k)
    samples = report_dir / "samples.csv"
    with samples.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols or ["t", "lease"])
        w.writeheader()
        for r in result.samples:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    load = report_dir / "load.csv"
    with load.open("w", newline="") as fh:
        w2 = csv.writer(fh)
        w2.writerow(["t", "lease", "planned_rate", "request_rate", "mean_queue_ms", "slo_violation_fraction"])
        for lease in result.plan.leases:
            d = result.load.get(lease.name)
            if not d:
                continue
            planned = result.plan.rates[lease.name]
            for i in range(d["rate"].size):
                q = d["queue_ms"][i]
                w2.writerow([i, lease.name, round(float(planned[i]), 3) if i < planned.size else "",
                             int(d["rate"][i]), "" if math.isnan(q) else round(float(q), 3),
                             round(float(d["violations"][i]), 4)])
    return [samples, load]


def plot_lease(result: RunResult, name: str, path: Path, slo_us: float = 50_000.0) -> Path:
    """Four panels sharing the time axis: load, replicas, queue time vs target, GPU (and the lease's metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lease = next(x for x in result.plan.leases if x.name == name)
    rows = _series(result, name)
    summary = lease_summary(result, name)
    st = result.leases[name]
    t = np.array([r["t"] for r in rows], dtype=float)
    load = result.load.get(name, {})
    fig, axes = plt.subplots(4, 1, figsize=(10, 10.5), sharex=True, gridspec_kw={"hspace": 0.12})
    ax_load, ax_rep, ax_q, ax_u = axes
    step = result.plan.step_at_s
    title = f"{NAMESPACE}/{name} ({st.mode}): {lease.story}"
    fig.subplots_adjust(top=0.92)
    fig.suptitle(title, fontsize=13, x=0.06, ha="left", y=0.965)
    fig.text(0.06, 0.938, f"scenario {result.plan.scenario}: trace {result.plan.trace} played at "
             f"{result.plan.speed:g}x;  SLO: queue time <= {slo_us / 1000:g} ms", fontsize=9, color="0.35")

    # 1. load
    if "rate" in load:
        x = np.arange(load["rate"].size)
        ax_load.plot(x, load["rate"], color="0.6", lw=0.8, label="arrivals per second")
        k = np.ones(5) / 5
        ax_load.plot(x, np.convolve(load["rate"], k, mode="same"), color="tab:blue", lw=1.8, label="5 s mean")
    ax_load.set_ylabel("request rate\n(req/s)")
    ax_load.legend(loc="upper right", fontsize=8, frameon=False)

    # 2. replicas
    if rows:
        ready = np.array([r["ready"] for r in rows], dtype=float)
        desired = np.array([r["desired"] for r in rows], dtype=float)
        spec = np.array([r["replicas"] for r in rows], dtype=float)
        ax_rep.fill_between(t, ready, step="post", color="tab:green", alpha=0.25)
        ax_rep.step(t, ready, where="post", color="tab:green", lw=1.8, label="ready")
        ax_rep.step(t, spec, where="post", color="tab:green", lw=1.0, ls=":", label="spec.replicas")
        if st.mode != "invalid":
            ax_rep.step(t, desired, where="post", color="tab:orange", lw=1.6, ls="--",
                        label="desired (recommended, not applied)" if st.mode == "shadow" else "desired")
        ax_rep.axhline(st.max_replicas, color="0.5", lw=0.8, ls="-.")
        ax_rep.text(t[0], st.max_replicas, f" max {st.max_replicas}", va="bottom", fontsize=8, color="0.4")
        ax_rep.set_ylim(0, max(st.max_replicas, float(desired.max()), float(spec.max())) + 1)
        for e in summary["_events"]:
            ax_rep.annotate("▲" if e["direction"] == "up" else "▼", (e["t"], e["to"]), fontsize=8,
                            color="tab:red" if e["direction"] == "up" else "tab:purple", ha="center", va="bottom")
    ax_rep.set_ylabel("replicas")
    ax_rep.legend(loc="upper right", fontsize=8, frameon=False, ncol=3)
    ax_rep.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))

    # 3. queue time
    if "queue_ms" in load:
        x = np.arange(load["queue_ms"].size)
        q = np.clip(load["queue_ms"], 0.05, None)
        ax_q.plot(x, q, color="tab:blue", lw=1.2, label="mean queue time per second (clients)")
    qv = np.array([r.get("queueTime_value") if r.get("queueTime_value") is not None else np.nan for r in rows],
                  dtype=float) / 1000.0
    if rows and np.isfinite(qv).any():
        ax_q.plot(t, np.clip(qv, 0.05, None), color="tab:orange", lw=1.2, label="queueTime the controller saw")
    qt = next((r.get("queueTime_target") for r in rows if r.get("queueTime_target")), None)
    ax_q.axhline((qt or slo_us) / 1000.0, color="tab:red", lw=1.0, ls="--",
                 label=f"target {(qt or slo_us) / 1000:g} ms" if qt else f"SLO {slo_us / 1000:g} ms")
    ax_q.set_yscale("log")
    ax_q.set_ylim(bottom=0.04)
    ax_q.set_ylabel("queue time\n(ms, log)")
    ax_q.legend(loc="upper right", fontsize=8, frameon=False)

    # 4. GPU utilisation, plus the lease's own utilisation-style metric (CPU, KV cache)
    gpu = np.array([r["gpu_util"] if r.get("gpu_util") is not None else np.nan for r in rows], dtype=float)
    if rows:
        ax_u.plot(t, gpu, color="tab:green", lw=1.4, label="GPU utilisation (DCGM, mean over pods)")
    for metric, color, label in (("gpuUtilization", "tab:green", "GPU target"),
                                 ("cpuUtilization", "tab:brown", "CPU utilisation (controller)"),
                                 ("kvCacheUsage", "tab:purple", "KV-cache usage (controller)")):
        tv = next((r.get(f"{metric}_target") for r in rows if r.get(f"{metric}_target") is not None), None)
        if tv is None:
            continue
        if metric != "gpuUtilization":
            v = np.array([r.get(f"{metric}_value") if r.get(f"{metric}_value") is not None else np.nan
                          for r in rows], dtype=float)
            ax_u.plot(t, v, color=color, lw=1.4, label=label)
        ax_u.axhline(tv, color=color, lw=1.0, ls="--", label=f"{metric} target {tv:g} %")
    ax_u.set_ylim(0, 105)
    ax_u.set_ylabel("utilisation\n(%)")
    ax_u.legend(loc="upper right", fontsize=8, frameon=False, ncol=2)
    ax_u.set_xlabel(f"seconds since the load started (1 s here = {result.plan.speed:g} s of trace)")

    for ax in axes:
        ax.axvline(step, color="tab:red", lw=0.8, alpha=0.5)
        ax.grid(alpha=0.25)
        ax.set_xlim(0, max(result.elapsed_s, 1.0))
    react = summary["reactionSeconds"]
    ax_load.annotate(f"largest step (t={step:g} s)" + (f"; first scale-up +{react:g} s" if react is not None else ""),
                     (step, 0.92), xycoords=("data", "axes fraction"), fontsize=8, color="tab:red",
                     xytext=(4, 0), textcoords="offset points")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def write_summary(result: RunResult, report_dir: Path, summary: dict[str, Any], slo_us: float) -> list[Path]:
    """``summary.md``, ``summary.html`` and ``summary.json``."""
    plan = result.plan
    head = [
        "# autoscaler demo report", "",
        f"Scenario **{plan.scenario}**, trace `{plan.trace}` played at {plan.speed:g}x for "
        f"{result.elapsed_s:.0f} s of wall time" + (" (interrupted)" if result.interrupted else "") + ". "
        f"Largest load step at t = {plan.step_at_s:g} s. SLO: queue time <= {slo_us / 1000:g} ms.", "",
        "| lease | mode | bounds | scale-ups | scale-downs | peak | lowest | SLO violations | GPU-seconds | "
        "reaction (s) | requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for lease in plan.leases:
        key = f"{NAMESPACE}/{lease.name}"
        s = summary["leases"][key]
        full = lease_summary(result, lease.name)
        head.append(f"| `{key}` | {s['mode']} | {s['minReplicas']}..{s['maxReplicas']} | {s['scaleUps']} | "
                    f"{s['scaleDowns']} | {s['peakReplicas']} | {s['lowestReplicas']} | "
                    f"{100 * s['sloViolationFraction']:.1f} % | {s['gpuSeconds']:g} | {_fmt(s['reactionSeconds'])} | "
                    f"{full['_requests']} |")
        details += ["", f"## {key}: {lease.story}", "", f"![{key}]({lease.name}.png)", ""]
        if full["_events"]:
            details.append("Scale events" + (" (recommended, shadow mode)" if s["mode"] == "shadow" else "") + ":")
            details.append("")
            details += [f"- t = {e['t']:g} s: {e['from']} -> {e['to']} ({e['reason']})" for e in full["_events"]]
        else:
            details.append("No scale events.")
        for w in result.warnings.get(lease.name, []):
            details.append(f"- Warning Event: `{w}`")
        if (line := activator_line(result, lease.name)) is not None:
            details += ["", line]
    notes = ["", "## Files", "",
             "- `samples.csv`: every 0.5 s per lease: replicas, ready, pods, desired, reason, metric values "
             "and targets as the controller saw them, GPU utilisation from Prometheus;",
             "- `load.csv`: every second per lease: planned and measured request rate, mean queue time, "
             "SLO-violation fraction;", "- `load-<lease>.csv`: the load each lease got (a 1 s trace);",
             "- `policy.yaml`: the cluster policy of the run; `controller.log`: the controller's log.", "",
             "Definitions: see `docs/demo.md`."]
    md = "\n".join(head + details + notes) + "\n"
    md_path = report_dir / "summary.md"
    md_path.write_text(md)
    html_path = report_dir / "summary.html"
    html_path.write_text(_html(result, summary, slo_us))
    json_path = report_dir / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return [md_path, html_path, json_path]


def _html(result: RunResult, summary: dict[str, Any], slo_us: float) -> str:
    e = html.escape
    plan = result.plan
    rows = []
    sections = []
    for lease in plan.leases:
        key = f"{NAMESPACE}/{lease.name}"
        s = summary["leases"][key]
        full = lease_summary(result, lease.name)
        rows.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
            key, s["mode"], f"{s['minReplicas']}..{s['maxReplicas']}", s["scaleUps"], s["scaleDowns"],
            s["peakReplicas"], s["lowestReplicas"], f"{100 * s['sloViolationFraction']:.1f} %", s["gpuSeconds"],
            _fmt(s["reactionSeconds"]), full["_requests"])) + "</tr>")
        evs = "".join(f"<li>t = {ev['t']:g} s: {ev['from']} &rarr; {ev['to']} ({e(ev['reason'])})</li>"
                      for ev in full["_events"]) or "<li>no scale events</li>"
        warns = "".join(f"<li>Warning Event: <code>{e(w)}</code></li>" for w in result.warnings.get(lease.name, []))
        if (line := activator_line(result, lease.name)) is not None:
            warns += f"<li>{e(line)}</li>"
        sections.append(f"<h2>{e(key)}: {e(lease.story)}</h2><img src='{e(lease.name)}.png' alt='{e(key)}' "
                        f"style='max-width:100%'><ul>{evs}{warns}</ul>")
    cols = ["lease", "mode", "bounds", "scale-ups", "scale-downs", "peak", "lowest", "SLO violations", "GPU-seconds",
            "reaction (s)", "requests"]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>autoscaler demo report</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>"
            "<h1>autoscaler demo report</h1>"
            f"<p>Scenario <b>{e(plan.scenario)}</b>, trace <code>{e(plan.trace)}</code> at {plan.speed:g}x for "
            f"{result.elapsed_s:.0f} s{' (interrupted)' if result.interrupted else ''}. Largest load step at "
            f"t = {plan.step_at_s:g} s. SLO: queue time &le; {slo_us / 1000:g} ms.</p>"
            "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(rows) + "</table>"
            + "".join(sections) + "</body></html>\n")


def write_report(result: RunResult, report_dir: Path, slo_us: float = 50_000.0) -> dict[str, Any]:
    """Write every file of the report; return the ``--json`` summary."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "policy.yaml").write_text(result.policy_text)
    summary = summarize(result, report_dir)
    write_csv(result, report_dir)
    for lease in result.plan.leases:
        plot_lease(result, lease.name, report_dir / f"{lease.name}.png", slo_us)
    write_summary(result, report_dir, summary, slo_us)
    return summary
