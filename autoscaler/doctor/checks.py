"""The doctor's checks, in the order a human would debug "why does my lease not scale".

1. Prometheus reachable, and its version (``/api/v1/status/buildinfo``).
2. The policy ConfigMap exists and is valid; a controller holds and renews its leader-election Lease.
3. Every annotated lease's annotations are valid (the same resolution the controller does).
4. Per lease and enabled metric: does the controller's own PromQL return series for the lease's pods?
   If not, which labels are wrong: series labelled ``exported_pod``/``exported_namespace`` (scraped
   with ``honorLabels: false``), series in another namespace, series not matching the pods at all,
   or the metric absent from Prometheus altogether.
5. The queue-time recording rule is loaded (``/api/v1/rules``) when the policy reads it; the ``rate()``
   windows the controller queries hold at least two scrapes of each lease's pods (the scrape interval from
   ``/api/v1/targets``): ``rate()`` over fewer is empty. A predictive lease has request counters (Triton's or
   vLLM's) and known slots per replica.
6. When Prometheus Operator kinds exist: PodMonitor / PrometheusRule labels against the Prometheus
   objects' ``podMonitorSelector`` / ``ruleSelector`` and the namespace selectors (or, with no
   Prometheus object visible, against the policy's ``podMonitorLabels`` / ``ruleLabels``).
7. RBAC: SelfSubjectAccessReview for what the controller does (scale get/patch, watch, events).
8. No HorizontalPodAutoscaler scales an enforcing lease's Deployment too.

Every check yields :class:`Finding` values: ``ok``, ``warn``, ``fail`` or ``skip``, a detail and a fix.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from autoscaler import ANNOTATION_PREFIX
from autoscaler.config import (
    DEFAULT_POLICY,
    LEADER_LEASE,
    POLICY_CONFIGMAP,
    POLICY_KEY,
    POLICY_NAMESPACE,
    PREDICTIVE_STATE_ANNOTATION,
    ClusterPolicy,
    LeaseIssue,
    LeasePolicy,
    Mode,
    PolicyError,
    Severity,
    parse_policy,
    resolve_lease,
)
from autoscaler.kube.api import KubeApi, KubeError
from autoscaler.kube.leader import read_lease
from autoscaler.kube.selectors import Selector
from autoscaler.kube.workloads import annotations_of, max_num_seqs
from autoscaler.metrics import ClientSettings, LeaseTarget, NoTraffic, Ok, PrometheusClient, fetch, quote, regex_quote
from autoscaler.metrics.kinds.base import MetricKind
from autoscaler.metrics.kinds.queue_time import RECORDED_QUEUE_TIME
from autoscaler.metrics.kinds.request_stats import RequestStats
from autoscaler.metrics.promql import parse_duration
from autoscaler.metrics.registry import kind_for
from autoscaler.metrics.wake import read_wakes
from autoscaler.observe import (
    LIMIT_WORDS,
    SLOT_SOURCES,
    median_int,
    part_by_pod,
    pod_from_k8s,
    reported_slots,
    resolve_slots,
    sized_wake,
    slot_limit,
)
from autoscaler.policy.idle import woken_replicas
from autoscaler.policy.predictive import PredictiveState
from autoscaler.policy.types import Pod
from autoscaler.statestore import parse_predictive, restore_predictive

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
ENABLED = ANNOTATION_PREFIX + "enabled"

# The raw series each built-in kind reads (to tell "absent" from "labelled differently").
EXPORTERS = {
    "queueTime": "Triton's metrics endpoint (port 8002, /metrics), vLLM's (/metrics) or NIM's (/v1/metrics)",
    "requestStats": "Triton's metrics endpoint (port 8002, /metrics), vLLM's (/metrics) or NIM's (/v1/metrics)",
    "gpuUtilization": "NVIDIA dcgm-exporter (GPU Operator)",
    "kvCacheUsage": "the vLLM / NIM metrics endpoint (/metrics or NIM's /v1/metrics)",
    "cpuUtilization": "the kubelet's cAdvisor endpoint (/metrics/cadvisor)",
}
RBAC_NEEDS: tuple[tuple[str, str, str, str], ...] = (
    # verb, group, resource, subresource
    ("get", "apps", "deployments", "scale"),
    ("patch", "apps", "deployments", "scale"),
    ("patch", "apps", "deployments", ""),
    ("watch", "apps", "deployments", ""),
    ("list", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("create", "", "events", ""),
)


@dataclass(frozen=True)
class Finding:
    """One line of the checklist."""

    check: str
    status: str
    detail: str
    fix: str = ""
    subject: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Context:
    """What the checks share: the API, the Prometheus URL and the policy in force."""

    api: KubeApi
    prometheus_url: str | None
    policy_namespace: str = POLICY_NAMESPACE
    configmap: str = POLICY_CONFIGMAP
    configmap_key: str = POLICY_KEY
    lease_namespace: str | None = None
    leader_lease: str = LEADER_LEASE  # the controller's leader-election Lease, in policy_namespace
    policy: ClusterPolicy | None = None
    prometheus_ok: bool = False


# ------------------------------------------------------------------------------------------ 1. Prometheus

async def check_prometheus(ctx: Context) -> list[Finding]:
    """Prometheus answers ``/api/v1/status/buildinfo``: report its version."""
    url = (ctx.prometheus_url or "").rstrip("/")
    fix = ("pass --prometheus-url (or set prometheus.url in the policy) to an address this machine reaches, e.g. "
           "`kubectl -n monitoring port-forward svc/prometheus-operated 9090` and --prometheus-url "
           "http://127.0.0.1:9090; check the Prometheus pod is Running")
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/api/v1/status/buildinfo",
                                                       timeout=aiohttp.ClientTimeout(total=5)) as r:
            if r.status != 200:
                return [Finding("prometheus", FAIL, f"{url} answered HTTP {r.status} to /api/v1/status/buildinfo",
                                fix)]
            body = await r.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [Finding("prometheus", FAIL, f"Prometheus at {url} is not reachable: {exc or type(exc).__name__}",
                        fix)]
    version = str((body.get("data") or {}).get("version", "?"))
    ctx.prometheus_ok = True
    major = version.split(".")[0]
    if major.isdigit() and int(major) < 2:
        return [Finding("prometheus", WARN, f"Prometheus {version} at {url} is too old", "use Prometheus 2.x or newer")]
    return [Finding("prometheus", OK, f"Prometheus {version} at {url}")]


# ------------------------------------------------------------------------------------------ 2. policy

async def check_policy(ctx: Context) -> list[Finding]:
    """The policy ConfigMap exists and parses; its policy is used by the later checks."""
    name = f"configmap/{ctx.policy_namespace}/{ctx.configmap}"
    create = (f"kubectl -n {ctx.policy_namespace} create configmap {ctx.configmap} "
              f"--from-file={ctx.configmap_key}=config/policy.yaml")
    try:
        cm = await ctx.api.get(f"/api/v1/namespaces/{ctx.policy_namespace}/configmaps/{ctx.configmap}")
    except KubeError as exc:
        ctx.policy = parse_policy(DEFAULT_POLICY.read_text(), source=str(DEFAULT_POLICY))
        if exc.not_found:
            return [Finding("policy", WARN, f"{name} not found; the controller uses its --policy-file or the "
                            "built-in default policy (checked with the built-in default here)", create)]
        return [Finding("policy", FAIL, f"cannot read {name}: {exc}", "see the RBAC check below")]
    text = (cm.get("data") or {}).get(ctx.configmap_key)
    if text is None:
        ctx.policy = parse_policy(DEFAULT_POLICY.read_text(), source=str(DEFAULT_POLICY))
        return [Finding("policy", FAIL, f"{name} has no key {ctx.configmap_key!r}", create)]
    try:
        ctx.policy = parse_policy(text, source=f"{name} key {ctx.configmap_key}")
    except PolicyError as exc:
        ctx.policy = parse_policy(DEFAULT_POLICY.read_text(), source=str(DEFAULT_POLICY))
        return [Finding("policy", FAIL, str(exc), f"fix the keys named above, then `kubectl -n "
                        f"{ctx.policy_namespace} apply` the ConfigMap; the controller keeps its last good policy "
                        "meanwhile")]
    if not ctx.policy.autoscaling.enable:
        return [Finding("policy", WARN, f"{name} is valid but autoscaling.enable is false: no lease scales",
                        "set autoscaling.enable: true")]
    return [Finding("policy", OK, f"{name} is valid")]


# ------------------------------------------------------------------------------------------ 2b. the controller

async def check_controller(ctx: Context) -> list[Finding]:
    """A controller is running: its leader-election Lease is held and renewed. Nothing scales without one, whatever
    the other checks say."""
    ns, name = ctx.policy_namespace, ctx.leader_lease
    where = f"Lease {ns}/{name}"
    look = f"kubectl -n {ns} get pods,deployments; kubectl -n {ns} logs deploy/inference-autoscaler"
    try:
        lease = await read_lease(ctx.api, ns, name, time.time())
    except KubeError as exc:
        return [Finding("controller", SKIP, f"cannot read {where}: {exc}", "allow get on leases to check this")]
    if lease is None:
        return [Finding("controller", WARN, f"no {where}: no controller has run here with leader election (one "
                        "run with --no-leader-election has none)", f"deploy it: kubectl apply -k manifests/; or "
                        f"look: {look}")]
    if not lease.holder:
        return [Finding("controller", WARN, f"{where} is held by no one: its last leader stopped and released it, "
                        "and no controller has taken it since", f"look: {look}")]
    if lease.stale:
        return [Finding("controller", FAIL, f"{where} was last renewed {lease.age_s:.0f}s ago by {lease.holder} (it "
                        f"lasts {lease.duration_s:.0f}s): no controller is running, so no lease is scaled",
                        f"look: {look}")]
    return [Finding("controller", OK, f"{lease.holder} leads ({where} renewed {max(0.0, lease.age_s):.0f}s ago)")]


# ------------------------------------------------------------------------------------------ 3. leases

NEW_S = 60.0  # a pod Ready for less than this may not have a rate yet (two scrapes in its window)


@dataclass
class Lease:
    obj: dict[str, Any]
    policy: LeasePolicy | None
    pods: list[str]
    unready: frozenset[str] = frozenset()  # of ``pods``: not Ready (starting: its server may not export yet)
    new: frozenset[str] = frozenset()  # of ``pods``: Ready for less than NEW_S

    @property
    def key(self) -> str:
        md = self.obj.get("metadata") or {}
        return f"{md.get('namespace')}/{md.get('name')}"


async def find_leases(ctx: Context) -> tuple[list[Lease], list[Finding]]:
    """Deployments carrying the opt-in annotation, resolved against the policy, with their pods."""
    path = (f"/apis/apps/v1/namespaces/{ctx.lease_namespace}/deployments" if ctx.lease_namespace
            else "/apis/apps/v1/deployments")
    try:
        items = (await ctx.api.get(path)).get("items") or []
    except KubeError as exc:
        return [], [Finding("leases", FAIL, f"cannot list Deployments: {exc}", "see the RBAC check below")]
    assert ctx.policy is not None
    leases: list[Lease] = []
    findings: list[Finding] = []
    for obj in items:
        md = obj.get("metadata") or {}
        ann = md.get("annotations") or {}
        if ENABLED not in ann:
            continue
        ns, name = str(md.get("namespace")), str(md.get("name"))
        res = resolve_lease(ns, name, ann, ctx.policy, max_num_seqs(obj))
        subject = f"{ns}/{name}"
        if not res.opted_in:
            continue
        for issue in res.issues:
            if issue.severity == Severity.INVALID:
                findings.append(Finding("annotations", FAIL, f"{issue.message} (the lease is left untouched)",
                                        _annotation_fix(ns, name, issue), subject))
            else:
                findings.append(Finding("annotations", WARN, issue.message, _annotation_fix(ns, name, issue), subject))
        if res.lease is not None and not res.issues:
            metrics = ", ".join(f"{m.name}<={m.target:g}{m.unit}" for m in res.lease.metrics)
            findings.append(Finding("annotations", OK, f"valid: {res.lease.min_replicas}..{res.lease.max_replicas} "
                                    f"replicas, {res.lease.mode.value}, {metrics}", subject=subject))
        pods: list[Pod] = []
        sel = Selector.from_label_selector((obj.get("spec") or {}).get("selector"))
        try:
            plist = (await ctx.api.get(f"/api/v1/namespaces/{ns}/pods")).get("items") or []
            pods = sorted((pod_from_k8s(p) for p in plist if sel.matches((p.get("metadata") or {}).get("labels") or {})),
                          key=lambda p: p.name)
        except KubeError as exc:
            findings.append(Finding("leases", FAIL, f"cannot list pods in {ns}: {exc}", "see the RBAC check below",
                                    subject))
        live, now = [p for p in pods if not p.deleting], time.time()
        leases.append(Lease(obj, res.lease, [p.name for p in live], frozenset(p.name for p in live if not p.ready),
                            frozenset(p.name for p in live if p.ready and (p.ready_transition_time or 0) > now - NEW_S)))
    if not leases:
        where = f"namespace {ctx.lease_namespace}" if ctx.lease_namespace else "any namespace"
        findings.append(Finding("leases", WARN, f"no Deployment in {where} has {ENABLED}",
                                f"kubectl annotate deployment <name> {ENABLED}=true"))
    return leases, findings


def _annotation_fix(ns: str, name: str, issue: LeaseIssue) -> str:
    key = issue.key
    if not key.startswith(ANNOTATION_PREFIX):
        return "change the cluster policy (see the policy check)"
    if issue.rename:  # a mistyped key: move its value to the key it most likely meant
        return (f"kubectl -n {ns} annotate deployment {name} --overwrite {key}- "
                f"{issue.rename}={shlex.quote(issue.value)}")
    examples = {"max-replicas": "4", "min-replicas": "1", "mode": "enforce", "paused": "false", "enabled": "true",
                "metrics": "queueTime,gpuUtilization", "algorithm": "hpa"}
    short = key[len(ANNOTATION_PREFIX):]
    value = examples.get(short, "<value>" if not short.startswith("threshold.") else "<number>")
    return f"kubectl -n {ns} annotate deployment {name} --overwrite {key}={value}  (or remove it: {key}-)"


# ------------------------------------------------------------------------------------------ 4. series

async def _count(client: PrometheusClient, promql: str) -> list[dict[str, str]]:
    ans = await client.query(promql)
    samples = getattr(ans, "samples", None)
    if samples is None:
        return []
    return [dict(s.labels) for s in samples]


async def check_series(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """For each lease and metric: the controller's query answers for the pods, else why not."""
    if not ctx.prometheus_ok:
        return [Finding("series", SKIP, "Prometheus is not reachable", "fix the prometheus check first")]
    assert ctx.policy is not None
    out: list[Finding] = []
    async with PrometheusClient(ClientSettings(url=str(ctx.prometheus_url), timeout_s=10)) as client:
        for lease in leases:
            if lease.policy is None:
                continue
            ns = lease.policy.namespace
            if not lease.pods:
                out.append(Finding("series", WARN, "no running pods match the Deployment's selector",
                                   "scale the Deployment up or check its pods", lease.key))
                continue
            for m in lease.policy.metrics:
                kind = kind_for(m.name, m.query, ctx.policy.autoscaling)
                result = await fetch(client, kind, [LeaseTarget.of(ns, lease.pods)])
                if result.error is not None:
                    out.append(Finding("series", FAIL, f"{m.name}: query failed: {result.error}",
                                       "check the query in the Prometheus UI", lease.key))
                    continue
                good = [p for p, o in result.outcomes.items() if isinstance(o, (Ok, NoTraffic))]
                bad = {p.pod: type(o).__name__ for p, o in result.outcomes.items() if not isinstance(o, (Ok, NoTraffic))}
                # a pod that is not Ready yet may export nothing yet: that says nothing about the scrape
                waiting = sorted(p for p in bad if p in lease.unready)
                for p in waiting:
                    del bad[p]
                later = f"; {len(waiting)} pod(s) not Ready yet, none expected from them" if waiting else ""
                new = sum(1 for p in bad if p in lease.new)
                if new:
                    later += (f"; {new} of the {len(bad)} Ready for under {NEW_S:.0f}s (a rate needs two scrapes: if "
                              "the scrape interval is long, run the doctor again in a minute)")
                if not bad:
                    status, text = (OK, f"series for all {len(good)} pod(s)") if good else (WARN, "no Ready pod yet")
                    out.append(Finding("series", status, f"{m.name}: {text}{later}",
                                       "" if good else "run the doctor again once a pod is Ready", lease.key))
                    continue
                detail, fix = await _diagnose(client, ctx.policy, kind, ns, sorted(bad))
                status = FAIL if not good else WARN
                out.append(Finding("series", status, f"{m.name}: no usable value for {len(bad)} of "
                                   f"{len(lease.pods)} pod(s) ({', '.join(sorted(set(bad.values())))}); {detail}"
                                   f"{later}", fix, lease.key))
    return out


