"""The sandbox's controllers: deployment -> replica sets -> pods, a kubelet stand-in, namespace cleanup.

* Deployment controller: one ReplicaSet per pod-template hash (``<deploy>-<hash>``), rolled out as
  upstream's pkg/controller/deployment does: RollingUpdate within maxSurge/maxUnavailable (the new
  replica set grows as the surge allows, old ones shrink as availability allows, unhealthy replicas
  first, oldest replica set first), Recreate (old pods all gone before a new one is created), a change
  of ``spec.replicas`` during a rollout shared among the replica sets in proportion to their sizes
  (the ``desired-replicas``/``max-replicas`` annotations), ``spec.paused`` honoured; status kept true
  (replicas, updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
  observedGeneration, Available/Progressing conditions; zero counts omitted as the real server does).
* ReplicaSet controller: creates pods ``<rs>-<rand5>`` with the template's labels and an owner
  reference; on scale-down deletes not-ready pods first, then the newest, gracefully.
* Kubelet stand-in: a new pod is scheduled at once (Pending, ContainerCreating), Running after
  ``pending_seconds``, Ready after the start-up delay (annotation
  ``sandbox.inference-autoscaler.io/startup-seconds`` on the pod template or the deployment, else the
  default), and removed ``terminating_seconds`` after it gets a deletionTimestamp (or sooner if its
  grace period is shorter). It calls the :class:`~autoscaler.sandbox.hooks.PodHooks` on the way.
* Namespace controller: a terminating namespace's contents are deleted, then the namespace.

Reconciliation is level-triggered: any change to a deployment, replica set, pod or namespace marks
the world dirty and one pass reconciles everything (a sandbox holds tens of objects, not thousands);
a pod reaching minReadySeconds schedules a pass of its own. A rollout therefore proceeds as pods get
Ready, with no outside nudge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autoscaler.sandbox.errors import ApiError
from autoscaler.sandbox.hooks import NoHooks, PodHooks
from autoscaler.sandbox.registry import RANDOM_ALPHABET, Registry, now_time, random_suffix
from autoscaler.sandbox.resources import DEPLOYMENTS, EVENTS, NAMESPACES, PODS, REPLICASETS, RESOURCES
from autoscaler.sandbox.store import Change, clone

Obj = dict[str, Any]
log = logging.getLogger(__name__)

ANN_STARTUP = "sandbox.inference-autoscaler.io/startup-seconds"
ANN_KIND = "sandbox.inference-autoscaler.io/kind"
ANN_SERVING = "sandbox.inference-autoscaler.io/serving"
ANN_SCRAPE = "sandbox.inference-autoscaler.io/scrape"
HASH_LABEL = "pod-template-hash"
NODE_NAME = "sandbox-node"
POD_IP = "127.0.0.1"


@dataclass
class Timing:
    startup_seconds: float = 5.0  # Running -> Ready (model load), unless annotated otherwise
    pending_seconds: float = 0.5  # Pending -> Running (image pull, container start)
    terminating_seconds: float = 1.0  # deletionTimestamp -> gone (capped by the pod's grace period)
    hook_timeout_seconds: float = 10.0
    rolling_updates: bool = False
    """Roll a new template out as the Deployment's strategy says (maxSurge / maxUnavailable, Recreate). Off: all
    pods are replaced at once (the strategy read as RollingUpdate with 100 % surge and unavailability), so a
    patched template settles within the pods' start-up delay: what scripts driving `sandbox up` expect."""


def template_hash(template: Obj, collision_count: int = 0) -> str:
    digest = hashlib.sha256((json.dumps(template, sort_keys=True) + str(collision_count)).encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(RANDOM_ALPHABET))
        out.append(RANDOM_ALPHABET[r])
    return "".join(out)


