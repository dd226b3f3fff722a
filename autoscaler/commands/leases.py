"""``autoscaler status`` and ``autoscaler explain``: what the controller decided, read from the cluster.

Both read the Deployments' ``inference-autoscaler.io/status`` annotation (written by the controller
when its decision changes), so they work from any kubeconfig without reaching the controller pod.
``explain`` also re-resolves the annotations against the policy to show every adjustment made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from autoscaler.config import (
    DEFAULT_POLICY,
    LEADER_LEASE,
    POLICY_CONFIGMAP,
    POLICY_KEY,
    POLICY_NAMESPACE,
    PREDICTIVE_STATE_ANNOTATION,
    STATUS_ANNOTATION,
    ClusterPolicy,
    PolicyError,
    is_opted_in,
    load_policy,
    parse_policy,
    resolve_lease,
)
from autoscaler.kube.api import KubeApi, KubeError
from autoscaler.kube.leader import LeaseView, read_lease
from autoscaler.kube.workloads import annotations_of, deployment_path, deployments_path
from autoscaler.observe import SLOT_SOURCES, parse_time
from autoscaler.statestore import parse_predictive


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig")
    p.add_argument("--context")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "<unknown>"
    s = int(max(0, seconds))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


def _fmt(v: Any) -> str:
    if v is None:
        return "<unknown>"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def targets(status: dict[str, Any]) -> str:
    parts = []
    for m in status.get("metrics") or []:
        unit = {"%": "%", "percent": "%"}.get(m.get("unit") or "", m.get("unit") or "")
        parts.append(f"{m.get('name')}: {_fmt(m.get('value'))}/{_fmt(m.get('target'))}{unit}")
    return ", ".join(parts) or "<none>"


def add_policy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy-file", help="resolve against this policy instead of the cluster's ConfigMap")
    p.add_argument("--policy-namespace", default=POLICY_NAMESPACE)
    p.add_argument("--configmap", default=POLICY_CONFIGMAP)
    p.add_argument("--configmap-key", default=POLICY_KEY, help="the ConfigMap key holding the policy YAML")


async def _policy(api: KubeApi, args: argparse.Namespace) -> tuple[ClusterPolicy, str]:
    """The policy the controller resolves leases against: ``--policy-file``, else the ConfigMap, else (no ConfigMap)
    the shipped default, with where it came from. A ConfigMap without the key, or a bad one, raises PolicyError."""
    if args.policy_file:
        return load_policy(args.policy_file), args.policy_file
    try:
        cm = await api.get(f"/api/v1/namespaces/{args.policy_namespace}/configmaps/{args.configmap}")
    except KubeError as exc:
        if not exc.not_found:
            raise
        return load_policy(DEFAULT_POLICY), f"{DEFAULT_POLICY} (no ConfigMap found)"
    src = f"configmap/{args.policy_namespace}/{args.configmap} key {args.configmap_key}"
    text = (cm.get("data") or {}).get(args.configmap_key)
    if text is None:
        raise PolicyError(src, [f"the ConfigMap has no key {args.configmap_key!r}"])
    return parse_policy(text, src), src


async def _deployments(args: argparse.Namespace, namespace: str | None
                       ) -> tuple[list[dict[str, Any]], ClusterPolicy | None, str, LeaseView | None]:
    """The leases (and Deployments with a status), the policy to resolve them against (None, with why, when it cannot
    be read: the table then shows what the controller last wrote, unchecked) and the controller's leader Lease (None
    when there is none or it cannot be read)."""
    api = await KubeApi.connect(args.kubeconfig, args.context)
    try:
        doc = await api.get(deployments_path(namespace))
        try:
            policy, _ = await _policy(api, args)
            why = ""
        except (KubeError, PolicyError) as exc:
            policy, why = None, str(exc)
        try:
            lease = await read_lease(api, args.policy_namespace, args.lease_name, time.time())
        except KubeError:
            lease = None
    finally:
        await api.close()
    items = [d for d in doc.get("items") or [] if STATUS_ANNOTATION in annotations_of(d)
             or is_opted_in(annotations_of(d))]
    return items, policy, why, lease


def status_of(dep: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The controller's status annotation as (status, None), (None, None) if absent, (None, why) if unreadable."""
    raw = annotations_of(dep).get(STATUS_ANNOTATION)
    if not raw:
        return None, None
    try:
        st = json.loads(raw)
    except ValueError as exc:
        return None, str(exc)
    return (st, None) if isinstance(st, dict) else (None, "not a JSON object")


