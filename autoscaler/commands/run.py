"""``autoscaler run``: the controller, in-cluster or against any kubeconfig.

Every flag has an ``AUTOSCALER_<NAME>`` environment variable (e.g. ``AUTOSCALER_PROMETHEUS_URL``).
SIGTERM / Ctrl-C stop it gracefully: the loop finishes its tick, watches and servers close.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from autoscaler import logs
from autoscaler.config import PolicyError
from autoscaler.controller import Controller, settings_from_env
from autoscaler.kube.api import KubeApi, load_api_client

log = logging.getLogger("autoscaler.run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster config, else $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--namespace", help="namespace of the policy ConfigMap and the leader Lease")
    p.add_argument("--configmap", help="policy ConfigMap name (default inference-autoscaler-policy)")
    p.add_argument("--policy-file", help="policy YAML used until the ConfigMap exists (default: shipped policy)")
    p.add_argument("--prometheus-url", help="overrides the policy's prometheus.url")
    p.add_argument("--interval", type=float, dest="interval_s", help="loop interval in seconds (overrides policy)")
    p.add_argument("--dry-run", action="store_true", default=None, help="decide and report, never scale")
    p.add_argument("--no-leader-election", dest="leader_election", action="store_false", default=None)
    p.add_argument("--lease-name", help="leader election Lease name")
    p.add_argument("--identity", help="leader election identity (default: hostname + random suffix)")
    p.add_argument("--listen", default=None, help="host:port for /metrics /healthz /readyz (default 0.0.0.0:8080)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-format", default="auto", choices=["auto", "json", "text"])


async def _main(args: argparse.Namespace) -> int:
    host = port = None
    if args.listen:
        h, _, prt = args.listen.rpartition(":")
        host, port = h or "0.0.0.0", int(prt)
    settings = settings_from_env(
        kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace, configmap=args.configmap,
        policy_file=args.policy_file, prometheus_url=args.prometheus_url, interval_s=args.interval_s,
        dry_run=args.dry_run, leader_election=args.leader_election, lease_name=args.lease_name,
        identity=args.identity, listen_host=host, listen_port=port,
    )
    api_client = await load_api_client(settings.kubeconfig, settings.context)
    api = KubeApi(api_client)
    try:
        controller = Controller(api, settings)
    except PolicyError as exc:
        log.error("%s", exc)
        await api.close()
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, controller.stop.set)
    try:
        await controller.run(api_client=api_client)
    finally:
        await api.close()
    log.info("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_format)
    return asyncio.run(_main(args))
