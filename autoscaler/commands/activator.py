"""``autoscaler activator``: hold requests for leases at zero replicas until one is Ready (see ``autoscaler.activator``).

Every flag has an ``AUTOSCALER_ACTIVATOR_<NAME>`` environment variable (e.g. ``AUTOSCALER_ACTIVATOR_UPSTREAM``).
SIGTERM / Ctrl-C: the listener closes, requests in flight get up to ``--drain-seconds`` to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from autoscaler import CommandError, logs
from autoscaler.activator import DEFAULT_UPSTREAM, Activator, ActivatorSettings
from autoscaler.kube.api import KubeApi, load_api_client
from autoscaler.telemetry import serve

log = logging.getLogger("autoscaler.activator")


def _env(name: str, default: str) -> str:
    return os.environ.get("AUTOSCALER_ACTIVATOR_" + name.upper().replace("-", "_"), default)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster config, else $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--listen", default=_env("listen", "0.0.0.0:8012"),
                   help="host:port for the leases' traffic (/{namespace}/{deployment}/...) and /metrics /healthz "
                   "/readyz (default 0.0.0.0:8012)")
    p.add_argument("--upstream", default=_env("upstream", DEFAULT_UPSTREAM),
                   help=f"URL template of a lease's Service, {{namespace}} and {{name}} filled in (default "
                   f"{DEFAULT_UPSTREAM})")
    p.add_argument("--hold-timeout", type=float, default=float(_env("hold-timeout", "300")), dest="hold_timeout_s",
                   help="seconds a request may wait for a Ready replica before a 504 (default 300)")
    p.add_argument("--max-held", type=int, default=int(_env("max-held", "1000")),
                   help="requests one lease may hold at once; more get 503 with Retry-After (default 1000)")
    p.add_argument("--max-held-mib", type=float, default=float(_env("max-held-mib", "256")),
                   help="MiB of request bodies all leases may hold at once (they wait in memory); more get 503 with "
                   "Retry-After (default 256)")
    p.add_argument("--drain-seconds", type=float, default=float(_env("drain-seconds", "30")),
                   help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-format", default="auto", choices=["auto", "json", "text"])


async def _main(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    try:
        settings = ActivatorSettings(upstream=args.upstream, hold_timeout_s=args.hold_timeout_s,
                                     max_held=args.max_held, max_held_bytes=int(args.max_held_mib * 2**20))
        listen_port = int(port)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    api = KubeApi(await load_api_client(args.kubeconfig, args.context))
    activator = Activator(api, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await activator.start()
    runner = None
    try:
        try:
            runner, bound = await serve(activator.app(), host or "0.0.0.0", listen_port,
                                        shutdown_timeout=args.drain_seconds)
        except OSError as exc:
            raise CommandError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
        log.info("activator listening on %s:%d, upstream %s, hold up to %g s", host or "0.0.0.0", bound,
                 settings.upstream, settings.hold_timeout_s)
        await stop.wait()
        log.info("stopping: %d requests held", sum(g.held for g in activator.gates.values()))
    finally:
        if runner is not None:
            await runner.cleanup()
        await activator.stop()
        await api.close()
    return 0


def run(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_format)
    return asyncio.run(_main(args))