def status_rows(items: list[dict[str, Any]], now: float, policy: ClusterPolicy | None = None) -> list[dict[str, Any]]:
    """One row per lease from the controller's status annotation. With the policy, the annotations are resolved as
    the controller resolves them: a lease it no longer scales (invalid annotations, paused, opted out) is shown so,
    not with the last decision it made while it did."""
    rows = []
    for d in sorted(items, key=lambda d: (d["metadata"].get("namespace", ""), d["metadata"]["name"])):
        md = d["metadata"]
        st = status_of(d)[0] or {}
        row = {
            "namespace": md.get("namespace", ""), "name": md["name"], "targets": targets(st),
            "min": st.get("min"), "max": st.get("max"),
            "replicas": (d.get("spec") or {}).get("replicas"), "desired": st.get("desired"),
            "mode": st.get("mode", "-"), "reason": st.get("reason", "NotYetDecided" if not st else "-"),
            "age": _age(now - (parse_time(md.get("creationTimestamp")) or now)),
            "lastScale": st.get("lastScaleTime"), "status": st,
        }
        if policy is not None:
            res = resolve_lease(str(md.get("namespace", "")), md["name"], annotations_of(d), policy)
            row["issues"] = [i.message for i in res.issues]
            if not res.opted_in:
                row.update(mode="-", reason="NotALease", desired=None)
            elif res.lease is None:
                row.update(mode="invalid", reason="InvalidAnnotation", desired=None)
            elif res.lease.paused:
                row.update(mode="paused", reason="Paused", desired=None,
                           min=res.lease.min_replicas, max=res.lease.max_replicas)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], all_ns: bool) -> None:
    headers = (["NAMESPACE"] if all_ns else []) + ["NAME", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS",
                                                      "DESIRED", "MODE", "REASON", "AGE"]
    table = [headers]
    for r in rows:
        table.append(([r["namespace"]] if all_ns else []) + [
            r["name"], r["targets"], _fmt(r["min"]), _fmt(r["max"]), _fmt(r["replicas"]), _fmt(r["desired"]),
            r["mode"], r["reason"], r["age"]])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers))]
    for row in table:
        print("   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def add_arguments(p: argparse.ArgumentParser) -> None:  # status
    add_common(p)
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    add_policy_arguments(p)
    p.add_argument("--lease-name", default=LEADER_LEASE,
                   help="the controller's leader-election Lease, in --policy-namespace: a warning when no one renews it")


def run(args: argparse.Namespace) -> int:  # status
    ns = None if args.all_namespaces else (args.namespace or "default")
    try:
        items, policy, why, lease = asyncio.run(_deployments(args, ns))
    except KubeError as exc:
        print(f"autoscaler status: {exc}", file=sys.stderr)
        return 1
    if lease is not None and lease.stale:
        last = "released" if not lease.holder else f"last renewed {lease.age_s:.0f}s ago by {lease.holder}"
        print(f"autoscaler status: no controller is running (Lease {args.policy_namespace}/{args.lease_name} {last}): "
              "these are the last decisions one wrote", file=sys.stderr)
    if policy is None:
        print(f"autoscaler status: the policy cannot be read ({why}); showing the last decisions unchecked",
              file=sys.stderr)
    rows = status_rows(items, time.time(), policy)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"No leases found in {'any namespace' if ns is None else 'namespace ' + ns}.")
    else:
        print_table(rows, ns is None)
    return 0


# ---------------------------------------------------------------------------------------- explain


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("lease", metavar="NAMESPACE/NAME")
    add_policy_arguments(p)


