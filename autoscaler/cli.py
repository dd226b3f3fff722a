"""Command-line entry point.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them up, importing a module when its command is used so that e.g. ``decide``
never pays for kubernetes-asyncio or matplotlib imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from autoscaler import CommandError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("autoscaler.commands.run", "run the controller against a cluster (in-cluster or --kubeconfig)"),
    "demo": ("autoscaler.commands.demo", "sandbox + controller + trace load, live view and a report"),
    "doctor": ("autoscaler.commands.doctor", "check Prometheus, policy, annotations, PromQL series and RBAC"),
    "status": ("autoscaler.commands.status", "table of leases like `kubectl get hpa`"),
    "explain": ("autoscaler.commands.explain", "why a lease has the replicas it has"),
    "decide": ("autoscaler.commands.decide", "one JSON snapshot in, one JSON decision out (pure core)"),
    "replay": ("autoscaler.commands.replay", "replay a trace through policies side by side"),
    "tune": ("autoscaler.commands.tune", "sweep one knob of the shipped policy over a trace; the value to set"),
    "record": ("autoscaler.commands.record", "pull a lease's request-rate history from Prometheus"),
    "activator": ("autoscaler.commands.activator", "hold requests for leases at zero replicas until one is Ready"),
    "sandbox": ("autoscaler.sandbox.cli", "local Kubernetes-API-compatible cluster with simulated Triton pods"),
    "migrate-hpa": ("autoscaler.commands.migrate_hpa", "turn HorizontalPodAutoscalers and KEDA ScaledObjects into "
                                                        "annotations"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoscaler", description="Autoscaler for GPU inference Deployments (Triton, NIM, vLLM): one controller "
        "that reads Prometheus itself and scales each opted-in Deployment's /scale, in place of the "
        "HorizontalPodAutoscaler and the Prometheus Adapter.",
        epilog="Start with `autoscaler demo` (a sandbox cluster, no set-up); `autoscaler COMMAND --help` for one "
        "command; docs/ in the repository for the rest.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = argv[0] if argv else None
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(args_list)
    except ModuleNotFoundError as exc:
        print(f"autoscaler: command {args_list[0]!r} is not available in this build: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(args_list)
    try:
        rc: int = args._module.run(args)
        sys.stdout.flush()  # here, so that a reader who left is handled below and not at interpreter exit
    except CommandError as exc:
        print(f"autoscaler {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `autoscaler replay ... | head`: the reader left; no traceback, and no second error
        devnull = os.open(os.devnull, os.O_WRONLY)  # when Python flushes stdout at exit
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
