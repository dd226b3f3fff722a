"""Run the demo: sandbox + data plane (real Prometheus) + controller + load, sampled twice a second.

Everything runs in this process on one event loop, except Prometheus (a child process that the data
plane stops, and that the kernel kills if this process dies). ``stop`` (set by Ctrl-C) ends the run
early; whatever was sampled until then is returned, so the report is still written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.config import parse_policy, resolve_lease
from autoscaler.controller import Controller, Settings
from autoscaler.demo.scenario import DEMO_POLICY, NAMESPACE, Plan, write_load
from autoscaler.kube.api import KubeApi
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.dataplane import DataPlane, activator_process
from autoscaler.sandbox.resources import DEPLOYMENTS, EVENTS

log = logging.getLogger("autoscaler.demo")
SAMPLE_S = 0.5


@dataclass
class LeaseState:
    """What the live view shows for one lease at one moment."""

    name: str
    mode: str
    story: str
    replicas: int = 1
    ready: int = 0
    pods: int = 0
    desired: int | None = None
    min_replicas: int = 1
    max_replicas: int = 1
    metrics: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    message: str = ""
    rate: float = 0.0


@dataclass
class RunResult:
    """Everything the report needs."""

    plan: Plan
    samples: list[dict[str, Any]]
    """One row per lease per sample: t, lease, replicas, ready, pods, desired, reason, metric values, gpu."""
    load: dict[str, dict[str, np.ndarray]]
    """Per lease: per-second arrays ``rate``, ``queue_ms`` (mean of served), ``violations`` (fraction)."""
    leases: dict[str, LeaseState]
    warnings: dict[str, list[str]]
    elapsed_s: float
    interrupted: bool
    policy_text: str
    activator: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per lease sent through the activator: what it counted (``requests``, ``held``: waited for a Ready pod,
    ``heldSeconds``: their total wait, ``answered``: 200s from a pod)."""


def metric_value(m: dict[str, Any]) -> float | None:
    """A metric's value in its target's unit (CPU: utilisation percent of the requests, not cores)."""
    if m.get("name") == "cpuUtilization":
        u = m.get("utilization")
        return None if u is None else float(u)
    v = m.get("value")
    return None if v is None else float(v)


class View:
    """What the runner reports to (the live view implements it; tests may pass this no-op one)."""

    def start(self, plan: Plan) -> None:
        """The run is about to start."""

    def note(self, message: str) -> None:
        """A one-off message (set-up steps, scale events)."""

    def update(self, t: float, states: list[LeaseState]) -> None:
        """A new sample."""

    def stop(self) -> None:
        """The run is over."""


async def _gpu_util(session: aiohttp.ClientSession, url: str) -> dict[str, list[float]]:
    """GPU utilisation per pod as Prometheus sees it (dcgm-exporter, ``exported_pod`` labels)."""
    q = f'DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{NAMESPACE}"}}'
    try:
        async with session.get(f"{url}/api/v1/query", params={"query": q},
                               timeout=aiohttp.ClientTimeout(total=2)) as resp:
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return {}
    out: dict[str, list[float]] = {}
    for s in (body.get("data") or {}).get("result") or []:
        pod = str(s["metric"].get("exported_pod", ""))
        out.setdefault(pod.rsplit("-", 2)[0], []).append(float(s["value"][1]))
    return out