def _owner_ref(kind: str, obj: Obj) -> Obj:
    return {"apiVersion": "apps/v1", "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def is_ready(pod: Obj) -> bool:
    """The pod's Ready condition is True."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _ready_since(pod: Obj) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            try:
                return datetime.strptime(str(cond.get("lastTransitionTime"))[:19], "%Y-%m-%dT%H:%M:%S").replace(
                    tzinfo=UTC).timestamp()
            except ValueError:
                return None
    return None


def _nonzero(**counts: int) -> Obj:
    return {k: v for k, v in counts.items() if v}


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value or "0")
    if text.endswith("%"):
        pct = int(text[:-1] or 0)
        num = pct * total
        return -(-num // 100) if round_up else num // 100
    return int(text) if text.isdigit() else 0


@dataclass
class _PodRun:
    deleting: asyncio.Event = field(default_factory=asyncio.Event)
    removed: bool = False
    running: bool = False
    last: Obj | None = None
    task: asyncio.Task[None] | None = None


class Controllers:
    def __init__(self, registry: Registry, hooks: PodHooks | None = None, timing: Timing | None = None) -> None:
        self.registry = registry
        self.store = registry.store
        self.hooks: PodHooks = hooks or NoHooks()
        self.timing = timing or Timing()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pods: dict[tuple[str, str], _PodRun] = {}
        self._wakeups: set[float] = set()
        self._watched = {DEPLOYMENTS.storage_key, REPLICASETS.storage_key, PODS.storage_key,
                         NAMESPACES.storage_key}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.store.add_listener(self._on_change)
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="sandbox-reconcile"))
        for pod in self.store.list_objects(PODS.storage_key):
            self._pod_seen(pod)
        self._dirty.set()

    async def stop(self) -> None:
        self.store.remove_listener(self._on_change)
        tasks = self._tasks + [r.task for r in self._pods.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._pods.clear()

    def _on_change(self, change: Change) -> None:
        if change.storage not in self._watched:
            return
        self._dirty.set()
        if change.storage != PODS.storage_key:
            return
        meta = change.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if change.type == "DELETED":
            run = self._pods.get(key)
            if run is not None:
                run.removed = True
                run.last = change.obj
                run.deleting.set()
            return
        self._pod_seen(change.obj)

    def _pod_seen(self, pod: Obj) -> None:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        run = self._pods.get(key)
        if run is None:
            run = _PodRun()
            self._pods[key] = run
            run.task = asyncio.create_task(self._pod_lifecycle(key, run), name=f"kubelet-{key[0]}-{key[1]}")
        run.last = pod
        if meta.get("deletionTimestamp"):
            run.deleting.set()

    # ------------------------------------------------------------------ reconcile loop
    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("sandbox reconcile failed")
            await asyncio.sleep(0.01)  # let bursts of changes coalesce into one pass

    def reconcile(self) -> None:
        """One level-triggered pass over namespaces, deployments and replica sets. The replica sets go
        first too, so that the deployments' rollout arithmetic reads their status as the pods now are."""
        self._reconcile_namespaces()
        self._reconcile_replicasets()
        for dep in self.store.list_objects(DEPLOYMENTS.storage_key):
            try:
                self._reconcile_deployment(dep)
            except ApiError as exc:
                log.warning("deployment %s/%s: %s", dep["metadata"].get("namespace"), dep["metadata"]["name"],
                            exc.message)
        self._reconcile_replicasets()
        for dep in self.store.list_objects(DEPLOYMENTS.storage_key):
            self._deployment_status(dep)

    def _reconcile_replicasets(self) -> None:
        pods_by_owner: dict[str, list[Obj]] = defaultdict(list)
        for pod in self.store.list_objects(PODS.storage_key):
            uid = _controller_uid(pod)
            if uid:
                pods_by_owner[uid].append(pod)
        for rs in self.store.list_objects(REPLICASETS.storage_key):
            try:
                self._reconcile_replicaset(rs, pods_by_owner[rs["metadata"]["uid"]])
            except ApiError as exc:
                log.warning("replicaset %s: %s", rs["metadata"]["name"], exc.message)

    def _available_pods(self, ready: list[Obj], min_ready_seconds: int) -> list[Obj]:
        """The ready pods that have been Ready for minReadySeconds; a pass is scheduled for when the
        next of the others gets there (nothing in the store changes then)."""
        if min_ready_seconds <= 0:
            return ready
        now = datetime.now(UTC).timestamp()
        available: list[Obj] = []
        for pod in ready:
            left = (_ready_since(pod) or now) + min_ready_seconds - now
            if left <= 0:
                available.append(pod)
            else:
                self._wake_in(left)
        return available

    def _wake_in(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        at = round(loop.time() + seconds + 0.01, 2)
        if at not in self._wakeups:
            self._wakeups.add(at)
            loop.call_at(at, self._wake, at)

    def _wake(self, at: float) -> None:
        self._wakeups.discard(at)
        self._dirty.set()

    def _reconcile_namespaces(self) -> None:
        for ns in self.store.list_objects(NAMESPACES.storage_key):
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            left = 0
            for rt in {r.storage_key: r for r in RESOURCES if r.namespaced}.values():
                for obj in self.store.list_objects(rt.storage_key, name):
                    left += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        try:
                            self.registry.delete(rt, name, obj["metadata"]["name"])
                        except ApiError:
                            pass
            if left == 0:
                self.store.remove(NAMESPACES.storage_key, "", name)

    # ------------------------------------------------------------------ deployments
    def _owned_replicasets(self, dep: Obj) -> list[Obj]:
        ns, uid = dep["metadata"]["namespace"], dep["metadata"]["uid"]
        return [rs for rs in self.store.list_objects(REPLICASETS.storage_key, ns) if _controller_uid(rs) == uid]

    def _reconcile_deployment(self, dep: Obj) -> None:
        """One sync of the deployment controller (upstream's syncDeployment): a scaling event or a paused
        deployment scales the replica sets (proportionally while a rollout is under way); otherwise the
        strategy rolls out the new template."""
        meta, spec = dep["metadata"], dep.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        if not self.timing.rolling_updates:
            dep = {**dep, "spec": {**spec, "strategy": ALL_AT_ONCE}}  # a view for this sync; the object is unchanged
        owned = self._owned_replicasets(dep)
        h, new_rs = _current_replicaset(dep, owned)
        old = sorted((rs for rs in owned if rs is not new_rs), key=_rs_age)
        if new_rs is not None:
            self._sync_new_rs(dep, new_rs, old)
        if spec.get("paused") or _is_scaling_event(dep, new_rs, old):
            self._scale(dep, new_rs, old)
        elif _is_recreate(dep):
            self._rollout_recreate(dep, h, new_rs, old)
        else:
            self._rollout_rolling(dep, h, new_rs, old)
        limit = int(spec.get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if not _replicas(rs) and not (rs.get("status") or {}).get("replicas")]
        idle.sort(key=_revision)
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.registry.delete(REPLICASETS, meta["namespace"], rs["metadata"]["name"])

    def _sync_new_rs(self, dep: Obj, rs: Obj, old: list[Obj]) -> None:
        """Bring an existing new replica set's annotations, revision (bumped on a rollback to it) and
        minReadySeconds up to date, as upstream's getNewReplicaSet does."""
        annotations = rs["metadata"].setdefault("annotations", {})
        before = (dict(annotations), (rs.get("spec") or {}).get("minReadySeconds", 0))
        annotations.update(_copied_annotations(dep))
        revision = max((_revision(o) for o in old), default=0) + 1
        if _revision(rs) < revision:
            annotations[ANN_REVISION] = str(revision)
        rs["spec"]["minReadySeconds"] = int((dep.get("spec") or {}).get("minReadySeconds", 0))
        if (annotations, rs["spec"]["minReadySeconds"]) != before:
            self._write_rs(rs, spec_changed=before[1] != rs["spec"]["minReadySeconds"])

    def _create_new_rs(self, dep: Obj, h: str, replicas: int, old: list[Obj]) -> Obj | None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        ns = meta["namespace"]
        rs_name = f"{meta['name']}-{h}"
        if self.store.exists(REPLICASETS.storage_key, ns, rs_name):
            return None  # a foreign replica set holds the name; the real controller bumps collisionCount
        template = clone(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = clone(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        desired = _desired(dep)
        annotations = {**_copied_annotations(dep),
                       ANN_DESIRED: str(desired), ANN_MAX: str(desired + max_surge(dep)),
                       ANN_REVISION: str(max((_revision(o) for o in old), default=0) + 1)}
        rs = {"metadata": {"name": rs_name, "namespace": ns, "labels": template["metadata"]["labels"],
                           "annotations": annotations, "ownerReferences": [_owner_ref("Deployment", dep)]},
              "spec": {"replicas": replicas, "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                       "selector": selector, "template": template}}
        created = self.registry.system_create(REPLICASETS, rs)
        if replicas > 0:
            self._event("Deployment", dep, "ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to {replicas}",
                        "deployment-controller")
        return created

    def _write_rs(self, rs: Obj, spec_changed: bool) -> None:
        if spec_changed:
            rs["metadata"]["generation"] = int(rs["metadata"].get("generation", 1)) + 1
        stored = self.registry.system_update(REPLICASETS, rs)
        rs["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]

    def _scale_rs(self, dep: Obj, rs: Obj, replicas: int) -> bool:
        """Set the replica set's size and its desired/max-replicas annotations (upstream's
        scaleReplicaSet); True (with a ScalingReplicaSet event) when the size changed. ``rs`` is
        updated in place so that the rest of the sync sees the new size."""
        desired = _desired(dep)
        annotations = rs["metadata"].setdefault("annotations", {})
        want = {ANN_DESIRED: str(desired), ANN_MAX: str(desired + max_surge(dep))}
        before = _replicas(rs)
        if before == replicas and all(annotations.get(k) == v for k, v in want.items()):
            return False
        rs.setdefault("spec", {})["replicas"] = replicas
        annotations.update(want)
        self._write_rs(rs, spec_changed=before != replicas)
        if before == replicas:
            return False
        self._event("Deployment", dep, "ScalingReplicaSet", f"Scaled {'up' if replicas > before else 'down'} replica "
                    f"set {rs['metadata']['name']} from {before} to {replicas}", "deployment-controller")
        return True

    # rolling update (upstream rolling.go)
    def _rollout_rolling(self, dep: Obj, h: str, new_rs: Obj | None, old: list[Obj]) -> None:
        if new_rs is None:
            new_rs = self._create_new_rs(dep, h, new_rs_replicas(dep, old, None), old)
            if new_rs is None:
                return
        all_rs = [*old, new_rs]
        if self._reconcile_new_rs(dep, all_rs, new_rs):
            return
        self._reconcile_old_rss(dep, all_rs, [rs for rs in old if _replicas(rs) > 0], new_rs)

    def _reconcile_new_rs(self, dep: Obj, all_rs: list[Obj], new_rs: Obj) -> bool:
        desired = _desired(dep)
        if _replicas(new_rs) == desired:
            return False
        if _replicas(new_rs) > desired:
            return self._scale_rs(dep, new_rs, desired)
        return self._scale_rs(dep, new_rs, new_rs_replicas(dep, [rs for rs in all_rs if rs is not new_rs], new_rs))

    def _reconcile_old_rss(self, dep: Obj, all_rs: list[Obj], old_active: list[Obj], new_rs: Obj) -> bool:
        """Scale old replica sets down as far as maxUnavailable allows: unhealthy replicas first, then
        available ones, oldest replica set first."""
        if sum(_replicas(rs) for rs in old_active) == 0:
            return False
        desired = _desired(dep)
        min_available = desired - max_unavailable(dep)
        new_unavailable = _replicas(new_rs) - _available(new_rs)
        max_scaled_down = sum(_replicas(rs) for rs in all_rs) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = 0
        for rs in old_active:  # cleanupUnhealthyReplicas
            if cleaned >= max_scaled_down:
                break
            unhealthy = _replicas(rs) - _available(rs)
            if _replicas(rs) == 0 or unhealthy <= 0:
                continue
            count = min(max_scaled_down - cleaned, unhealthy)
            self._scale_rs(dep, rs, _replicas(rs) - count)
            cleaned += count
        # scaleDownOldReplicaSetsForRollingUpdate
        total = sum(_available(rs) for rs in [*old_active, new_rs]) - min_available
        scaled = 0
        for rs in old_active:
            if scaled >= total:
                break
            if _replicas(rs) == 0:
                continue
            count = min(_replicas(rs), total - scaled)
            self._scale_rs(dep, rs, _replicas(rs) - count)
            scaled += count
        return cleaned + max(scaled, 0) > 0

    # recreate (upstream recreate.go)
    def _rollout_recreate(self, dep: Obj, h: str, new_rs: Obj | None, old: list[Obj]) -> None:
        scaled_down = False
        for rs in old:
            if _replicas(rs) > 0:
                scaled_down = self._scale_rs(dep, rs, 0) or scaled_down
        if scaled_down or self._old_pods_running(old):
            return
        desired = _desired(dep)
        if new_rs is None:
            new_rs = self._create_new_rs(dep, h, desired, old)
            if new_rs is None:
                return
        self._scale_rs(dep, new_rs, desired)

    def _old_pods_running(self, old: list[Obj]) -> bool:
        """Old replica sets still report replicas, or any of their pods (terminating ones included)
        has not reached a terminal phase."""
        if not old:
            return False
        if any((rs.get("status") or {}).get("replicas") for rs in old):
            return True
        uids = {rs["metadata"]["uid"] for rs in old}
        return any(_controller_uid(p) in uids and (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
                   for p in self.store.iter(PODS.storage_key, old[0]["metadata"]["namespace"]))

    # scaling (upstream sync.go's scale)
    def _scale(self, dep: Obj, new_rs: Obj | None, old: list[Obj]) -> None:
        """A replica count change: one active replica set takes the whole count; several (a rollout under
        way) share the change in proportion to their sizes."""
        desired = _desired(dep)
        single = _active_or_latest(new_rs, old)
        if single is not None:
            if _replicas(single) != desired:
                self._scale_rs(dep, single, desired)
            return
        if new_rs is not None and _is_saturated(dep, new_rs):
            for rs in old:
                if _replicas(rs) > 0:
                    self._scale_rs(dep, rs, 0)
            return
        if _is_recreate(dep):
            return
        active = [rs for rs in [*old, *([new_rs] if new_rs else [])] if _replicas(rs) > 0]
        allowed = desired + max_surge(dep) if desired > 0 else 0
        to_add = allowed - sum(_replicas(rs) for rs in active)
        if to_add > 0:  # larger first; on a tie newer first when scaling up, older first when scaling down
            active.sort(key=_rs_age, reverse=True)
        else:
            active.sort(key=_rs_age)
        active.sort(key=lambda rs: -_replicas(rs))
        sizes: dict[str, int] = {}
        added = 0
        for rs in active:
            if to_add != 0:
                share = proportion(dep, rs, to_add, added)
                sizes[rs["metadata"]["name"]] = _replicas(rs) + share
                added += share
            else:
                sizes[rs["metadata"]["name"]] = _replicas(rs)
        for i, rs in enumerate(active):
            name = rs["metadata"]["name"]
            if i == 0 and to_add != 0:  # the leftover goes to the largest
                sizes[name] = max(sizes[name] + to_add - added, 0)
            self._scale_rs(dep, rs, sizes[name])

    def _deployment_status(self, dep: Obj) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        owned = self._owned_replicasets(dep)
        _h, new_rs = _current_replicaset(dep, owned)
        uids = {rs["metadata"]["uid"] for rs in owned}
        pods = [p for p in self.store.list_objects(PODS.storage_key, meta["namespace"])
                if _controller_uid(p) in uids and not p["metadata"].get("deletionTimestamp")]
        new_uid = new_rs["metadata"]["uid"] if new_rs else None
        ready = [p for p in pods if is_ready(p)]
        available = self._available_pods(ready, int(spec.get("minReadySeconds", 0) or 0))
        updated = [p for p in pods if _controller_uid(p) == new_uid]
        desired = _desired(dep)
        old_status = dep.get("status") or {}
        status: Obj = {"observedGeneration": int(meta.get("generation", 1))}
        status.update(_nonzero(replicas=len(pods), updatedReplicas=len(updated), readyReplicas=len(ready),
                               availableReplicas=len(available),
                               unavailableReplicas=max(desired - len(available), 0)))
        strategy = spec.get("strategy") or {}
        max_unavailable = 0
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            max_unavailable = _scaled((strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%"), desired,
                                      round_up=False)
        ok = len(available) >= desired - max_unavailable
        rs_name = new_rs["metadata"]["name"] if new_rs else meta["name"]
        complete = len(updated) == desired and len(pods) == desired and len(available) == desired
        conditions = [
            ("Available", "True" if ok else "False",
             "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
             "Deployment has minimum availability." if ok else "Deployment does not have minimum availability."),
            ("Progressing", "True", "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
             f'ReplicaSet "{rs_name}" has successfully progressed.' if complete
             else f'ReplicaSet "{rs_name}" is progressing.'),
        ]
        previous = {c.get("type"): c for c in old_status.get("conditions") or []}
        stamp = now_time()
        status["conditions"] = []
        for ctype, cstatus, reason, message in conditions:
            prev = previous.get(ctype) or {}
            same_status = prev.get("status") == cstatus
            same_all = same_status and prev.get("reason") == reason and prev.get("message") == message
            status["conditions"].append({
                "type": ctype, "status": cstatus,
                "lastUpdateTime": prev.get("lastUpdateTime", stamp) if same_all else stamp,
                "lastTransitionTime": prev.get("lastTransitionTime", stamp) if same_status else stamp,
                "reason": reason, "message": message,
            })
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        if status != old_status:
            dep["status"] = status
            self.registry.system_update(DEPLOYMENTS, dep)

    def _event(self, kind: str, obj: Obj, reason: str, message: str, component: str) -> None:
        """Record a core/v1 Event about ``obj``, as the real controllers do (not in terminating namespaces)."""
        meta = obj["metadata"]
        ns = self.store.get(NAMESPACES.storage_key, "", meta["namespace"])
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        stamp = now_time()
        event = {"metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
                 "involvedObject": {"apiVersion": "apps/v1", "kind": kind, "name": meta["name"],
                                    "namespace": meta["namespace"], "uid": meta["uid"],
                                    "resourceVersion": meta.get("resourceVersion", "")},
                 "reason": reason, "message": message, "type": "Normal", "count": 1,
                 "source": {"component": component}, "firstTimestamp": stamp, "lastTimestamp": stamp,
                 "reportingComponent": component, "reportingInstance": ""}
        try:
            self.registry.system_create(EVENTS, event)
        except ApiError as exc:
            log.debug("event not recorded: %s", exc.message)

    # ------------------------------------------------------------------ replica sets
    def _reconcile_replicaset(self, rs: Obj, pods: list[Obj]) -> None:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        ns = meta["namespace"]
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        want = int(spec.get("replicas", 1))
        if len(active) < want:
            template = spec.get("template") or {}
            tmeta = template.get("metadata") or {}
            for _ in range(want - len(active)):
                name = f"{meta['name']}-{random_suffix()}"
                while self.store.exists(PODS.storage_key, ns, name):
                    name = f"{meta['name']}-{random_suffix()}"
                pod: Obj = {"metadata": {"name": name, "generateName": f"{meta['name']}-", "namespace": ns,
                                         "labels": clone(tmeta.get("labels") or {}),
                                         "ownerReferences": [_owner_ref("ReplicaSet", rs)]},
                            "spec": clone(template.get("spec") or {})}
                if tmeta.get("annotations"):
                    pod["metadata"]["annotations"] = clone(tmeta["annotations"])
                active.append(self.registry.system_create(PODS, pod))
                self._event("ReplicaSet", rs, "SuccessfulCreate", f"Created pod: {name}", "replicaset-controller")
        elif len(active) > want:
            # not-ready pods go first, then the most recently created
            newest_first = sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
            doomed = [p for p in newest_first if not is_ready(p)] + [p for p in newest_first if is_ready(p)]
            for pod in doomed[: len(active) - want]:
                try:
                    self.registry.delete(PODS, ns, pod["metadata"]["name"])
                    self._event("ReplicaSet", rs, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                                "replicaset-controller")
                except ApiError:
                    pass
                active.remove(pod)
        ready = [p for p in active if is_ready(p)]
        available = self._available_pods(ready, int(spec.get("minReadySeconds", 0) or 0))
        status: Obj = {"replicas": len(active)}
        status.update(_nonzero(fullyLabeledReplicas=len(active), readyReplicas=len(ready),
                               availableReplicas=len(available)))
        status["observedGeneration"] = int(meta.get("generation", 1))
        if status != rs.get("status"):
            rs["status"] = status
            self.registry.system_update(REPLICASETS, rs)

    # ------------------------------------------------------------------ kubelet stand-in
    def _startup_seconds(self, pod: Obj) -> float:
        sources = [pod["metadata"].get("annotations") or {}]
        rs_uid = _controller_uid(pod)
        for rs in self.store.iter(REPLICASETS.storage_key, pod["metadata"].get("namespace", "")):
            if rs["metadata"]["uid"] == rs_uid:
                dep_uid = _controller_uid(rs)
                for dep in self.store.iter(DEPLOYMENTS.storage_key, rs["metadata"]["namespace"]):
                    if dep["metadata"]["uid"] == dep_uid:
                        sources.append(dep["metadata"].get("annotations") or {})
        for source in sources:
            if ANN_STARTUP in source:
                try:
                    return max(float(source[ANN_STARTUP]), 0.0)
                except ValueError:
                    log.warning("pod %s: bad %s annotation %r", pod["metadata"]["name"], ANN_STARTUP,
                                source[ANN_STARTUP])
        return self.timing.startup_seconds

    async def _hook(self, fn: Callable[[Obj], Awaitable[None]], pod: Obj) -> None:
        try:
            async with asyncio.timeout(self.timing.hook_timeout_seconds):
                await fn(clone(pod))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod hook %s failed for %s", getattr(fn, "__name__", fn), pod["metadata"]["name"])

    @staticmethod
    async def _sleep_or(event: asyncio.Event, seconds: float) -> bool:
        """Sleep, or return True early when ``event`` is set."""
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        except TimeoutError:
            return event.is_set()

    def _update_pod(self, key: tuple[str, str], mutate: Callable[[Obj], None]) -> Obj | None:
        pod = self.store.get(PODS.storage_key, *key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return pod
        mutate(pod)
        return self.registry.system_update(PODS, pod)

    async def _pod_lifecycle(self, key: tuple[str, str], run: _PodRun) -> None:
        try:
            stamp = now_time()
            pod = self._update_pod(key, lambda p: _schedule(p, stamp))
            if pod is not None and not run.deleting.is_set() and \
                    not await self._sleep_or(run.deleting, self.timing.pending_seconds):
                pod = self._update_pod(key, lambda p: _start(p, now_time()))
                if pod is not None:
                    run.running = True
                    await self._hook(self.hooks.pod_running, pod)
                    if not await self._sleep_or(run.deleting, self._startup_seconds(pod)):
                        pod = self._update_pod(key, lambda p: _set_ready(p, now_time()))
                        if pod is not None and not run.deleting.is_set():
                            await self._hook(self.hooks.pod_ready, pod)
            await run.deleting.wait()
            pod = self.store.get(PODS.storage_key, *key) or run.last
            if pod is not None and run.running:
                await self._hook(self.hooks.pod_terminating, pod)
            if not run.removed and pod is not None:
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 0) or 0)
                await asyncio.sleep(min(grace, self.timing.terminating_seconds))
                final = self.registry.finalize_delete(PODS, *key)
                pod = final or pod
            if pod is not None and run.running:
                await self._hook(self.hooks.pod_deleted, pod)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kubelet stand-in failed for pod %s/%s", *key)
        finally:
            if self._pods.get(key) is run:
                del self._pods[key]


# --------------------------------------------------------------------------------------------------
# deployment arithmetic (upstream's pkg/controller/deployment/util)

ANN_REVISION = "deployment.kubernetes.io/revision"
ANN_DESIRED = "deployment.kubernetes.io/desired-replicas"
ANN_MAX = "deployment.kubernetes.io/max-replicas"
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", ANN_REVISION, ANN_DESIRED, ANN_MAX,
               "deployment.kubernetes.io/revision-history", "deprecated.deployment.rollback.to"}


def _current_replicaset(dep: Obj, owned: list[Obj]) -> tuple[str, Obj | None]:
    """The pod-template hash of the deployment's current template, and its replica set if it exists."""
    h = template_hash((dep.get("spec") or {}).get("template") or {},
                      int((dep.get("status") or {}).get("collisionCount", 0)))
    return h, next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)


def _desired(dep: Obj) -> int:
    """The deployment's spec.replicas (1 when unset, as the API server defaults it)."""
    return int((dep.get("spec") or {}).get("replicas", 1))


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0) or 0)


def _available(rs: Obj) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0) or 0)


def _int_annotation(obj: Obj, key: str) -> int | None:
    try:
        return int((obj["metadata"].get("annotations") or {})[key])
    except (KeyError, TypeError, ValueError):
        return None


def _revision(rs: Obj) -> int:
    return _int_annotation(rs, ANN_REVISION) or 0


def _rs_age(rs: Obj) -> tuple[str, int, str]:
    """Oldest first: creation time, then (timestamps have one-second resolution and a sandbox rollout
    takes milliseconds) the revision, then the name."""
    return str(rs["metadata"].get("creationTimestamp", "")), _revision(rs), str(rs["metadata"]["name"])


def _copied_annotations(dep: Obj) -> dict[str, str]:
    return {k: v for k, v in (dep["metadata"].get("annotations") or {}).items() if k not in _NOT_COPIED}


ALL_AT_ONCE: Obj = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "100%"}}
"""The strategy a sync reads when :attr:`Timing.rolling_updates` is off: every pod replaced in one step."""


