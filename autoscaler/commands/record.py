"""``autoscaler record``: pull a lease's request history from Prometheus into the replay's trace format.

Why: the shared traces are someone else's traffic; tuning on your own is the point. This reads the
lease's finished-request counter (Triton's ``nv_inference_request_success``, or vLLM's
``vllm:request_success_total`` for a pod without it, as the controller does) and vLLM's token counters when present, with prometheus-api-client's
``custom_query_range`` (synchronous: a one-off export, not the control loop) and writes
``t_seconds,requests[,prompt_tokens,output_tokens]`` with one row per ``--step`` bucket, every bucket
written, as ``autoscaler replay --trace`` reads it.

Each bucket's count is ``sum(increase(counter[step]))`` over the lease's pods, evaluated at the
bucket's end, rounded to whole requests (``increase`` extrapolates at the edges like ``rate``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoscaler.metrics.kinds.request_stats import RequestStats
from autoscaler.metrics.promql import deployment_pods
from autoscaler.metrics.promql import parse_duration as promql_duration

REQUESTS = RequestStats()  # each pod's finished requests from the first server it has, as the controller reads them
PROMPT_TOKENS = "vllm:prompt_tokens_total"
OUTPUT_TOKENS = "vllm:generation_tokens_total"
MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series


def parse_duration(text: str) -> float:
    """``7d``, ``36h``, ``90m``, ``600s`` (any Prometheus duration) or plain seconds."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        seconds = promql_duration(t.replace(" ", ""))
    if seconds is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 7d, 12h, 30m, 600s)")
    return seconds


def parse_when(text: str | None) -> float:
    if text is None or text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prometheus", required=True, help="Prometheus base URL")
    p.add_argument("--lease", required=True, metavar="NS/NAME", help="the Deployment (its pods are NAME-<hash>-<id>)")
    p.add_argument("--since", default="7d", help="how far back (default 7d)")
    p.add_argument("--end", default=None, help="end of the range: epoch seconds or RFC 3339 (default now)")
    p.add_argument("--step", default="60s", help="bucket width (default 60s)")
    p.add_argument("--out", required=True, type=Path, help="trace CSV to write")


def _series(prom: Any, query: str, start: float, end: float, step: float) -> dict[float, float]:
    out: dict[float, float] = {}
    t = start
    while t <= end:
        t1 = min(end, t + step * (MAX_POINTS - 1))
        res = prom.custom_query_range(query, start_time=datetime.fromtimestamp(t, UTC),
                                      end_time=datetime.fromtimestamp(t1, UTC), step=f"{int(step)}s")
        for series in res:
            for ts, val in series.get("values", []):
                v = float(val)
                if math.isfinite(v):
                    out[round(float(ts), 3)] = out.get(round(float(ts), 3), 0.0) + v
        t = t1 + step
    return out


def record(url: str, lease: str, since_s: float, end: float, step_s: float) -> tuple[list[str], list[list[float]]]:
    """Rows of the trace (bucket start relative to the first bucket) and the header."""
    from prometheus_api_client import PrometheusConnect

    ns, _, name = lease.partition("/")
    if not ns or not name:
        raise ValueError(f"--lease must be NAMESPACE/NAME, got {lease!r}")
    prom = PrometheusConnect(url=url, disable_ssl=True)
    sel = deployment_pods(ns, name)
    first_end = math.floor((end - since_s) / step_s) * step_s + step_s
    last_end = math.floor(end / step_s) * step_s
    window = f"{int(step_s)}s"
    per_pod = REQUESTS.finished_by_pod(sel, window, fn="increase", failures=False)
    cols = {"requests": _series(prom, f"sum({per_pod})", first_end, last_end, step_s)}
    for col, metric in (("prompt_tokens", PROMPT_TOKENS), ("output_tokens", OUTPUT_TOKENS)):
        got = _series(prom, f'sum(increase({{__name__="{metric}",{sel}}}[{window}]))', first_end, last_end, step_s)
        if got:
            cols[col] = got
    header = ["t_seconds", *cols]
    n = round((last_end - first_end) / step_s) + 1
    rows = []
    for i in range(max(0, n)):
        t = round(first_end + i * step_s, 3)
        rows.append([i * step_s, *[max(0.0, round(c.get(t, 0.0))) for c in cols.values()]])
    return header, rows


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_duration(args.since)
        step = parse_duration(args.step)
        end = parse_when(args.end)
        header, rows = record(args.prometheus, args.lease, since, end, step)
    except Exception as exc:  # a one-off export: report any failure plainly
        print(f"autoscaler record: {exc}", file=sys.stderr)
        return 2
    t0 = datetime.fromtimestamp(end - since, UTC).isoformat()
    lines = [f"# source: {args.prometheus} lease {args.lease} ({' or '.join(REQUESTS.success_counters)} increase per bucket)",
             f"# bucket_seconds={int(step)}  t0={t0}",
             "# requests: arrivals counted as successful requests per bucket; tokens summed when present",
             ",".join(header)]
    lines += [",".join(str(int(v)) if float(v).is_integer() else f"{v:g}" for v in r) for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    total = sum(r[1] for r in rows)
    print(f"wrote {args.out}: {len(rows)} buckets of {int(step)} s, {total:,.0f} requests", file=sys.stderr)
    return 0