async def _wait_for_targets(session: aiohttp.ClientSession, url: str, n: int, stop: asyncio.Event,
                            timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    q = f'count(up{{namespace="{NAMESPACE}"}} == 1)'
    while time.monotonic() < deadline and not stop.is_set():
        try:
            async with session.get(f"{url}/api/v1/query", params={"query": q}) as resp:
                res = (await resp.json())["data"]["result"]
            if res and float(res[0]["value"][1]) >= n:
                return True
        except (aiohttp.ClientError, KeyError, ValueError):
            pass
        await asyncio.sleep(0.5)
    return False


def _per_second(arrivals: np.ndarray, queue_s: np.ndarray, t0: float, n: int,
                slo_us: float) -> dict[str, np.ndarray]:
    t = arrivals - t0
    keep = (t >= 0) & (t < n)
    t, q = t[keep], queue_s[keep]
    idx = t.astype(np.int64)
    count = np.bincount(idx, minlength=n).astype(np.float64)[:n]
    served = ~np.isnan(q)
    qsum = np.bincount(idx[served], weights=q[served], minlength=n)[:n]
    nserved = np.bincount(idx[served], minlength=n).astype(np.float64)[:n]
    bad = ~served | (np.nan_to_num(q, nan=0.0) * 1e6 > slo_us)
    over = np.bincount(idx, weights=bad.astype(np.float64), minlength=n)[:n]
    return {
        "rate": count,
        "queue_ms": np.divide(qsum * 1000.0, nserved, out=np.full(n, np.nan), where=nserved > 0),
        "violations": np.divide(over, count, out=np.zeros(n), where=count > 0),
        "requests": np.array([float(count.sum())]),
        "violated": np.array([float(over.sum())]),
    }


async def run_demo(plan: Plan, workdir: Path, *, stop: asyncio.Event, view: View | None = None,
                   slo_us: float = 50_000.0, policy_text: str = DEMO_POLICY,
                   clock: Callable[[], float] = time.monotonic) -> RunResult:
    """Run the whole demo for ``plan.duration_s`` seconds (or until ``stop``); never leaves a process behind."""
    view = view or View()
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before anything runs)
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(policy_text)
    policy = parse_policy(policy_text, source=str(policy_file))
    loads = {lease.name: write_load(plan, lease, workdir) for lease in plan.leases}
    states = {lease.name: LeaseState(lease.name, lease.expected_mode, lease.story) for lease in plan.leases}
    samples: list[dict[str, Any]] = []
    warnings: dict[str, list[str]] = {lease.name: [] for lease in plan.leases}
    per_second: dict[str, dict[str, np.ndarray]] = {}
    interrupted = False
    elapsed = 0.0
    activated: dict[str, dict[str, float]] = {}
    view.start(plan)
    with tempfile.TemporaryDirectory(prefix="autoscaler-demo-") as tmp:
        view.note("starting Prometheus and the sandbox API server")
        async with DataPlane(workdir=Path(tmp) / "dataplane") as dp, \
                SandboxCluster(hooks=dp, startup_seconds=1.0, pending_seconds=0.2, terminating_seconds=0.5) as c:
            c.ensure_namespace(NAMESPACE)
            for lease in plan.leases:
                c.create_deployment(lease.name, **lease.deployment())
            for lease in plan.leases:
                await c.wait_for_ready(NAMESPACE, lease.name)
            kubeconfig = c.write_kubeconfig(Path(tmp) / "kubeconfig")
            proc = getattr(dp.prometheus, "proc", None)
            view.note(f"Prometheus (pid {getattr(proc, 'pid', '?')}) at {dp.prometheus_url}; {len(plan.leases)} "
                      "deployments ready; waiting for Prometheus to scrape their pods")
            async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as closers:
                await _wait_for_targets(session, dp.prometheus_url, len(plan.leases), stop)
                # the activator in its own process, as in a cluster, in front of the gateway, scraped by Prometheus
                activator = await closers.enter_async_context(activator_process(
                    kubeconfig, dp.upstream, "--hold-timeout", "60", "--drain-seconds", "1", "--log-level", "warning"))
                dp.scrape_activator(activator)
                api = await KubeApi.connect(str(kubeconfig))
                settings = Settings(policy_file=str(policy_file), prometheus_url=dp.prometheus_url,
                                    leader_election=False, listen_port=0, state_granularity_s=2.0,
                                    status_min_interval_s=1.0, identity="demo")
                ctl = Controller(api, settings)
                ctl_task = asyncio.create_task(ctl.run(api_client=api.api_client, serve_http=False))
                t0 = clock()
                try:
                    for lease in plan.leases:
                        via = f"{activator}/{NAMESPACE}/{lease.name}/v2/models/{lease.name}/infer" \
                            if lease.via_activator else None
                        await dp.start_load(NAMESPACE, lease.name, loads[lease.name], via=via)
                    view.note(f"load started: scenario {plan.scenario}, trace {plan.trace} at {plan.speed:g}x; "
                              "controller running")
                    next_at = t0
                    while not stop.is_set():
                        elapsed = clock() - t0
                        if elapsed >= plan.duration_s:
                            break
                        if ctl_task.done():
                            view.note("the controller stopped unexpectedly; ending the run")
                            break
                        gpu = await _gpu_util(session, dp.prometheus_url)
                        _sample(c, ctl, dp, plan, states, policy, gpu, elapsed, samples, warnings, view, clock)
                        view.update(elapsed, list(states.values()))
                        next_at += SAMPLE_S
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(max(0.0, next_at - clock())):
                                await stop.wait()
                    interrupted = stop.is_set()
                    elapsed = min(clock() - t0, plan.duration_s)
                finally:
                    for lease in plan.leases:
                        await dp.stop_load(NAMESPACE, lease.name)
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                        activated = await _activator_counts(session, activator)
                    ctl.stop.set()
                    try:
                        async with asyncio.timeout(15):
                            await ctl_task
                    except Exception as exc:  # the report matters more than a controller shutdown error
                        log.warning("controller shutdown: %s", exc)
                    await closers.aclose()
                    await api.close()
                n = max(1, int(np.ceil(elapsed)))
                for lease in plan.leases:
                    st = dp.load_stats(NAMESPACE, lease.name)
                    arr = np.frombuffer(st.arrival_times, dtype=np.float64).copy()
                    q = np.frombuffer(st.queue_times, dtype=np.float64).copy()
                    per_second[lease.name] = _per_second(arr, q, t0, n, slo_us)
        view.note("stopped the controller, the sandbox and Prometheus")
    view.stop()
    return RunResult(plan, samples, per_second, states, warnings, elapsed, interrupted, policy_text, activated)


