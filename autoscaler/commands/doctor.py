"""``autoscaler doctor``: check Prometheus, the policy, annotations, PromQL series, rules, operator labels, RBAC.

Prints a checklist (``--json`` for scripts), each finding with its fix; exits 1 when any check fails.
Works against any cluster through a kubeconfig, and against ``autoscaler sandbox up``. See docs/doctor.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rich.console import Console
from rich.markup import escape

from autoscaler.config import LEADER_LEASE, POLICY_CONFIGMAP, POLICY_NAMESPACE
from autoscaler.doctor.checks import FAIL, OK, SKIP, WARN, Context, Finding, run_checks
from autoscaler.kube.api import KubeApi

MARK = {OK: ("✔", "green"), WARN: ("!", "yellow"), FAIL: ("✖", "red"), SKIP: ("-", "dim")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
                                                           "or in-cluster)")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument("--prometheus-url", default=None, help="Prometheus base URL (default: the policy's "
                                                               "prometheus.url)")
    parser.add_argument("--namespace", "-n", default=None, help="only check leases in this namespace")
    parser.add_argument("--policy-namespace", default=POLICY_NAMESPACE,
                        help="namespace of the policy ConfigMap (default inference-autoscaler)")
    parser.add_argument("--configmap", default=POLICY_CONFIGMAP, help="policy ConfigMap name")
    parser.add_argument("--lease-name", default=LEADER_LEASE,
                        help="the controller's leader-election Lease, in --policy-namespace (default inference-autoscaler)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


async def diagnose(args: argparse.Namespace) -> list[Finding]:
    """Connect and run every check."""
    try:
        api = await KubeApi.connect(args.kubeconfig, args.context)
    except Exception as exc:  # no kubeconfig, unreadable file, bad context: one finding, not a traceback
        return [Finding("kubernetes", FAIL, f"cannot load Kubernetes credentials: {exc}",
                        "pass --kubeconfig (and --context), or run inside the cluster")]
    try:
        ctx = Context(api, args.prometheus_url, policy_namespace=args.policy_namespace, configmap=args.configmap,
                      lease_namespace=args.namespace, leader_lease=args.lease_name)
        return await run_checks(ctx)
    finally:
        await api.close()


def run(args: argparse.Namespace) -> int:
    findings = asyncio.run(diagnose(args))
    failed = any(f.status == FAIL for f in findings)
    if args.json:
        print(json.dumps({"ok": not failed, "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        print_checklist(findings)
    return 1 if failed else 0


def print_checklist(findings: list[Finding], console: Console | None = None) -> None:
    console = console or Console(file=sys.stdout, highlight=False)
    for f in findings:
        mark, style = MARK.get(f.status, ("?", ""))
        subject = f" [bold]{escape(f.subject)}[/bold]" if f.subject else ""
        console.print(f"[{style}]{mark}[/{style}] {f.check:<11}{subject} {escape(f.detail)}", soft_wrap=True)
        if f.fix and f.status in (FAIL, WARN):
            console.print(f"    [dim]fix:[/dim] {escape(f.fix)}", soft_wrap=True)
    n = {s: sum(1 for f in findings if f.status == s) for s in (OK, WARN, FAIL, SKIP)}
    console.print(f"\n{n[OK]} ok, {n[WARN]} warnings, {n[FAIL]} failed, {n[SKIP]} skipped")
