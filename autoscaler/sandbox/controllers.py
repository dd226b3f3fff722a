"""The sandbox's controllers: deployment -> replica sets -> pods, a kubelet stand-in, namespace cleanup.

* Deployment controller: one ReplicaSet per pod-template hash (``<deploy>-<hash>``), the current one
  scaled to ``spec.replicas`` and older ones to 0 (a template change replaces all pods at once rather
  than rolling them), status kept true (replicas, updatedReplicas, readyReplicas, availableReplicas,
  unavailableReplicas, observedGeneration, Available/Progressing conditions; zero counts omitted as the
  real server does).
* ReplicaSet controller: creates pods ``<rs>-<rand5>`` with the template's labels and an owner
  reference; on scale-down deletes not-ready pods first, then the newest, gracefully.
* Kubelet stand-in: a new pod is scheduled at once (Pending, ContainerCreating), Running after
  ``pending_seconds``, Ready after the start-up delay (annotation
  ``sandbox.inference-autoscaler.io/startup-seconds`` on the pod template or the deployment, else the
  default), and removed ``terminating_seconds`` after it gets a deletionTimestamp (or sooner if its
  grace period is shorter). It calls the :class:`~autoscaler.sandbox.hooks.PodHooks` on the way.
* Namespace controller: a terminating namespace's contents are deleted, then the namespace.

Reconciliation is level-triggered: any change to a deployment, replica set, pod or namespace marks
the world dirty and one pass reconciles everything (a sandbox holds tens of objects, not thousands).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
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
HASH_LABEL = "pod-template-hash"
NODE_NAME = "sandbox-node"
POD_IP = "127.0.0.1"


@dataclass
class Timing:
    startup_seconds: float = 5.0  # Running -> Ready (model load), unless annotated otherwise
    pending_seconds: float = 0.5  # Pending -> Running (image pull, container start)
    terminating_seconds: float = 1.0  # deletionTimestamp -> gone (capped by the pod's grace period)
    hook_timeout_seconds: float = 10.0


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
        """One level-triggered pass over namespaces, deployments and replica sets."""
        self._reconcile_namespaces()
        for dep in self.store.list_objects(DEPLOYMENTS.storage_key):
            try:
                self._reconcile_deployment(dep)
            except ApiError as exc:
                log.warning("deployment %s/%s: %s", dep["metadata"].get("namespace"), dep["metadata"]["name"],
                            exc.message)
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
        for dep in self.store.list_objects(DEPLOYMENTS.storage_key):
            self._deployment_status(dep)

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
        meta, spec = dep["metadata"], dep.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        ns = meta["namespace"]
        template = clone(spec.get("template") or {})
        h = template_hash(template, int((dep.get("status") or {}).get("collisionCount", 0)))
        desired = int(spec.get("replicas", 1))
        owned = self._owned_replicasets(dep)
        current = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        revisions = [int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
                     for rs in owned]
        if current is None:
            rs_name = f"{meta['name']}-{h}"
            if self.store.exists(REPLICASETS.storage_key, ns, rs_name):
                return  # a foreign replica set holds the name; the real controller bumps collisionCount
            template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
            selector = clone(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            annotations = {**(meta.get("annotations") or {}),
                           "deployment.kubernetes.io/desired-replicas": str(desired),
                           "deployment.kubernetes.io/max-replicas": str(desired),
                           "deployment.kubernetes.io/revision": str(max(revisions, default=0) + 1)}
            annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
            rs = {"metadata": {"name": rs_name, "namespace": ns, "labels": template["metadata"]["labels"],
                               "annotations": annotations, "ownerReferences": [_owner_ref("Deployment", dep)]},
                  "spec": {"replicas": desired, "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                           "selector": selector, "template": template}}
            self.registry.system_create(REPLICASETS, rs)
            self._event("Deployment", dep, "ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to {desired}",
                        "deployment-controller")
        elif int((current.get("spec") or {}).get("replicas", 0)) != desired:
            before = int((current.get("spec") or {}).get("replicas", 0))
            self._event("Deployment", dep, "ScalingReplicaSet", f"Scaled {'up' if desired > before else 'down'} replica set "
                        f"{current['metadata']['name']} from {before} to {desired}", "deployment-controller")
            current["spec"]["replicas"] = desired
            current["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(
                desired)
            current["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            self.registry.system_update(REPLICASETS, current)
        old = [rs for rs in owned if rs is not current and (rs["metadata"].get("labels") or {}).get(HASH_LABEL) != h]
        for rs in old:
            if int((rs.get("spec") or {}).get("replicas", 0)) != 0:
                self._event("Deployment", dep, "ScalingReplicaSet", f"Scaled down replica set {rs['metadata']['name']} from "
                            f"{rs['spec']['replicas']} to 0", "deployment-controller")
                rs["spec"]["replicas"] = 0
                rs["metadata"]["generation"] = int(rs["metadata"].get("generation", 1)) + 1
                self.registry.system_update(REPLICASETS, rs)
        limit = int(spec.get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if not (rs.get("status") or {}).get("replicas")]
        idle.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", 0)))
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.registry.delete(REPLICASETS, ns, rs["metadata"]["name"])

    def _deployment_status(self, dep: Obj) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        owned = self._owned_replicasets(dep)
        h = template_hash(spec.get("template") or {}, int((dep.get("status") or {}).get("collisionCount", 0)))
        new_rs = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        uids = {rs["metadata"]["uid"] for rs in owned}
        pods = [p for p in self.store.list_objects(PODS.storage_key, meta["namespace"])
                if _controller_uid(p) in uids and not p["metadata"].get("deletionTimestamp")]
        new_uid = new_rs["metadata"]["uid"] if new_rs else None
        min_ready = int(spec.get("minReadySeconds", 0))
        now = datetime.now(UTC).timestamp()
        ready = [p for p in pods if is_ready(p)]
        available = [p for p in ready if min_ready == 0 or (now - (_ready_since(p) or now)) >= min_ready]
        updated = [p for p in pods if _controller_uid(p) == new_uid]
        desired = int(spec.get("replicas", 1))
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
        status: Obj = {"replicas": len(active)}
        status.update(_nonzero(fullyLabeledReplicas=len(active), readyReplicas=len(ready),
                               availableReplicas=len(ready)))
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
            await asyncio.wait_for(fn(clone(pod)), self.timing.hook_timeout_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod hook %s failed for %s", getattr(fn, "__name__", fn), pod["metadata"]["name"])

    @staticmethod
    async def _sleep_or(event: asyncio.Event, seconds: float) -> bool:
        """Sleep, or return True early when ``event`` is set."""
        try:
            await asyncio.wait_for(event.wait(), seconds)
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
