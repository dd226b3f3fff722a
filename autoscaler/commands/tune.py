"""``autoscaler tune``: sweep one knob of the shipped policy over a trace and say which value to set.

Prints a Markdown table (or ``--json``) of SLO violations and GPU-seconds per value beside the baselines, the
recommended value and the cluster-policy lines that set it; ``--plot`` draws violations against GPU-seconds. The
trace and the simulated cluster take ``autoscaler replay``'s flags. See docs/replay.md, "Tuning on your traffic".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autoscaler.commands.replay import ProgressBars, add_settings_arguments, setup_from_args
from autoscaler.replay.policies import policy_names
from autoscaler.replay.tune import DEFAULT_KNOB, DEFAULT_VALUES, plot, sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_settings_arguments(p)
    p.add_argument("--knob", default=DEFAULT_KNOB,
                   help="the predictive.KEY to sweep (default: %(default)s, the cost / SLO trade-off)")
    p.add_argument("--values", default=None,
                   help="comma-separated values (default for violationTarget: "
                        f"{','.join(f'{v:g}' for v in DEFAULT_VALUES)}); the cluster policy's own value is added")
    p.add_argument("--max-violations", type=float, default=None,
                   help="the violation budget: recommend the cheapest value within it (default: the cheapest that "
                        "meets every check against the baselines)")
    p.add_argument("--baselines", default="hpa,keda,kpa,oracle",
                   help="policies replayed beside the sweep (default: %(default)s)")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (violations against GPU-seconds) here")
    p.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")


def _values(args: argparse.Namespace) -> list[float]:
    if args.values is None:
        if args.knob != DEFAULT_KNOB:
            raise ValueError(f"--values is needed to sweep {args.knob}")
        return list(DEFAULT_VALUES)
    out = []
    for raw in args.values.split(","):
        if raw.strip():
            try:
                out.append(float(raw))
            except ValueError:
                raise ValueError(f"--values: {raw.strip()!r} is not a number") from None
    if not out:
        raise ValueError("--values: no value given")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        setup = setup_from_args(args)
        values = _values(args)
        baselines = [n.strip() for n in args.baselines.split(",") if n.strip()]
        bad = [n for n in baselines if n not in policy_names() or n == "default"]
        if bad:
            raise ValueError(f"--baselines: {bad} (known: {', '.join(n for n in policy_names() if n != 'default')})")
        if args.max_violations is not None and not 0 <= args.max_violations < 1:
            raise ValueError(f"--max-violations {args.max_violations:g}: a fraction of requests, in [0, 1)")
        result = sweep(args.trace, args.knob, values, setup.settings, setup.cluster, baselines=baselines,
                       max_violations=args.max_violations, peak_replicas=setup.peak_replicas,
                       slo_budget=args.slo_budget, duration_s=args.duration, options=setup.options,
                       progress=ProgressBars() if sys.stderr.isatty() else None, jobs=args.jobs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"autoscaler tune: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    w = result.result.workload
    print(f"trace {w.name}: {w.steps} s, {w.counts.sum():,.0f} requests (x{w.rate_scale:.3g}), peak "
          f"{w.peak_rate_rps:.1f} req/s; {args.knob} swept\n")
    print(result.markdown())
    _pick, why = result.recommended()
    print(f"\nrecommended: {why}")
    snippet = result.snippet()
    if snippet is not None:
        print(f"\nin the cluster policy ConfigMap:\n\n{snippet}")
    return 0
