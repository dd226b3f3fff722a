"""``autoscaler sandbox up``: a local Kubernetes-API-compatible cluster with simulated inference pods.

Starts the API server and controllers with the scenario's deployments (``--empty`` for none), the
data plane (simulated Triton pods + a real Prometheus) when it is available, writes a kubeconfig,
prints the URLs and runs until Ctrl-C / SIGTERM, then stops everything (no orphaned Prometheus).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.scenario import Scenario, ScenarioError, load_scenario

log = logging.getLogger("autoscaler.sandbox")
DEFAULT_KUBECONFIG = Path("~/.kube/autoscaler-sandbox.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sub.required = True
    up = sub.add_parser("up", help="start the sandbox cluster and run until interrupted",
                        description="start the sandbox cluster and run until Ctrl-C / SIGTERM")
    up.add_argument("--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG,
                    help=f"where to write the kubeconfig (default {DEFAULT_KUBECONFIG})")
    up.add_argument("--api-port", type=int, default=0, help="API server port on 127.0.0.1 (0 = any free port)")
    up.add_argument("--prometheus-port", type=int, default=0, help="Prometheus port (0 = any free port)")
    up.add_argument("--scenario", type=Path, default=None,
                    help="scenario YAML (default config/sandbox-scenario.yaml)")
    up.add_argument("--empty", action="store_true", help="start without the scenario's deployments")
    up.add_argument("--token", default=None, help="require this bearer token from clients")
    up.add_argument("--startup-seconds", type=float, default=None,
                    help="default Running -> Ready delay of pods (overrides the scenario)")
    up.add_argument("--rolling-updates", action="store_true",
                    help="roll template changes out as each Deployment's strategy says (maxSurge / maxUnavailable, "
                         "Recreate), as a real cluster does; default: replace all pods at once")
    up.add_argument("--activator", action="store_true",
                    help="also run an activator (autoscaler activator) in front of the gateway, scraped by Prometheus: "
                         "requests to it for a lease at zero are held until a pod is Ready")
    up.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"autoscaler sandbox: {exc}", file=sys.stderr)
        return 2
    if args.empty:
        scenario = scenario.model_copy(update={"deployments": [], "objects": []})
    if args.startup_seconds is not None:
        scenario = scenario.model_copy(update={"startupSeconds": args.startup_seconds})
    try:
        return asyncio.run(_up(args, scenario))
    except KeyboardInterrupt:
        return 130


def _load_data_plane(args: argparse.Namespace) -> Any | None:
    try:
        module = importlib.import_module("autoscaler.sandbox.dataplane")
    except ImportError as exc:
        log.info("data plane not available: %s", exc)
        return None
    return module.DataPlane(prometheus_port=args.prometheus_port)


async def _up(args: argparse.Namespace, scenario: Scenario) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    plane = _load_data_plane(args)
    prometheus_url = "not available"
    if plane is not None:
        try:
            await plane.start()
            prometheus_url = str(plane.prometheus_url)
        except Exception as exc:
            log.error("the data plane did not start, running without it: %s", exc)
            await _stop_quietly(plane)
            plane = None
    try:
        cluster = SandboxCluster.from_scenario(scenario, port=args.api_port, token=args.token, hooks=plane,
                                               rolling_updates=args.rolling_updates)
        await cluster.start()
    except (OSError, ValueError) as exc:
        print(f"autoscaler sandbox: cannot start the API server: {exc}", file=sys.stderr)
        if plane is not None:
            await _stop_quietly(plane)
        return 1
    try:
        path = cluster.write_kubeconfig(args.kubeconfig)
        print(f"api:        {cluster.url}", flush=True)
        print(f"prometheus: {prometheus_url}", flush=True)
        if plane is not None:
            print(f"gateway:    http://127.0.0.1:{plane.gateway_port}/<namespace>/<deployment>/... (a request to a "
                  "Ready pod, 503 with none)", flush=True)
            if args.activator:
                activator = await plane.start_activator(path)
                print(f"activator:  {activator}/<namespace>/<deployment>/... (held while no pod is Ready; wake "
                      "query: autoscaler_activator_requests_total)", flush=True)
        print(f"kubeconfig: {path}", flush=True)
        print(f"            export KUBECONFIG={path}", flush=True)
        if plane is not None:
            for d in scenario.deployments:
                if d.load is not None:
                    try:
                        await plane.start_load(d.namespace, d.name, d.load)
                    except Exception:
                        log.exception("start_load failed for %s/%s", d.namespace, d.name)
        await stop.wait()
        print("stopping", flush=True)
    finally:
        await cluster.stop()
        if plane is not None:
            await _stop_quietly(plane)
    return 0


async def _stop_quietly(plane: Any) -> None:
    try:
        await plane.stop()
    except Exception:
        log.exception("stopping the data plane failed")
