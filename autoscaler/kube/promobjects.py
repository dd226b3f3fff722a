"""Per-lease Prometheus Operator objects: a PodMonitor and a PrometheusRule for every lease (TMS feature).

Triton Management Service created, per lease, a PodMonitor (so Prometheus scrapes the Triton pods)
and a PrometheusRule (the queue-time recording rule). With ``prometheus.createObjects: true`` in the
cluster policy the controller does the same: :class:`PrometheusObjects.sync` is called once per loop
by the leader with the current leases' Deployments and makes the objects match.

* Both objects are named ``<deployment>-inference-autoscaler`` in the Deployment's namespace, carry
  the policy's ``podMonitorLabels`` / ``ruleLabels`` (what the Prometheus CR selects on) plus
  ``app.kubernetes.io/managed-by: inference-autoscaler``, and are owned by the Deployment
  (``ownerReferences``), so the garbage collector removes them with it.
* The PodMonitor selects the Deployment's pods by its own selector, scrapes the named metrics port
  and stamps every series with ``inference_autoscaler_lease="<deployment>"``. The rule reads only
  series with that label, so each lease records its own pods' queue time exactly once, with the
  same series names and labels as ``config/rules/queue-time.rules.yaml`` (do not load both).
* Writes only on change: the content hash lives in an annotation; a list by label selector (on the
  first call, then every ``resync_s``) learns what exists, including objects a previous leader made.
  Update is a full PUT (not a merge patch) so labels removed from the policy disappear too.
* Verbs used: list, create, update, delete on podmonitors and prometheusrules (monitoring.coreos.com);
  nothing at all while ``createObjects`` is false and nothing was created by this process.

Errors never propagate: a failed call is logged and counted, and retried on the next loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from autoscaler.config import PrometheusSettings, metrics_endpoint
from autoscaler.kube.api import KubeApi, KubeError
from autoscaler.metrics.kinds.queue_time import RECORDED_QUEUE_TIME, RECORDED_REQUEST_RATE, recording_exprs
from autoscaler.metrics.promql import quote

log = logging.getLogger(__name__)

GROUP_VERSION = "monitoring.coreos.com/v1"
MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY = "inference-autoscaler"
LEASE_ANNOTATION = "inference-autoscaler.io/lease"
HASH_ANNOTATION = "inference-autoscaler.io/spec-hash"
LEASE_SERIES_LABEL = "inference_autoscaler_lease"
NAME_SUFFIX = "-inference-autoscaler"


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    plural: str

    def collection(self, namespace: str | None = None) -> str:
        base = "/apis/" + GROUP_VERSION
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


POD_MONITOR = Kind("PodMonitor", "podmonitors")
PROMETHEUS_RULE = Kind("PrometheusRule", "prometheusrules")
KINDS = (POD_MONITOR, PROMETHEUS_RULE)

ObjKey = tuple[str, str, str]  # (plural, namespace, name)


def object_name(deployment_name: str) -> str:
    """Name of both objects of a lease (Deployment names are at most 253 characters; so is this)."""
    return (deployment_name[: 253 - len(NAME_SUFFIX)] + NAME_SUFFIX).rstrip("-.")


def _owner(dep: dict[str, Any]) -> dict[str, Any]:
    md = dep.get("metadata") or {}
    # No blockOwnerDeletion: setting it needs `update deployments/finalizers` under the
    # OwnerReferencesPermissionEnforcement admission plugin, a grant the controller does not need otherwise.
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": str(md.get("name") or ""),
            "uid": str(md.get("uid") or ""), "controller": True}


def _metadata(dep: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    md = dep.get("metadata") or {}
    ns, name = str(md.get("namespace") or "default"), str(md.get("name") or "")
    return {"name": object_name(name), "namespace": ns, "labels": {**labels, MANAGED_BY_KEY: MANAGED_BY},
            "annotations": {LEASE_ANNOTATION: f"{ns}/{name}"}, "ownerReferences": [_owner(dep)]}


def pod_monitor(dep: dict[str, Any], settings: PrometheusSettings) -> dict[str, Any]:
    """The PodMonitor of one lease: its pods, the metrics port and path (the lease's ``metrics-port`` /
    ``metrics-path`` annotations, e.g. NIM's ``/v1/metrics``, else the policy's port and ``/metrics``), the lease
    label on every series."""
    selector = (dep.get("spec") or {}).get("selector") or {}
    name = str((dep.get("metadata") or {}).get("name") or "")
    port, path, _ = metrics_endpoint((dep.get("metadata") or {}).get("annotations"))
    return {
        "apiVersion": GROUP_VERSION, "kind": POD_MONITOR.kind,
        "metadata": _metadata(dep, settings.pod_monitor_labels),
        "spec": {
            "selector": {k: v for k, v in selector.items() if k in ("matchLabels", "matchExpressions")},
            "podMetricsEndpoints": [{
                "port": port or settings.metrics_port, "path": path or "/metrics",
                "relabelings": [{"action": "replace", "targetLabel": LEASE_SERIES_LABEL, "replacement": name}],
            }],
        },
    }


def prometheus_rule(dep: dict[str, Any], settings: PrometheusSettings) -> dict[str, Any]:
    """The PrometheusRule of one lease: the queue-time recording rule restricted to the lease's series."""
    md = dep.get("metadata") or {}
    ns, name = str(md.get("namespace") or "default"), str(md.get("name") or "")
    rate, queue_time = recording_exprs(f"namespace={quote(ns)}, {LEASE_SERIES_LABEL}={quote(name)}")
    return {
        "apiVersion": GROUP_VERSION, "kind": PROMETHEUS_RULE.kind,
        "metadata": _metadata(dep, settings.rule_labels),
        "spec": {"groups": [{
            "name": f"inference-autoscaler.queue-time.{ns}.{name}", "interval": "5s",
            "rules": [{"record": RECORDED_REQUEST_RATE, "expr": rate},
                      {"record": RECORDED_QUEUE_TIME, "expr": queue_time}],
        }]},
    }