async def _diagnose(client: PrometheusClient, policy: ClusterPolicy, kind: MetricKind, ns: str,
                    pods: Sequence[str]) -> tuple[str, str]:
    """Why the controller's query finds nothing: absent metric, exported_* labels, wrong namespace, no pod label.
    The series names are the configured kind's (e.g. ``gpuUtilization`` with ``source: triton`` reads Triton's)."""
    metric, names = kind.name, kind.raw_series
    if not names:
        return ("the custom query returns nothing for these pods",
                "run the policy's query in the Prometheus UI with the pods filled in; it must return one series "
                "per pod labelled namespace and pod")
    pod_re = quote("|".join(map(regex_quote, pods)))  # pod names and metric names only through the quoting helpers
    name_re = quote("|".join(map(regex_quote, names)))
    exporter = EXPORTERS.get(metric, "its exporter")
    anywhere = await _count(client, f'count by (__name__) ({{__name__=~{name_re}}})')
    if not anywhere:
        return (f"Prometheus has no {' / '.join(names)} series at all: the metric is absent",
                f"make Prometheus scrape {exporter}: a PodMonitor whose labels match the Prometheus object's "
                "podMonitorSelector (see the operator check), or a scrape job; check Status > Targets; if these pods "
                f"do not export it, do not enable {metric} for this lease (annotation {ANNOTATION_PREFIX}metrics)")
    by_pod = await _count(client, f'count by (__name__, namespace) ({{__name__=~{name_re}, pod=~{pod_re}}})')
    if by_pod:
        other = sorted({x.get("namespace", "") for x in by_pod} - {ns})
        if other and not any(x.get("namespace") == ns for x in by_pod):
            return (f"the series have pod=<pod> but namespace={other}, not {ns!r}",
                    "keep the target's namespace label: honorLabels: true (or relabel namespace from "
                    "__meta_kubernetes_namespace) in the scrape config")
        if metric == "queueTime" and policy.autoscaling.prometheus.queue_time_rule:
            return (f"the raw series exist but the recorded series {RECORDED_QUEUE_TIME} does not answer for "
                    "these pods", "load the queue-time recording rule (see the rules check) or set "
                    "prometheus.queueTimeRecordingRule: false in the policy")
        return ("the series exist with pod and namespace labels but their values are unusable (stale, NaN or "
                "several series per pod)", "check the exporter on these pods; see docs/metrics.md (outcomes)")
    exported = await _count(client, f'count by (__name__, exported_namespace) '
                                    f'({{__name__=~{name_re}, exported_pod=~{pod_re}}})')
    if exported:
        return ("the series carry the pods as exported_pod / exported_namespace (scraped with honorLabels: false), "
                "while the 'pod' label names the exporter",
                "set honorLabels: true on the PodMonitor/ServiceMonitor (or relabel exported_pod -> pod and "
                "exported_namespace -> namespace); only gpuUtilization reads exported_* by itself")
    sample = await _count(client, f'topk(1, {{__name__=~{name_re}}})')
    seen = sorted(k for k in (sample[0] if sample else {}) if k != "__name__")
    return (f"{' / '.join(names)} exist, but no series is labelled with these pods (pod or exported_pod); "
            f"labels seen on a series: {', '.join(seen) or 'none'}",
            "the scrape must attach the pod's namespace and pod labels (a PodMonitor does; for a plain scrape job "
            "relabel from __meta_kubernetes_namespace and __meta_kubernetes_pod_name)")