async def _explain_data(args: argparse.Namespace, ns: str,
                        name: str) -> tuple[dict[str, Any], ClusterPolicy, str, list[dict[str, Any]] | None]:
    api = await KubeApi.connect(args.kubeconfig, args.context)
    try:
        dep = await api.get(deployment_path(ns, name))
        policy, src = await _policy(api, args)
        events: list[dict[str, Any]] | None
        try:  # the Deployment's Events, for how the predictive algorithm sizes it (optional: RBAC may refuse: None)
            events = (await api.get(f"/api/v1/namespaces/{ns}/events", fieldSelector=(
                f"involvedObject.kind=Deployment,involvedObject.name={name}")))["items"]
        except KubeError:
            events = None
        return dep, policy, src, events
    finally:
        await api.close()


def _newest(events: list[dict[str, Any]], *reasons: str) -> dict[str, Any] | None:
    """The newest Event with one of ``reasons``, if any."""
    found = [e for e in events if e.get("reason") in reasons]
    return max(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")) if found else None


def _newest_message(events: list[dict[str, Any]], reason: str) -> str | None:
    """The message of the newest Event with ``reason``, if any."""
    e = _newest(events, reason)
    return None if e is None else str(e.get("message", ""))


def _decided_message(st: dict[str, Any]) -> str:
    """The message of the algorithm's last decision: the status's, unless that is a write that failed
    (``FailedRescale``, whose message is the API's error): then the newest other of its recent decisions."""
    if st.get("reason") != "FailedRescale":
        return str(st.get("message", ""))
    decided = [r for r in st.get("recent") or [] if r.get("reason") != "FailedRescale"]
    return str(decided[-1].get("message", "")) if decided else ""


def explain_lines(dep: dict[str, Any], policy: ClusterPolicy, source: str,
                  events: list[dict[str, Any]] | None) -> list[str]:
    """What ``autoscaler explain`` prints; ``events`` are the Deployment's Events, None if they could not be read."""
    md = dep["metadata"]
    ns, name = md.get("namespace", ""), md["name"]
    ann = annotations_of(dep)
    res = resolve_lease(ns, name, ann, policy)
    out = [f"Lease {ns}/{name}", f"  policy: {source}"]
    if not res.opted_in:
        out.append("  not a lease: the annotation inference-autoscaler.io/enabled is not \"true\"")
    for i in res.issues:
        out.append(f"  {'INVALID' if i.severity == 'invalid' else 'adjusted'}: {i.message}")
    if res.lease is not None:
        lp = res.lease
        out.append(f"  effective: min {lp.min_replicas}, max {lp.max_replicas}, mode {lp.mode.value}"
                   f"{', PAUSED' if lp.paused else ''}, algorithm {lp.algorithm}")
        for m in lp.metrics:
            out.append(f"    metric {m.name}: target {m.target:g}{m.unit}")
        if lp.wake_query:
            stz = policy.autoscaling.scale_to_zero
            how = (f", or one per {lp.wake_target:g} of the wake value" if lp.wake_target else
                   ", or as many as the predictive algorithm sizes the wake value with (a request rate, at its "
                   "last service time and slots)" if lp.wake_auto else "")
            out.append(f"  scale to zero: after {lp.idle_s:g}s without demand (wake value at or under "
                       f"{stz.wake_threshold:g}); woken to {lp.wake_replicas} replica(s){how} by: {lp.wake_query}")
        b = lp.behavior
        if b.scale_up and b.scale_down:
            out.append(f"  behaviour: scale-up window {b.scale_up.stabilization_window_s}s, scale-down window "
                       f"{b.scale_down.stabilization_window_s}s, tolerance {b.tolerances.scale_up:g}")
    if res.lease is not None and res.lease.algorithm == "predictive":
        out.append("  " + _predictive_line(ann.get(PREDICTIVE_STATE_ANNOTATION), policy))
    st, unreadable = status_of(dep)
    if unreadable:
        out.append(f"  the status annotation is unreadable ({unreadable}); the controller rewrites it at its next "
                   "decision")
        return out
    if st is None:
        out.append("  no decision recorded yet (the controller writes inference-autoscaler.io/status)")
        return out
    out.append(f"  last decision ({st.get('updated', '?')}): replicas {st.get('current')} "
               f"(ready {st.get('ready')}) -> desired {st.get('desired')}  [{st.get('reason')}]")
    out.append(f"    {st.get('message', '')}")
    if res.lease is not None and res.lease.algorithm == "predictive":
        sized = _decided_message(st).startswith("predictive:")
        if events is None:
            out.append("  (the Deployment's Events could not be read, so where its slots come from and why the HPA "
                       "rule may decide are not shown: grant list on events, or kubectl describe deployment)")
        if not sized and (why := _newest_message(events or [], "PredictiveUnavailable")) is not None:
            out.append(f"  the HPA rule decides, not the predictive algorithm: {why}")
        stated = st.get("slots") or {}
        if sized and stated.get("perReplica"):
            source = SLOT_SOURCES.get(str(stated.get("source")), str(stated.get("source")))
            out.append(f"  slots: {stated['perReplica']} a replica, from {source}")
        if sized and (slots := _newest(events or [], "SlotsLearned", "SlotsEstimated")) is not None:
            how = "learnt" if slots.get("reason") == "SlotsLearned" else "estimated"
            out.append(f"  slots {how}: {slots.get('message', '')}")
    for m in st.get("metrics") or []:
        line = (f"    {m['name']}: value {_fmt(m.get('value'))} vs target {_fmt(m.get('target'))}{m.get('unit', '')}"
                f" -> proposes {_fmt(m.get('proposed'))} replicas")
        if m.get("error"):
            line += f"  (error: {m['error']})"
        out.append(line)
    if st.get("limitedBy"):
        out.append(f"  limited by: {st['limitedBy']}")
    if st.get("lastScaleTime"):
        out.append(f"  last scale: {st['lastScaleTime']}")
    recent = st.get("recent") or []
    if recent:
        out.append("  recent decisions:")
        for r in recent:
            when = time.strftime("%H:%M:%S", time.gmtime(r.get("time", 0)))
            out.append(f"    {when}Z  {r.get('current')} -> {r.get('desired')}  {r.get('reason')}"
                       f"{' (applied)' if r.get('applied') else ''}: {r.get('message', '')}")
    return out


def _predictive_line(raw: str | None, policy: ClusterPolicy) -> str:
    """What the predictive policy has learned for this lease (its persisted season)."""
    if not raw:
        return "predictive: no learned state yet (written at its first decision)"
    p = parse_predictive(raw)
    if p is None:
        return "predictive: the predictive-state annotation is unreadable; the season is relearned"
    cfg = policy.autoscaling.predictive
    days = p.season_buckets * p.season_bucket_s / cfg.season_period_s
    need = "" if days >= 1 else f"; the daily forecast starts after {cfg.season_period_s / 3600:g} h of history"
    svc = "" if p.service_time_s is None else f", {1000 * p.service_time_s:.0f} ms per request"
    head = "" if p.headroom <= 1.0 else (f"; the queue-time calibration scales its demand by x{p.headroom:.2f} "
                                         "(the lease queued in most readings)")
    return f"predictive: {days:.1f} periods of seasonal history learned ({p.season_buckets} buckets of " \
           f"{p.season_bucket_s:g}s){svc}{need}{head}"


def run_explain(args: argparse.Namespace) -> int:
    ns, _, name = args.lease.partition("/")
    if not name:
        print("autoscaler explain: give the lease as NAMESPACE/NAME", file=sys.stderr)
        return 2
    try:
        dep, policy, source, events = asyncio.run(_explain_data(args, ns, name))
    except KubeError as exc:
        print(f"autoscaler explain: {exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        print(f"autoscaler explain: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"lease": args.lease, "status": status_of(dep)[0],
                          "explanation": explain_lines(dep, policy, source, events)}, indent=2))
    else:
        print("\n".join(explain_lines(dep, policy, source, events)))
    return 0