def _is_recreate(dep: Obj) -> bool:
    return ((dep.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate"


def resolve_fenceposts(max_surge_value: Any, max_unavailable_value: Any, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods: percentages of ``desired``, surge rounded up and unavailability
    down; when both come to 0, one pod may be unavailable (or the rollout could never proceed)."""
    surge = _scaled(max_surge_value, desired, round_up=True)
    unavailable = _scaled(max_unavailable_value, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _fenceposts(dep: Obj) -> tuple[int, int]:
    spec = dep.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), _desired(dep))


def max_surge(dep: Obj) -> int:
    return 0 if _is_recreate(dep) else _fenceposts(dep)[0]


def max_unavailable(dep: Obj) -> int:
    desired = _desired(dep)
    if _is_recreate(dep) or desired == 0:
        return 0
    return min(_fenceposts(dep)[1], desired)


def new_rs_replicas(dep: Obj, old: list[Obj], new_rs: Obj | None) -> int:
    """The new replica set's next size in a rolling update: up towards spec.replicas, as far as the
    surge allows (all replica sets' spec.replicas at most spec.replicas + maxSurge)."""
    desired = _desired(dep)
    current_new = _replicas(new_rs) if new_rs is not None else 0
    if _is_recreate(dep):
        return desired
    total = sum(_replicas(rs) for rs in old) + current_new
    max_total = desired + max_surge(dep)
    if total >= max_total:
        return current_new
    return current_new + min(max_total - total, desired - current_new)


def _is_scaling_event(dep: Obj, new_rs: Obj | None, old: list[Obj]) -> bool:
    """spec.replicas differs from the desired-replicas annotation of an active replica set."""
    desired = _desired(dep)
    for rs in [*old, *([new_rs] if new_rs else [])]:
        annotated = _int_annotation(rs, ANN_DESIRED)
        if _replicas(rs) > 0 and annotated is not None and annotated != desired:
            return True
    return False


def _active_or_latest(new_rs: Obj | None, old: list[Obj]) -> Obj | None:
    """The only replica set with replicas, the newest if none has any, None if several have."""
    newest_first = sorted(old, key=_rs_age, reverse=True)
    active = [rs for rs in [*newest_first, *([new_rs] if new_rs else [])] if _replicas(rs) > 0]
    if len(active) == 1:
        return active[0]
    if not active:
        return new_rs if new_rs is not None else (newest_first[0] if newest_first else None)
    return None


def _is_saturated(dep: Obj, rs: Obj) -> bool:
    desired = _desired(dep)
    return _replicas(rs) == desired and _int_annotation(rs, ANN_DESIRED) == desired and _available(rs) == desired


def proportion(dep: Obj, rs: Obj, to_add: int, added: int) -> int:
    """This replica set's share of ``to_add`` more (or fewer) replicas, ``added`` being already handed out
    (upstream's GetProportion): its size scaled by the ratio of the new to the old max-replicas, capped
    by what is left to hand out."""
    if _replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    desired = _desired(dep)
    if desired == 0:
        fraction = -_replicas(rs)
    else:
        before = _int_annotation(rs, ANN_MAX) or 0
        if before == 0:
            before = int((dep.get("status") or {}).get("replicas", 0)) or _replicas(rs)
        scaled = _replicas(rs) * (desired + max_surge(dep)) / before
        fraction = math.floor(scaled + 0.5) - _replicas(rs)  # rounds half away from zero (sizes >= 0)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# --------------------------------------------------------------------------------------------------
# pod status transitions

def _image_id(image: str) -> str:
    repo = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image.split("@")[0]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _containers(pod: Obj) -> list[Obj]:
    return [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]


def _cond(ctype: str, status: str, stamp: str, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": stamp}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _schedule(pod: Obj, stamp: str) -> None:
    pod["spec"]["nodeName"] = NODE_NAME
    names = ",".join(c.get("name", "") for c in _containers(pod))
    unready = f"containers with unready status: [{names.replace(',', ' ')}]"
    status = pod.setdefault("status", {})
    status.update({
        "phase": "Pending",
        "conditions": [
            _cond("PodReadyToStartContainers", "False", stamp),
            _cond("Initialized", "True", stamp),
            _cond("Ready", "False", stamp, "ContainersNotReady", unready),
            _cond("ContainersReady", "False", stamp, "ContainersNotReady", unready),
            _cond("PodScheduled", "True", stamp),
        ],
        "hostIP": POD_IP, "hostIPs": [{"ip": POD_IP}], "startTime": stamp,
        "containerStatuses": [{"name": c.get("name", ""), "state": {"waiting": {"reason": "ContainerCreating"}},
                               "lastState": {}, "ready": False, "restartCount": 0, "image": c.get("image", ""),
                               "imageID": "", "started": False} for c in _containers(pod)],
    })


def _start(pod: Obj, stamp: str) -> None:
    status = pod.setdefault("status", {})
    status["phase"] = "Running"
    status["podIP"] = POD_IP
    status["podIPs"] = [{"ip": POD_IP}]
    for cond in status.get("conditions") or []:
        if cond["type"] == "PodReadyToStartContainers":
            cond.update(status="True", lastTransitionTime=stamp)
    uid = pod["metadata"].get("uid", "")
    status["containerStatuses"] = [{
        "name": c.get("name", ""), "state": {"running": {"startedAt": stamp}}, "lastState": {}, "ready": False,
        "restartCount": 0, "image": c.get("image", ""), "imageID": _image_id(str(c.get("image", ""))),
        "containerID": "containerd://" + hashlib.sha256(f"{uid}/{c.get('name')}".encode()).hexdigest(),
        "started": True} for c in _containers(pod)]


def _set_ready(pod: Obj, stamp: str) -> None:
    status = pod.setdefault("status", {})
    for cond in status.get("conditions") or []:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update(status="True", lastTransitionTime=stamp)
            cond.pop("reason", None)
            cond.pop("message", None)
    for cs in status.get("containerStatuses") or []:
        cs["ready"] = True
