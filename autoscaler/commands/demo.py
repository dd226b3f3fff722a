"""``autoscaler demo``: the whole loop on the local sandbox, watched live, then a report.

Starts the sandbox API server, simulated Triton/NIM pods and a real Prometheus, the controller, and
trace load on five leases; shows a live view; writes a report directory (PNG per lease, Markdown +
HTML summary, CSV). Ctrl-C stops early, cleanly, and still writes the report. See docs/demo.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from autoscaler.demo.scenario import SCENARIOS, SLO_QUEUE_TIME_US, make_plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=180.0, metavar="S",
                        help="wall seconds of load (default 180; 60 still shows a scale-up and a scale-down)")
    parser.add_argument("--speed", type=float, default=None, metavar="X",
                        help="trace seconds played per wall second (default: 10 for 'step'; for 'trace' "
                             "whatever fits the trace, or its first day, into the run)")
    parser.add_argument("--trace", default=None, metavar="NAME|FILE",
                        help="packaged trace name (azure_conv_2023_1s, azure_code_2023_1s, "
                             "servegen_mlarge_days07-13_600s) or a CSV path")
    parser.add_argument("--scenario", default="step", choices=SCENARIOS,
                        help="step: the trace's texture under a clear step up and down (default); "
                             "trace: the trace's own shape")
    parser.add_argument("--report-dir", default=None, metavar="DIR",
                        help="where to write the report (default: ./demo-report-<time>)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON on stdout (the live view goes to stderr)")
    parser.add_argument("--plain", action="store_true", help="plain lines instead of the live table")


def run(args: argparse.Namespace) -> int:
    try:
        plan = make_plan(args.scenario, args.duration, args.speed, args.trace)
    except (ValueError, FileNotFoundError) as exc:
        print(f"autoscaler demo: {exc}", file=sys.stderr)
        return 2
    report_dir = Path(args.report_dir or f"demo-report-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    _log_to(report_dir / "controller.log")
    from autoscaler.demo.live import LiveView

    view = LiveView(sys.stderr if args.json else sys.stdout, force_plain=args.plain)
    try:
        summary = asyncio.run(_main(plan, report_dir, view))
    except (FileNotFoundError, RuntimeError) as exc:  # e.g. no Prometheus binary (PrometheusError)
        print(f"autoscaler demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


async def _main(plan: Any, report_dir: Path, view: Any) -> dict[str, Any]:
    from autoscaler.demo.report import write_report
    from autoscaler.demo.runner import run_demo

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            view.note("stopping (Ctrl-C): the report is still written")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        result = await run_demo(plan, report_dir, stop=stop, view=view, slo_us=SLO_QUEUE_TIME_US)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    # Plotting is CPU work: keep the event loop free of it only in spirit; nothing else runs any more.
    return write_report(result, report_dir, SLO_QUEUE_TIME_US)


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("aiohttp.access", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _print_summary(summary: dict[str, Any]) -> None:
    print()
    w = max([20, *(len(k) for k in summary["leases"])])
    print(f"{'lease':<{w}} {'mode':<8} {'bounds':>6} {'ups':>4} {'downs':>5} {'peak':>4} {'low':>4} "
          f"{'SLO viol':>8} {'GPU-s':>7} {'react s':>7}")
    for key, s in summary["leases"].items():
        react = "—" if s["reactionSeconds"] is None else f"{s['reactionSeconds']:g}"
        print(f"{key:<{w}} {s['mode']:<8} {s['minReplicas']:>2}..{s['maxReplicas']:<2} {s['scaleUps']:>4} "
              f"{s['scaleDowns']:>5} {s['peakReplicas']:>4} {s['lowestReplicas']:>4} "
              f"{100 * s['sloViolationFraction']:>7.1f}% {s['gpuSeconds']:>7.0f} {react:>7}")
    d = summary["reportDir"]
    print(f"\nreport: {d}/summary.html (also summary.md, a PNG per lease, samples.csv, load.csv)")
