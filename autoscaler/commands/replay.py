"""``autoscaler replay``: replay a request trace through scaling policies side by side.

Prints a Markdown table (or ``--json``), optionally writes PNG plots. See docs/replay.md. A progress
bar goes to stderr when it is a terminal; stdout carries only the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from autoscaler.config import ClusterPolicy, PolicyError, load_policy
from autoscaler.replay.policies import ReplaySettings, is_policy_name, policy_names
from autoscaler.replay.report import criteria, criteria_table, frontier_sentence, markdown_table, plot
from autoscaler.replay.run import DEFAULT_POLICIES, replay
from autoscaler.replay.workload import DEFAULT_SERVING
from autoscaler.serving import ServingConfig


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The trace, the cluster policy and the simulated cluster: shared with ``autoscaler tune``."""
    p.add_argument("--trace", required=True, help="trace CSV (t_seconds,requests[,prompt_tokens,output_tokens]) "
                   "or a packaged trace name")
    p.add_argument("--config", type=Path, default=None,
                   help="cluster policy YAML; `default` uses its algorithm (default: the shipped config/policy.yaml)")
    p.add_argument("--peak-replicas", type=float, default=20.0,
                   help="rescale the trace so its peak (60 s average) needs N replicas at the target; 0 = as is")
    p.add_argument("--startup-seconds", type=float, default=120.0, help="pod creation to Ready (default 120)")
    p.add_argument("--target-queue-time-us", type=float, default=10000.0, help="SLO queue-time target (default 10000)")
    p.add_argument("--scrape-interval", type=float, default=15.0, help="Prometheus scrape interval, s (default 15)")
    p.add_argument("--rate-window", type=float, default=60.0, help="rate() window, s (default 60)")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=None, help="default: twice --peak-replicas")
    p.add_argument("--slo-budget", type=float, default=0.01,
                   help="fraction of requests the oracle may let exceed the target (default 0.01)")
    p.add_argument("--serving", default=None, help="serving model JSON (the sandbox's serving annotation keys)")
    p.add_argument("--duration", type=float, default=None, help="replay only the first S seconds of the trace")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes for the policies (default: one per CPU on traces of 6 h or more, else 1; "
                        "the figures are the same)")
    p.add_argument("--policy-option", action="append", default=[], metavar="POLICY.KEY=VALUE",
                   help="override one knob of a policy, repeatable (e.g. predictive.violationTarget=0.04, "
                        "kpa.targetUtilization=0.7)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_settings_arguments(p)
    p.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                   help="comma-separated: hpa, hpa-gpu, keda, kpa, default, oracle; NAME+zero: NAME under the "
                        "scale-to-zero layer (default: %(default)s)")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (load, replicas, queue time) here")
    p.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")


class ProgressBars:
    """One stderr line with every running policy's progress (several run at once with ``--jobs``)."""

    def __init__(self) -> None:
        self.fracs: dict[str, float] = {}

    def __call__(self, name: str, frac: float) -> None:
        self.fracs[name] = frac
        running = {n: f for n, f in self.fracs.items() if f < 1.0}
        if len(running) <= 1:
            n, f = (name, frac) if not running else next(iter(running.items()))
            width = 30
            done = int(f * width)
            line = f"{n:>8s} [{'#' * done}{'.' * (width - done)}] {f * 100:5.1f}%"
        else:
            line = "  ".join(f"{n} {f * 100:3.0f}%" for n, f in running.items())
        sys.stderr.write(f"\r{line:<79s}")
        if not running:
            sys.stderr.write("\n")
            self.fracs.clear()
        sys.stderr.flush()


def parse_options(items: list[str]) -> dict[str, float]:
    """``POLICY.KEY=NUMBER`` items as a dict (booleans as 1 / 0)."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--policy-option {item!r}: expected POLICY.KEY=VALUE, e.g. predictive.violationTarget=0.04")
        low = raw.strip().lower()
        try:
            out[key.strip()] = 1.0 if low == "true" else 0.0 if low == "false" else float(raw)
        except ValueError:
            raise ValueError(f"--policy-option {item!r}: {raw!r} is not a number") from None
    return out


@dataclass(frozen=True)
class Setup:
    """What :func:`add_settings_arguments`' flags ask for, checked."""

    cluster: ClusterPolicy
    settings: ReplaySettings
    peak_replicas: float | None
    options: dict[str, float]


def setup_from_args(args: argparse.Namespace) -> Setup:
    """The cluster policy, the simulated cluster and the policy options of the command line (a ValueError saying
    what is wrong)."""
    try:
        cluster = load_policy(args.config) if args.config else load_policy()
        serving = ServingConfig.from_annotation(args.serving) if args.serving else DEFAULT_SERVING
    except (PolicyError, OSError) as exc:
        raise ValueError(str(exc)) from None
    auto = "zero.waketargetperreplica=auto"  # the one option that is not a number: into the cluster policy
    if auto in [o.replace(" ", "").lower() for o in args.policy_option]:
        stz = cluster.autoscaling.scale_to_zero.model_copy(update={"wake_target": "auto"})
        cluster = cluster.model_copy(update={"autoscaling": cluster.autoscaling.model_copy(
            update={"scale_to_zero": stz})})
    options = parse_options([o for o in args.policy_option if o.replace(" ", "").lower() != auto])
    known = [*policy_names(), "zero"]
    unknown = sorted({k.split(".", 1)[0] for k in options} - set(known))
    if unknown:
        raise ValueError(f"--policy-option: unknown policies {unknown} (known: {', '.join(known)})")
    peak = args.peak_replicas if args.peak_replicas and args.peak_replicas > 0 else None
    max_r = args.max_replicas or max(args.min_replicas + 1, round(2 * (peak or 20)))
    settings = ReplaySettings(serving=serving, target_queue_time_us=args.target_queue_time_us,
                              startup_s=args.startup_seconds, scrape_interval_s=args.scrape_interval,
                              rate_window_s=args.rate_window, min_replicas=args.min_replicas, max_replicas=max_r,
                              seed=args.seed)
    return Setup(cluster, settings, peak, options)


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    bad = [n for n in names if not is_policy_name(n)]
    if bad:
        print(f"autoscaler replay: unknown policies {bad} (known: {', '.join(policy_names())}; NAME+zero: NAME "
              "under the scale-to-zero layer)", file=sys.stderr)
        return 2
    try:
        setup = setup_from_args(args)
    except ValueError as exc:
        print(f"autoscaler replay: {exc}", file=sys.stderr)
        return 2
    cluster, settings, peak, options = setup.cluster, setup.settings, setup.peak_replicas, setup.options
    try:
        result = replay(args.trace, names, settings, cluster, peak_replicas=peak, slo_budget=args.slo_budget,
                        duration_s=args.duration, options=options, progress=ProgressBars() if sys.stderr.isatty() else None,
                        jobs=args.jobs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"autoscaler replay: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(result.workload, result.runs, args.plot, args.target_queue_time_us)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        w = result.workload
        print(f"trace {w.name}: {w.steps} s, {w.counts.sum():,.0f} requests (x{w.rate_scale:.3g}), peak "
              f"{w.peak_rate_rps:.1f} req/s, {w.replica_capacity_rps:.1f} req/s per replica at the target\n")
        print(markdown_table(result.summaries))
        checks = criteria(result.summaries)
        if checks:
            print(f"\nchecks for default (issue 8):\n{criteria_table(checks)}")
        frontier = result.checks_frontier()
        if frontier is not None:
            print(f"\n{frontier_sentence(frontier)}")
    return 0