# ------------------------------------------------------------------------------------------ 5. rules

async def check_rules(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """The queue-time recording rule is loaded when the policy reads it and a lease uses queueTime."""
    assert ctx.policy is not None
    uses = any(lease.policy and any(m.name == "queueTime" for m in lease.policy.metrics) for lease in leases)
    if not ctx.policy.autoscaling.prometheus.queue_time_rule:
        return [Finding("rules", OK, "queueTimeRecordingRule is false: queue time is computed from the raw "
                        "counters, no rule needed")]
    if not uses:
        return [Finding("rules", SKIP, "no lease uses queueTime")]
    if not ctx.prometheus_ok:
        return [Finding("rules", SKIP, "Prometheus is not reachable", "fix the prometheus check first")]
    url = str(ctx.prometheus_url).rstrip("/")
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/api/v1/rules", params={"type": "record"},
                                                       timeout=aiohttp.ClientTimeout(total=5)) as r:
            body = await r.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [Finding("rules", FAIL, f"cannot read {url}/api/v1/rules: {exc}", "check Prometheus")]
    names = {str(rule.get("name")) for g in (body.get("data") or {}).get("groups") or [] for rule in g.get("rules") or []}
    if RECORDED_QUEUE_TIME in names:
        return [Finding("rules", OK, f"recording rule {RECORDED_QUEUE_TIME} is loaded")]
    return [Finding("rules", FAIL, f"recording rule {RECORDED_QUEUE_TIME} is not loaded, so queueTime has no value",
                    "load config/rules/queue-time.rules.yaml: as a PrometheusRule whose labels match the Prometheus "
                    "object's ruleSelector (and whose namespace matches ruleNamespaceSelector), or via rule_files; "
                    "or set prometheus.queueTimeRecordingRule: false in the policy")]