async def _activator_counts(session: aiohttp.ClientSession, url: str) -> dict[str, dict[str, float]]:
    """What the activator counted per lease (from its /metrics)."""
    async with session.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
        text = await r.text()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for smp in family.samples:
            dep = smp.labels.get("deployment")
            if dep is None or smp.labels.get("namespace") != NAMESPACE:
                continue
            c = out.setdefault(dep, {"requests": 0.0, "held": 0.0, "heldSeconds": 0.0, "answered": 0.0})
            if smp.name == "autoscaler_activator_requests_total":
                c["requests"] = smp.value
            elif smp.name == "autoscaler_activator_hold_seconds_count":
                c["held"] += smp.value
            elif smp.name == "autoscaler_activator_hold_seconds_bucket" and smp.labels.get("le") == "0.01":
                c["held"] -= smp.value  # forwarded at once: not held
            elif smp.name == "autoscaler_activator_hold_seconds_sum":
                c["heldSeconds"] = smp.value
            elif smp.name == "autoscaler_activator_responses_total" and smp.labels.get("code") == "200":
                c["answered"] = smp.value
    return out


def _sample(c: SandboxCluster, ctl: Controller, dp: DataPlane, plan: Plan, states: dict[str, LeaseState],
            policy: Any, gpu: dict[str, list[float]], t: float, samples: list[dict[str, Any]],
            warnings: dict[str, list[str]], view: View, clock: Callable[[], float]) -> None:
    events = c.store.list_objects(EVENTS.storage_key, NAMESPACE)
    for lease in plan.leases:
        st = states[lease.name]
        dep = c.registry.get(DEPLOYMENTS, NAMESPACE, lease.name)
        status = dep.get("status") or {}
        replicas = int(dep["spec"].get("replicas", 1))
        rt = ctl.runtime.get((NAMESPACE, lease.name))
        last = rt.last if rt is not None else {}
        prev_replicas, prev_desired = st.replicas, st.desired
        st.replicas, st.ready, st.pods = replicas, int(status.get("readyReplicas") or 0), int(status.get("replicas") or 0)
        if last:
            st.mode = str(last.get("mode", st.mode))
            st.desired = int(last["desired"])
            st.min_replicas, st.max_replicas = int(last["min"]), int(last["max"])
            st.metrics = list(last.get("metrics") or [])
            st.reason, st.message = str(last.get("reason", "")), str(last.get("message", ""))
        else:
            res = resolve_lease(NAMESPACE, lease.name, (dep.get("metadata") or {}).get("annotations"), policy)
            if res.lease is None and res.opted_in:
                st.mode = "invalid"
                st.min_replicas = st.max_replicas = replicas
                st.desired = None
        msgs = [str(e.get("message", "")) for e in events
                if (e.get("involvedObject") or {}).get("name") == lease.name and e.get("type") == "Warning"]
        for m in msgs:
            if m not in warnings[lease.name]:
                warnings[lease.name].append(m)
                view.note(f"Warning Event on {lease.key}: {m}")
        if st.mode == "invalid" and warnings[lease.name]:
            st.reason, st.message = "InvalidAnnotation", warnings[lease.name][0]
        stats = dp.load_stats(NAMESPACE, lease.name)
        arr = np.frombuffer(stats.arrival_times, dtype=np.float64)
        now = clock()
        st.rate = float(np.count_nonzero(arr >= now - 2.0)) / 2.0 if arr.size else 0.0
        if replicas != prev_replicas and samples:
            view.note(f"{lease.key}: scaled {prev_replicas} -> {replicas} ({st.reason})")
        elif st.mode == "shadow" and st.desired is not None and prev_desired is not None and st.desired != prev_desired:
            view.note(f"{lease.key}: would scale to {st.desired} (shadow, {st.reason})")
        g = gpu.get(lease.name)
        row: dict[str, Any] = {
            "t": round(t, 3), "lease": lease.name, "mode": st.mode, "replicas": replicas, "ready": st.ready,
            "pods": st.pods, "desired": st.desired if st.desired is not None else replicas, "reason": st.reason,
            "gpu_util": round(float(np.mean(g)), 2) if g else None,
        }
        for metric in st.metrics:
            row[f"{metric['name']}_value"] = metric_value(metric)
            row[f"{metric['name']}_target"] = metric.get("target")
        samples.append(row)