def content_hash(obj: dict[str, Any]) -> str:
    """Hash of everything we own in the object (labels, owner, spec): equal hash, no write."""
    md = obj["metadata"]
    doc = {"labels": md.get("labels"), "owners": md.get("ownerReferences"), "spec": obj.get("spec"),
           "lease": (md.get("annotations") or {}).get(LEASE_ANNOTATION)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def desired_objects(deployments: Iterable[dict[str, Any]], settings: PrometheusSettings) -> dict[ObjKey, dict[str, Any]]:
    """Both objects for every Deployment, keyed by (plural, namespace, name), hash annotation set."""
    out: dict[ObjKey, dict[str, Any]] = {}
    for dep in deployments:
        for kind, build in ((POD_MONITOR, pod_monitor), (PROMETHEUS_RULE, prometheus_rule)):
            obj = build(dep, settings)
            obj["metadata"]["annotations"][HASH_ANNOTATION] = content_hash(obj)
            md = obj["metadata"]
            out[(kind.plural, md["namespace"], md["name"])] = obj
    return out


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    errors: int = 0
    listed: bool = False


@dataclass
class PrometheusObjects:
    """Keeps per-lease PodMonitors/PrometheusRules in step with the leases; see the module docstring."""

    api: KubeApi
    resync_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    known: dict[ObjKey, str] = field(default_factory=dict)  # what exists -> its content hash
    listed_at: float | None = None
    errors: int = 0

    async def sync(self, deployments: Iterable[dict[str, Any]], settings: PrometheusSettings) -> SyncReport:
        """Create, update or delete objects so that exactly the given leases have theirs. Never raises."""
        report = SyncReport()
        if not settings.create_objects:
            # Turned off while running: remove what this process knows it made; otherwise no API call.
            await self._delete(set(self.known), report)
            self.listed_at = None
            return report
        now = self.clock()
        if self.listed_at is None or now - self.listed_at >= self.resync_s:
            if not await self._relist(report):
                return report
            self.listed_at = now
        desired = desired_objects(deployments, settings)
        for key, obj in desired.items():
            h = obj["metadata"]["annotations"][HASH_ANNOTATION]
            if self.known.get(key) == h:
                continue
            await self._write(key, obj, h, report)
        await self._delete(set(self.known) - set(desired), report)
        return report

    async def _relist(self, report: SyncReport) -> bool:
        found: dict[ObjKey, str] = {}
        for kind in KINDS:
            try:
                doc = await self.api.get(kind.collection(), labelSelector=f"{MANAGED_BY_KEY}={MANAGED_BY}")
            except KubeError as exc:
                self._failed(report, f"list {kind.plural}", exc)
                return False
            for item in doc.get("items") or []:
                md = item.get("metadata") or {}
                found[(kind.plural, str(md.get("namespace") or ""), str(md.get("name") or ""))] = str(
                    (md.get("annotations") or {}).get(HASH_ANNOTATION) or "")
        self.known = found
        report.listed = True
        return True

    async def _write(self, key: ObjKey, obj: dict[str, Any], h: str, report: SyncReport) -> None:
        plural, ns, name = key
        kind = POD_MONITOR if plural == POD_MONITOR.plural else PROMETHEUS_RULE
        try:
            if key in self.known:
                try:
                    await self.api.put(kind.item(ns, name), obj)  # unconditional full update
                    report.updated += 1
                except KubeError as exc:
                    if not exc.not_found:
                        raise
                    await self.api.post(kind.collection(ns), obj)  # deleted behind our back
                    report.created += 1
            else:
                try:
                    await self.api.post(kind.collection(ns), obj)
                    report.created += 1
                except KubeError as exc:
                    if not exc.conflict:
                        raise
                    await self.api.put(kind.item(ns, name), obj)  # made by an earlier leader
                    report.updated += 1
        except KubeError as exc:
            self._failed(report, f"write {plural} {ns}/{name}", exc)
            return
        self.known[key] = h
        log.info("%s %s/%s is up to date (%s)", kind.kind, ns, name, h)

    async def _delete(self, keys: set[ObjKey], report: SyncReport) -> None:
        for key in sorted(keys):
            plural, ns, name = key
            kind = POD_MONITOR if plural == POD_MONITOR.plural else PROMETHEUS_RULE
            try:
                await self.api.delete(kind.item(ns, name))
                report.deleted += 1
            except KubeError as exc:
                if not exc.not_found:  # 404: the garbage collector was first
                    self._failed(report, f"delete {plural} {ns}/{name}", exc)
                    continue
            self.known.pop(key, None)
            log.info("%s %s/%s deleted: no longer a lease", kind.kind, ns, name)

    def _failed(self, report: SyncReport, what: str, exc: KubeError) -> None:
        report.errors += 1
        self.errors += 1
        log.warning("prometheus objects: %s failed: %s", what, exc)