# ------------------------------------------------------------------------------------------ 5. rate windows

async def _scrape_intervals(url: str) -> dict[tuple[str, str], float]:
    """(namespace, pod) -> scrape interval (s) of Prometheus's active targets that carry those labels."""
    async with aiohttp.ClientSession() as s, s.get(f"{url.rstrip('/')}/api/v1/targets", params={"state": "active"},
                                                   timeout=aiohttp.ClientTimeout(total=10)) as r:
        body = await r.json()
    out: dict[tuple[str, str], float] = {}
    for t in ((body.get("data") or {}).get("activeTargets") or []):
        labels = t.get("labels") or {}
        iv = parse_duration(str(t.get("scrapeInterval") or ""))
        key = (str(labels.get("namespace", "")), str(labels.get("pod", "")))
        if iv is not None and all(key):
            out[key] = max(iv, out.get(key, 0.0))
    return out


async def check_windows(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """Per lease: the ``rate()`` windows of the controller's queries against its pods' scrape interval. A window
    shorter than two scrapes holds one sample of a pod most of the time, and ``rate()`` of one sample is empty."""
    if not ctx.prometheus_ok:
        return [Finding("windows", SKIP, "Prometheus is not reachable", "fix the prometheus check first")]
    assert ctx.policy is not None
    a = ctx.policy.autoscaling
    try:
        intervals = await _scrape_intervals(str(ctx.prometheus_url))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [Finding("windows", SKIP, f"cannot read Prometheus's targets: {exc or type(exc).__name__}")]
    out: list[Finding] = []
    for lease in leases:
        if lease.policy is None:
            continue
        ivs = [iv for p in lease.pods if (iv := intervals.get((lease.policy.namespace, p))) is not None]
        if not ivs:
            continue  # no target carries these pods' labels: the series check says why
        iv = max(ivs)
        names = {m.name for m in lease.policy.metrics if m.query is None}
        windows = []
        if "cpuUtilization" in names or ("queueTime" in names and not a.prometheus.queue_time_rule):
            windows.append(("prometheus.rateWindowSeconds", a.prometheus.rate_window_s))
        if lease.policy.algorithm == "predictive":
            windows.append(("predictive.rateWindowSeconds", a.predictive.rate_window_s))
        if not windows:
            continue
        short = [(k, w) for k, w in windows if w < 2 * iv]
        if short:
            out.append(Finding(
                "windows", FAIL, "; ".join(f"{k} = {w:g}s holds fewer than two scrapes at the pods' {iv:g}s scrape "
                                           "interval, so rate() over it is empty for most pods most of the time"
                                           for k, w in short)
                + " (the HPA core then lacks the metric; the predictive policy falls back to it or holds)",
                f"in the policy ConfigMap set {', '.join(k for k, _ in short)} to at least {2 * iv:g} "
                f"(two scrapes; {4 * iv:g} survives a missed one), or scrape these pods more often", lease.key))
        else:
            out.append(Finding("windows", OK, ", ".join(f"{k} = {w:g}s" for k, w in windows)
                               + f": {min(w for _, w in windows) / iv:.0f} or more scrapes at the pods' {iv:g}s "
                               "scrape interval", subject=lease.key))
    return out


SATURATION_WINDOW_S = 3600.0
SLOTS_TOLERANCE = 1.25  # stated slots within this factor of the batch seen pass (a KV-bound batch varies)


async def _saturated_batch(client: PrometheusClient, kind: RequestStats, ns: str, name: str) -> int | None:
    """The requests the Deployment's pods ran at once while others kept waiting, in the last SATURATION_WINDOW_S
    (each pod's mean, their median: what the controller learns a vLLM lease's slots from): the batch a pod really
    runs, fewer than ``--max-num-seqs`` when its KV cache fills first. None if no pod was saturated."""
    promql = kind.batch_history(ns, name, SATURATION_WINDOW_S)
    ans = await client.query(promql) if promql else None
    return median_int(s.value for s in getattr(ans, "samples", ()) if s.value >= 1)


async def check_predictive(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """Per predictive lease: whether its pods' request counters (Triton's, vLLM's or NIM's) are there to size it, and the
    slots per replica it is sized with and where they come from; a vLLM lease whose slots nobody states is left to the
    HPA rule by the controller."""
    if not ctx.prometheus_ok:
        return [Finding("predictive", SKIP, "Prometheus is not reachable", "fix the prometheus check first")]
    assert ctx.policy is not None
    a = ctx.policy.autoscaling
    kind = kind_for("requestStats", None, a)
    out: list[Finding] = []
    async with PrometheusClient(ClientSettings(url=str(ctx.prometheus_url), timeout_s=10)) as client:
        for lease in leases:
            if lease.policy is None or lease.policy.algorithm != "predictive":
                continue
            ready = sorted(set(lease.pods) - lease.unready)
            if not ready:
                continue  # the series check says there is no Ready pod yet
            ns, name = lease.policy.namespace, lease.policy.name
            result = await fetch(client, kind, [LeaseTarget.of(ns, ready)])
            if result.error is not None:
                out.append(Finding("predictive", FAIL, f"request counters: query failed: {result.error}",
                                   "check Prometheus", lease.key))
                continue
            by_pod = {t.pod: o.parts for t, o in result.outcomes.items() if isinstance(o, Ok) and o.parts is not None}
            parts = list(by_pod.values())
            metrics = ", ".join(m.name for m in lease.policy.metrics) or "none"
            if not parts:
                if set(ready) <= lease.new:
                    out.append(Finding("predictive", WARN, f"no request rate yet: its {len(ready)} Ready pod(s) are "
                                       f"Ready for under {NEW_S:.0f}s (a rate needs two scrapes)",
                                       "run the doctor again in a minute", lease.key))
                    continue
                detail, fix = await _diagnose(client, ctx.policy, kind, ns, ready)
                out.append(Finding(
                    "predictive", WARN, f"no request counters for {len(ready)} Ready pod(s), none of Triton's, "
                    f"vLLM's or NIM's, so the HPA rule decides this lease on its metrics ({metrics}): {detail}",
                    f"{fix}; or state it: kubectl -n {ns} annotate deployment {name} --overwrite "
                    f"{ANNOTATION_PREFIX}algorithm=hpa", lease.key))
                continue
            reported, vllm = reported_slots(parts)
            server = "vLLM" if vllm else "Triton"
            seen = (await _saturated_batch(client, kind, ns, name)  # also Triton's vLLM backend, which reports them
                    if isinstance(kind, RequestStats) else None)
            fitted = median_int(part_by_pod(by_pod, "kv_fit").values())
            limit = lease.policy.max_num_seqs
            slots, key = resolve_slots(lease.policy.slots_per_replica, reported, vllm, a.predictive, seen, fitted,
                                       limit)
            source = SLOT_SOURCES[key]
            seen_text = (f"; in the last {SATURATION_WINDOW_S / 3600:g}h its pods ran {seen} requests at once "
                         "while others kept waiting (the median of their means): that is the batch they run"
                         if seen and key != "learnt" else "")
            annotate = f"kubectl -n {ns} annotate deployment {name} --overwrite {ANNOTATION_PREFIX}slots-per-replica="
            if slots is None:
                out.append(Finding(
                    "predictive", WARN, f"sized from {server}'s request counters, but {source}, so the controller "
                    f"leaves this lease to the HPA rule on its metrics ({metrics}) until a tenth of a pod's KV cache "
                    "is in use (it estimates the batch from what the cache holds) or requests wait for a slot long "
                    "enough to show the batch a pod runs",
                    annotate + "<the batch the server runs: --max-num-seqs, or fewer when its KV cache fills first>"
                    " (or pass --max-num-seqs in the container's args: the controller reads it)", lease.key))
            elif key == "annotation" and limit and slots > limit:
                out.append(Finding(
                    "predictive", WARN, f"sized for {slots} slot(s) per replica from {source}, more than the "
                    f"--max-num-seqs {limit} its pod template passes to vLLM, so a pod runs at most {limit}: the "
                    "algorithm then takes a replica for more than it serves, and scales late", annotate + str(limit),
                    lease.key))
            elif seen and slots > SLOTS_TOLERANCE * seen:
                out.append(Finding(
                    "predictive", WARN, f"sized for {slots} slot(s) per replica from {source}{seen_text}, fewer: the "
                    "algorithm then takes a replica for more than it serves, and scales late", annotate + str(seen),
                    lease.key))
            elif seen and seen > SLOTS_TOLERANCE * slots:
                out.append(Finding(
                    "predictive", WARN, f"sized for {slots} slot(s) per replica from {source}{seen_text}, more: the "
                    "algorithm then takes a replica for less than it serves, and keeps too many", annotate + str(seen),
                    lease.key))
            elif not seen and fitted and key == "annotation" and slots > SLOTS_TOLERANCE * fitted:
                out.append(Finding(
                    "predictive", WARN, f"sized for {slots} slot(s) per replica from {source}; its pods' KV cache "
                    f"holds {fitted} requests at their present sizes (their running requests over the cache's use "
                    "now), so a pod runs at most that many: the algorithm then takes a replica for more than it "
                    "serves, and scales late", annotate + str(fitted), lease.key))
            else:
                most = slot_limit(reported, limit)
                kv = (f"; fewer than the {most[0]} {LIMIT_WORDS[most[1]]}: their KV cache fills first"
                      if key in ("learnt", "kv-cache") and most and most[0] > SLOTS_TOLERANCE * slots else "")
                out.append(Finding("predictive", OK, f"sized from {server}'s request counters of {len(parts)} pod(s), "
                                   f"{slots} slot(s) per replica from {source}{seen_text}{kv}", subject=lease.key))
    return out


# ------------------------------------------------------------------------------------------ 6. operator

def _selector_matches(sel: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Prometheus Operator semantics: a nil selector selects nothing, ``{}`` selects everything."""
    if sel is None:
        return False
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        return True
    return Selector.from_label_selector(sel).matches(labels)


async def check_operator(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """PodMonitor/PrometheusRule labels against the Prometheus objects' selectors (the TMS troubleshooting list)."""
    assert ctx.policy is not None
    try:
        disc = await ctx.api.get("/apis/monitoring.coreos.com/v1")
    except KubeError:
        return [Finding("operator", SKIP, "Prometheus Operator kinds (monitoring.coreos.com) are not installed")]
    served = {str(r.get("name")) for r in disc.get("resources") or []}
    prom = ctx.policy.autoscaling.prometheus

    async def items(plural: str) -> list[dict[str, Any]]:
        if plural not in served:
            return []
        try:
            return list((await ctx.api.get(f"/apis/monitoring.coreos.com/v1/{plural}")).get("items") or [])
        except KubeError:
            return []

    podmonitors, rules, prometheuses = await asyncio.gather(items("podmonitors"), items("prometheusrules"),
                                                            items("prometheuses"))
    out: list[Finding] = []
    lease_ns = sorted({lease.key.split("/")[0] for lease in leases})
    ns_labels: dict[str, dict[str, str]] = {}
    for ns in lease_ns:
        try:
            ns_labels[ns] = ((await ctx.api.get(f"/api/v1/namespaces/{ns}")).get("metadata") or {}).get("labels") or {}
        except KubeError:
            ns_labels[ns] = {}
    if not prometheuses:
        # No Prometheus object visible: compare with what the policy says the selectors are.
        for kind, objs, want, key in (("PodMonitor", podmonitors, prom.pod_monitor_labels, "podMonitorLabels"),
                                      ("PrometheusRule", rules, prom.rule_labels, "ruleLabels")):
            for o in objs:
                md = o.get("metadata") or {}
                labels = md.get("labels") or {}
                missing = {k: v for k, v in want.items() if labels.get(k) != v}
                subject = f"{kind} {md.get('namespace')}/{md.get('name')}"
                if missing:
                    out.append(Finding("operator", WARN, f"labels {labels or '{}'} lack {missing} (the policy's "
                                       f"prometheus.{key}, which should match the Prometheus selector)",
                                       f"kubectl -n {md.get('namespace')} label {kind.lower()} {md.get('name')} " +
                                       " ".join(f"{k}={v}" for k, v in missing.items()), subject))
                else:
                    out.append(Finding("operator", OK, f"labels match prometheus.{key}", subject=subject))
        if not out:
            out.append(Finding("operator", SKIP, "no Prometheus, PodMonitor or PrometheusRule objects found"))
        return out
    for p in prometheuses:
        pmd = p.get("metadata") or {}
        spec = p.get("spec") or {}
        pname = f"Prometheus {pmd.get('namespace')}/{pmd.get('name')}"
        for kind, objs, sel_key, ns_key in (("PodMonitor", podmonitors, "podMonitorSelector",
                                             "podMonitorNamespaceSelector"),
                                            ("PrometheusRule", rules, "ruleSelector", "ruleNamespaceSelector")):
            sel, ns_sel = spec.get(sel_key), spec.get(ns_key)
            for o in objs:
                md = o.get("metadata") or {}
                subject = f"{kind} {md.get('namespace')}/{md.get('name')}"
                if not _selector_matches(sel, md.get("labels") or {}):
                    out.append(Finding("operator", FAIL, f"labels {md.get('labels') or {}} do not match {pname} "
                                       f"{sel_key} {sel}", f"label the {kind} to match {sel_key} (or set the "
                                       f"policy's prometheus.{'podMonitorLabels' if kind == 'PodMonitor' else 'ruleLabels'} "
                                       "to it)", subject))
                    continue
                ns = str(md.get("namespace"))
                in_ns = ns == pmd.get("namespace") if ns_sel is None else _selector_matches(ns_sel, ns_labels.get(ns) or {})
                if not in_ns:
                    out.append(Finding("operator", FAIL, f"namespace {ns} is not selected by {pname} {ns_key} "
                                       f"{ns_sel}", f"kubectl label namespace {ns} <key>=<value> to match {ns_key}",
                                       subject))
                else:
                    out.append(Finding("operator", OK, f"selected by {pname}", subject=subject))
    return out


# ------------------------------------------------------------------------------------------ 7. RBAC

async def check_rbac(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """SelfSubjectAccessReview for every verb the controller needs, in every lease namespace."""
    namespaces = sorted({lease.key.split("/")[0] for lease in leases}) or [ctx.lease_namespace or "default"]
    denied: list[str] = []
    for ns in namespaces:
        for verb, group, resource, sub in RBAC_NEEDS:
            attrs = {"namespace": ns, "verb": verb, "group": group, "resource": resource}
            if sub:
                attrs["subresource"] = sub
            body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": attrs}}
            try:
                res = await ctx.api.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body)
            except KubeError as exc:
                return [Finding("rbac", WARN, f"SelfSubjectAccessReview not available: {exc}",
                                "check with `kubectl auth can-i patch deployments/scale --as "
                                "system:serviceaccount:<ns>:inference-autoscaler`")]
            if not (res.get("status") or {}).get("allowed"):
                denied.append(f"{verb} {resource}{'/' + sub if sub else ''} in {ns}")
    if denied:
        return [Finding("rbac", FAIL, "these credentials may not: " + "; ".join(denied),
                        "bind the controller's ClusterRole (manifests/) to its ServiceAccount, e.g. "
                        "`kubectl create clusterrolebinding inference-autoscaler --clusterrole=inference-autoscaler "
                        "--serviceaccount=inference-autoscaler:inference-autoscaler`")]
    return [Finding("rbac", OK, f"allowed: get/patch deployments/scale, watch deployments and pods, create events "
                    f"in {', '.join(namespaces)}")]


# ------------------------------------------------------------------------------------------ 8. conflicts

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def replicas_appliers(obj: dict[str, Any]) -> list[str]:
    """Who applies ``spec.replicas`` to a Deployment from a manifest, so that each apply sets back what an autoscaler
    set: ``kubectl apply`` (client-side: the last-applied-configuration annotation has it) and each field manager
    whose server-side apply owns it (an ``Apply`` entry of ``managedFields`` with ``f:spec`` / ``f:replicas``:
    Argo CD with server-side apply, Flux, ``kubectl apply --server-side``). A scale after the apply takes the field
    from its entry until the next apply, so a server-side applier is seen only when it applied last."""
    md = obj.get("metadata") or {}
    out: list[str] = []
    try:
        applied = json.loads((md.get("annotations") or {}).get(LAST_APPLIED) or "null")
    except ValueError:
        applied = None
    if isinstance(applied, dict) and "replicas" in (applied.get("spec") or {}):
        out.append(f"kubectl apply (its last-applied-configuration sets spec.replicas: {applied['spec']['replicas']})")
    for entry in md.get("managedFields") or []:
        fields = entry.get("fieldsV1") if isinstance(entry, dict) else None
        spec = fields.get("f:spec") if isinstance(fields, dict) else None
        if isinstance(spec, dict) and "f:replicas" in spec and entry.get("operation") == "Apply":
            out.append(f"{entry.get('manager') or 'a field manager'} (server-side apply owns spec.replicas)")
    return out


async def check_conflicts(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """A HorizontalPodAutoscaler that scales a lease's Deployment too: both write ``spec.replicas`` and undo each
    other (the controller takes each of the HPA's changes for a human's and holds; the HPA then moves it again).
    KEDA refuses a second scaler for a workload; here the doctor says so. A lease in shadow mode next to its HPA is
    the migration's comparison (docs/migration.md), not a conflict. Likewise a manifest applied with
    ``spec.replicas`` (:func:`replicas_appliers`): each apply sets the replicas back, a warning for an enforcing
    lease."""
    findings: list[Finding] = []
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for lease in leases:
        if lease.policy is None or lease.policy.paused:
            continue
        ns, name = lease.policy.namespace, lease.policy.name
        appliers = replicas_appliers(lease.obj) if lease.policy.mode != Mode.SHADOW else []
        if appliers:
            findings.append(Finding(
                "conflicts", WARN, f"{'; '.join(appliers)}: each apply of the manifest sets spec.replicas back and "
                "undoes the controller's scaling (a server-side apply without --force-conflicts fails on it instead)",
                "leave spec.replicas out of the applied manifest (Helm: out of the template; Argo CD: or "
                "ignoreDifferences on /spec/replicas with RespectIgnoreDifferences=true); the Deployment keeps the "
                "replicas it has", lease.key))
        if ns not in by_ns:
            try:
                doc = await ctx.api.get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers")
                by_ns[ns] = list(doc.get("items") or [])
            except KubeError as exc:
                by_ns[ns] = []
                if not exc.not_found:  # 404: the cluster serves no HPAs at all
                    findings.append(Finding("conflicts", SKIP, f"cannot list HorizontalPodAutoscalers in {ns}: {exc}",
                                            "allow list on horizontalpodautoscalers to check this", f"{ns}/*"))
        for hpa in by_ns[ns]:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") != "Deployment" or ref.get("name") != name:
                continue
            hpa_name = (hpa.get("metadata") or {}).get("name")
            keda = next((o.get("name") for o in (hpa.get("metadata") or {}).get("ownerReferences") or []
                         if o.get("kind") == "ScaledObject"), None)  # KEDA's own HPA: it recreates one deleted
            what = (f"HorizontalPodAutoscaler {hpa_name} (KEDA's, for ScaledObject {keda})" if keda
                    else f"HorizontalPodAutoscaler {hpa_name}")
            if lease.policy.mode == Mode.SHADOW:
                findings.append(Finding("conflicts", OK, f"{what} scales this Deployment and the lease is in shadow "
                                        "mode: compare `autoscaler status` with `kubectl get hpa` before switching",
                                        subject=lease.key))
                continue
            delete = f"kubectl -n {ns} delete scaledobject {keda}" if keda else f"kubectl -n {ns} delete hpa {hpa_name}"
            findings.append(Finding(
                "conflicts", FAIL, f"{what} also scales this Deployment: both write spec.replicas and undo each other",
                f"{delete}  (or, to compare first: kubectl -n {ns} annotate deployment {name} --overwrite "
                f"{ANNOTATION_PREFIX}mode=shadow)", lease.key))
    return findings


ACTIVATOR_COUNTER = "autoscaler_activator_requests_total"


async def check_zero(ctx: Context, leases: Sequence[Lease]) -> list[Finding]:
    """Each lease that may scale to zero (min-replicas 0): its wake query answers one value, as the controller
    needs to wake it; else the controller never idles it (and never wakes it once at zero)."""
    zeroable = {lease.key: lease.policy for lease in leases if lease.policy and lease.policy.wake_query}
    objs = {lease.key: lease.obj for lease in leases}
    queries = {key: str(lp.wake_query) for key, lp in zeroable.items()}
    if not queries:
        return []
    if not ctx.prometheus_ok:
        return [Finding("zero", SKIP, "Prometheus is not reachable", "fix the prometheus check first")]
    assert ctx.policy is not None
    stz = ctx.policy.autoscaling.scale_to_zero
    async with PrometheusClient(ClientSettings(url=str(ctx.prometheus_url), timeout_s=10)) as client:
        wakes = await read_wakes(client, queries)
        counted = None
        if any(ACTIVATOR_COUNTER in q for q in queries.values()):
            counted = {f"{d.get('namespace', '')}/{d.get('deployment', '')}" for d in await _count(
                client, f"count by (namespace, deployment) ({ACTIVATOR_COUNTER})")}
    out: list[Finding] = []
    for key, (value, why, _failed) in wakes.items():
        if counted is not None and ACTIVATOR_COUNTER in queries[key] and key not in counted:
            out.append(Finding("zero", WARN, f"the wake query reads the activator's {ACTIVATOR_COUNTER}, but "
                               "Prometheus has no series of it for this lease: its requests would not wake it",
                               "run the activator (manifests/components/activator) and have Prometheus scrape it "
                               "(the component's ServiceMonitor); it counts every lease it sees, at 0 until a "
                               f"request comes: check its log for the Deployment and {ANNOTATION_PREFIX}enabled", key))
        if value is None:
            out.append(Finding("zero", FAIL, f"wake query: {why}; the lease is never scaled to zero (and, at zero, "
                               f"not woken): {queries[key]}",
                               "fix scaleToZero.wakeQuery in the policy: one value per lease, its gateway's or "
                               "ingress's request rate for the Deployment", key))
        else:
            lp = zeroable[key]
            if value > stz.wake_threshold:
                need, sized_by = None, ""
                if lp.wake_auto:  # as the controller would size it, from what the lease persisted
                    persisted = parse_predictive(annotations_of(objs[key]).get(PREDICTIVE_STATE_ANNOTATION))
                    params = ctx.policy.autoscaling.predictive.to_params(lp.queue_target_us(ctx.policy))
                    need, sized_by = sized_wake(value, PredictiveState() if persisted is None else
                                                restore_predictive(persisted, params),
                                                lp.slots_per_replica or lp.max_num_seqs, params,
                                                lp.max_replicas)
                n = woken_replicas(value, lp.wake_replicas, lp.wake_target, lp.max_replicas, need)
                state = (f"demand: at zero it would be woken to {n} replica{'s' if n > 1 else ''}"
                         f"{f': {sized_by}' if sized_by else ''}")
            else:
                state = "no demand"
            out.append(Finding("zero", OK, f"wake query answers {value:.3g} ({state}); scaled to zero after "
                               f"{zeroable[key].idle_s:g} s with none", subject=key))
    return out


async def run_checks(ctx: Context) -> list[Finding]:
    """Every check, in order; later checks use what the earlier ones found."""
    findings = await check_policy(ctx)
    if not ctx.prometheus_url:
        assert ctx.policy is not None
        ctx.prometheus_url = ctx.policy.autoscaling.prometheus.url
    findings = await check_prometheus(ctx) + findings + await check_controller(ctx)
    leases, lf = await find_leases(ctx)
    findings += lf
    findings += await check_series(ctx, leases)
    findings += await check_rules(ctx, leases)
    findings += await check_windows(ctx, leases)
    findings += await check_predictive(ctx, leases)
    findings += await check_zero(ctx, leases)
    findings += await check_operator(ctx, leases)
    findings += await check_rbac(ctx, leases)
    findings += await check_conflicts(ctx, leases)
    return findings
