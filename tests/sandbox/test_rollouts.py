"""The deployment controller's rollouts, as upstream's: rolling updates within maxSurge/maxUnavailable,
Recreate, proportional scaling of a rollout under way, and kubectl rollout status waiting for them.

Live tests sample every store write (a synchronous store listener), so a bound broken for a single
write is seen; stepped tests drive the controllers by hand (no kubelet: the test makes pods Ready)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from apihelpers import DEPLOYMENTS as DEPLOYMENTS_PATH
from apihelpers import FAST, Http, Kubectl, deployment, eventually

from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.controllers import ANN_STARTUP, _set_ready, is_ready, resolve_fenceposts
from autoscaler.sandbox.resources import DEPLOYMENTS, EVENTS, PODS, REPLICASETS
from autoscaler.sandbox.store import Change

Obj = dict[str, Any]
HASH = "pod-template-hash"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX = "deployment.kubernetes.io/max-replicas"


@pytest.fixture
async def cluster() -> AsyncIterator[SandboxCluster]:
    """The sandbox with upstream's rollouts (`autoscaler sandbox up --rolling-updates`)."""
    async with SandboxCluster(**FAST, rolling_updates=True) as c:
        yield c


def manifest(name: str, replicas: int, strategy: Obj | None = None, **annotations: str) -> Obj:
    dep = deployment(name, replicas, **annotations)
    if strategy is not None:
        dep["spec"]["strategy"] = strategy
    return dep


def rolling(surge: int | str, unavailable: int | str) -> Obj:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def new_image(c: SandboxCluster, name: str, image: str = "triton:2", **template_annotations: str) -> None:
    """Change the pod template as `kubectl set image` (and `rollout restart`, for the annotations) do."""
    template: Obj = {"spec": {"containers": [{"name": "triton", "image": image}]}}
    if template_annotations:
        template["metadata"] = {"annotations": template_annotations}
    c.registry.patch(DEPLOYMENTS, "default", name, "application/strategic-merge-patch+json",
                     json.dumps({"spec": {"template": template}}).encode())


def replica_sets(c: SandboxCluster, app: str) -> list[Obj]:
    """The deployment's replica sets, oldest revision first."""
    return sorted((rs for rs in c.store.list_objects(REPLICASETS.storage_key)
                   if rs["metadata"]["labels"].get("app") == app),
                  key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))


def sizes(c: SandboxCluster, app: str) -> list[int]:
    return [rs["spec"]["replicas"] for rs in replica_sets(c, app)]


def app_pods(c: SandboxCluster, app: str) -> list[Obj]:
    return [p for p in c.store.list_objects(PODS.storage_key) if p["metadata"]["labels"].get("app") == app]


@dataclass
class Sample:
    pods: int  # not terminating
    available: int  # Ready, not terminating (minReadySeconds 0)
    hashes: frozenset[str]  # the templates of all pods, terminating ones included


@dataclass
class Sampler:
    """Samples the app's pods after every store write."""

    c: SandboxCluster
    app: str
    samples: list[Sample] = field(default_factory=list)

    def __call__(self, change: Change) -> None:
        if change.storage != PODS.storage_key:
            return
        pods = app_pods(self.c, self.app)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        self.samples.append(Sample(len(live), sum(1 for p in live if is_ready(p)),
                                   frozenset(p["metadata"]["labels"][HASH] for p in pods)))

    @property
    def max_pods(self) -> int:
        return max(s.pods for s in self.samples)

    @property
    def min_available(self) -> int:
        return min(s.available for s in self.samples)


@contextmanager
def sampling(c: SandboxCluster, app: str) -> Iterator[Sampler]:
    sampler = Sampler(c, app)
    c.store.add_listener(sampler)
    try:
        yield sampler
    finally:
        c.store.remove_listener(sampler)


async def rolled_out(c: SandboxCluster, app: str, replicas: int, timeout_s: float = 10.0) -> Obj:
    """The rollout finished: every pod is of the newest replica set and Ready, the old ones are gone."""
    dep = await c.wait_for_ready("default", app, timeout_s=timeout_s)
    await eventually(lambda: len(app_pods(c, app)) == replicas, timeout_s=timeout_s)
    *old, new = replica_sets(c, app)
    assert [rs["spec"]["replicas"] for rs in old] == [0] * len(old) and new["spec"]["replicas"] == replicas
    assert {p["metadata"]["labels"][HASH] for p in app_pods(c, app)} == {new["metadata"]["labels"][HASH]}
    return dep


# ------------------------------------------------------------------ fenceposts


@pytest.mark.parametrize(("surge", "unavailable", "replicas", "expected"), [
    ("25%", "25%", 1, (1, 0)),      # the defaults: surge rounds up, unavailability down
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 10, (3, 2)),
    ("50%", "50%", 3, (2, 1)),
    (0, "0%", 4, (0, 1)),           # both 0: one pod may be unavailable
    (0, 0, 1, (0, 1)),
    (0, "10%", 4, (0, 1)),          # 10 % of 4 rounds down to 0
    (2, 0, 4, (2, 0)),
    ("0%", 1, 4, (0, 1)),
])
def test_fenceposts(surge: int | str, unavailable: int | str, replicas: int, expected: tuple[int, int]) -> None:
    """maxSurge rounds up, maxUnavailable down, and when both resolve to 0 maxUnavailable is 1."""
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


# ------------------------------------------------------------------ rolling updates, live


async def test_rolling_restart_keeps_the_old_pod_until_the_new_one_is_ready(cluster: SandboxCluster) -> None:
    """A restart of 1 replica (defaults: surge 1, unavailable 0) keeps the old pod until the new one is Ready."""
    cluster.create(manifest("one", 1))
    await cluster.wait_for_ready("default", "one")
    with sampling(cluster, "one") as s:
        new_image(cluster, "one", "triton:1", **{"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"})
        old_rs, new_rs = await eventually(lambda: len(replica_sets(cluster, "one")) == 2
                                          and replica_sets(cluster, "one"))
        assert (old_rs["spec"]["replicas"], new_rs["spec"]["replicas"]) == (1, 1)  # surged, not swapped
        await rolled_out(cluster, "one", 1)
    assert s.min_available == 1 and s.max_pods == 2
    events = sorted(cluster.store.list_objects(EVENTS.storage_key), key=lambda e: int(e["metadata"]["resourceVersion"]))
    messages = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet"]
    old_name, new_name = old_rs["metadata"]["name"], new_rs["metadata"]["name"]
    assert messages[-2:] == [f"Scaled up replica set {new_name} from 0 to 1",
                             f"Scaled down replica set {old_name} from 1 to 0"]


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "max_pods", "min_available"), [
    (4, 1, 0, 5, 4),
    (4, 0, 1, 4, 3),
    (4, 0, "10%", 4, 3),        # both resolve to 0: one may be unavailable, and the rollout completes
    (4, "50%", "25%", 6, 3),
])
async def test_rolling_update_stays_within_surge_and_unavailability(
        cluster: SandboxCluster, replicas: int, surge: int | str, unavailable: int | str, max_pods: int,
        min_available: int) -> None:
    """Throughout a rolling update the pods never exceed replicas + maxSurge nor the available ones fall
    below replicas - maxUnavailable (both bounds reached), and the rollout completes."""
    cluster.create(manifest("roll", replicas, rolling(surge, unavailable)))
    await cluster.wait_for_ready("default", "roll")
    with sampling(cluster, "roll") as s:
        new_image(cluster, "roll")
        await rolled_out(cluster, "roll", replicas)
    assert (s.max_pods, s.min_available) == (max_pods, min_available)
    assert {rs["metadata"]["annotations"][DESIRED] for rs in replica_sets(cluster, "roll")} == {str(replicas)}


async def test_recreate_creates_no_new_pod_while_an_old_one_exists(cluster: SandboxCluster) -> None:
    """Recreate scales the old replica set to 0 and creates new pods only once every old pod is gone."""
    cluster.create(manifest("rec", 3, {"type": "Recreate"}))
    await cluster.wait_for_ready("default", "rec")
    [old] = replica_sets(cluster, "rec")
    with sampling(cluster, "rec") as s:
        new_image(cluster, "rec")
        await rolled_out(cluster, "rec", 3)
    assert all(len(sample.hashes) <= 1 for sample in s.samples)
    assert s.samples[0].hashes == {old["metadata"]["labels"][HASH]} and s.min_available == 0
    new = replica_sets(cluster, "rec")[-1]
    assert new["metadata"]["annotations"][MAX] == "3"  # no surge with Recreate


async def test_min_ready_seconds_hold_the_rollout(cluster: SandboxCluster) -> None:
    """A new pod counts as available (and lets the old one go) only minReadySeconds after it is Ready."""
    cluster.create(manifest("slowready", 1))
    await cluster.wait_for_ready("default", "slowready")
    with sampling(cluster, "slowready") as s:  # Ready times have one-second resolution: 2 s is 1 to 2 s
        cluster.registry.patch(DEPLOYMENTS, "default", "slowready", "application/strategic-merge-patch+json",
                               b'{"spec": {"minReadySeconds": 2, "template": {"spec": {"containers": '
                               b'[{"name": "triton", "image": "triton:2"}]}}}}')
        old, new = await eventually(lambda: len(replica_sets(cluster, "slowready")) == 2
                                    and replica_sets(cluster, "slowready"))
        new_hash = new["metadata"]["labels"][HASH]
        await eventually(lambda: any(is_ready(p) for p in app_pods(cluster, "slowready")
                                     if p["metadata"]["labels"][HASH] == new_hash))
        ready_at = asyncio.get_running_loop().time()
        old, new = replica_sets(cluster, "slowready")
        assert old["spec"]["replicas"] == 1 and "availableReplicas" not in new.get("status", {})
        await eventually(lambda: sizes(cluster, "slowready") == [0, 1], timeout_s=5)
        assert asyncio.get_running_loop().time() - ready_at >= 0.9
        assert replica_sets(cluster, "slowready")[-1]["status"]["availableReplicas"] == 1
    assert s.min_available == 1


# ------------------------------------------------------------------ scaling during a rollout


def _stepped() -> SandboxCluster:
    """A cluster whose controllers are not started: the test calls reconcile() and plays the kubelet."""
    return SandboxCluster(**FAST, rolling_updates=True)


def _play_kubelet(c: SandboxCluster, ready: bool = True) -> None:
    """Remove terminating pods and (``ready``) make every other pod Ready."""
    for pod in c.store.list_objects(PODS.storage_key):
        if pod["metadata"].get("deletionTimestamp"):
            c.registry.finalize_delete(PODS, "default", pod["metadata"]["name"])
        elif ready and not is_ready(pod):
            pod.setdefault("status", {}).update(phase="Running", conditions=[
                {"type": "Ready", "status": "False", "lastTransitionTime": "2025-01-01T00:00:00Z"}])
            _set_ready(pod, "2025-01-01T00:00:00Z")
            c.registry.system_update(PODS, pod)


def _settle(c: SandboxCluster, ready: bool = True) -> None:
    for _ in range(30):
        _play_kubelet(c, ready)
        c.controllers.reconcile()


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "stalled", "scale_to", "split"), [
    (10, 3, 2, [8, 5], 15, [11, 7]),      # the upstream documentation's example
    (10, 3, 2, [8, 5], 5, [5, 3]),
    (10, 3, 2, [8, 5], 0, [0, 0]),
    (4, 1, 0, [4, 1], 8, [7, 2]),         # 5 -> 9 pods: 4 * 9/5 = 7.2 -> 7, 1 * 9/5 = 1.8 -> 2
    (4, 1, 0, [4, 1], 3, [3, 1]),         # 5 -> 4 pods: 3.2 -> 3, 0.8 -> 1
    (6, 2, 1, [5, 3], 2, [2, 2]),         # 8 -> 4 pods: 2.5 -> 3, 1.5 -> 2, the leftover -1 to the largest
    (3, 1, 0, [3, 1], 1, [1, 1]),         # 4 -> 2 pods: 1.5 -> 2, 0.5 -> 1, the leftover -1 to the largest
])
async def test_scaling_mid_rollout_is_proportional(replicas: int, surge: int, unavailable: int,
                                                   stalled: list[int], scale_to: int, split: list[int]) -> None:
    """A /scale during a rollout spreads the change over the replica sets in proportion to their sizes
    (leftover to the largest), and the rollout then completes at the new count."""
    c = _stepped()
    c.create(manifest("prop", replicas, rolling(surge, unavailable)))
    _settle(c)
    new_image(c, "prop")
    _settle(c, ready=False)  # the new pods never get Ready: the rollout stalls at the bounds
    assert sizes(c, "prop") == stalled
    c.registry.patch(DEPLOYMENTS, "default", "prop", "application/merge-patch+json",
                     json.dumps({"spec": {"replicas": scale_to}}).encode(), subresource="scale")
    c.controllers.reconcile()
    assert sizes(c, "prop") == split
    want_max = str(scale_to + surge)
    assert all(rs["metadata"]["annotations"][DESIRED] == str(scale_to) and rs["metadata"]["annotations"][MAX]
               == want_max for rs in replica_sets(c, "prop") if rs["spec"]["replicas"])
    _settle(c)
    assert sizes(c, "prop") == [0, scale_to]
    assert len(app_pods(c, "prop")) == scale_to


async def test_scale_subresource_mid_rollout_live(cluster: SandboxCluster, http: Http) -> None:
    """PATCH /scale (the autoscaler's path) while new pods are starting: the replica sets share the change
    at once and the rollout completes at the new count."""
    cluster.create(manifest("live", 10, rolling(3, 2)))
    await cluster.wait_for_ready("default", "live")
    new_image(cluster, "live", **{ANN_STARTUP: "1"})
    await eventually(lambda: sizes(cluster, "live") == [8, 5], timeout_s=0.8)
    r = await http.patch(f"{DEPLOYMENTS_PATH}/live/scale", {"spec": {"replicas": 15}})
    assert r.status == 200 and r.body["spec"]["replicas"] == 15
    await eventually(lambda: sizes(cluster, "live") == [11, 7], timeout_s=0.5)
    assert not any(is_ready(p) for p in app_pods(cluster, "live")
                   if p["metadata"]["labels"][HASH] == replica_sets(cluster, "live")[-1]["metadata"]["labels"][HASH])
    await rolled_out(cluster, "live", 15)


async def test_scaling_a_settled_deployment_scales_its_only_replica_set(cluster: SandboxCluster) -> None:
    """With one active replica set a scale goes to it whole, and its desired/max annotations follow."""
    cluster.create(manifest("single", 2))
    await cluster.wait_for_ready("default", "single")
    new_image(cluster, "single")
    await rolled_out(cluster, "single", 2)
    cluster.registry.patch(DEPLOYMENTS, "default", "single", "application/merge-patch+json",
                           b'{"spec": {"replicas": 5}}', subresource="scale")
    await cluster.wait_for_ready("default", "single")
    old, new = replica_sets(cluster, "single")
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 5)
    assert (new["metadata"]["annotations"][DESIRED], new["metadata"]["annotations"][MAX]) == ("5", "7")


# ------------------------------------------------------------------ kubectl


@pytest.mark.kubectl
async def test_kubectl_rollout_status_waits_for_the_rollout(cluster: SandboxCluster, kubectl: Kubectl) -> None:
    """kubectl rollout restart, then rollout status waits (old pods pending termination) and succeeds once
    every pod is new and Ready."""
    cluster.create(manifest("ks", 2, **{ANN_STARTUP: "0.6"}))
    await cluster.wait_for_ready("default", "ks")
    [before] = replica_sets(cluster, "ks")
    assert "restarted" in await kubectl.ok("rollout", "restart", "deployment/ks")
    out = await kubectl.ok("rollout", "status", "deployment/ks", "--timeout=20s")
    assert "old replicas are pending termination" in out
    assert 'deployment "ks" successfully rolled out' in out.splitlines()[-1]
    old, new = replica_sets(cluster, "ks")
    assert old["metadata"]["name"] == before["metadata"]["name"]
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 2)
    new_pods = [p for p in app_pods(cluster, "ks") if not p["metadata"].get("deletionTimestamp")]
    assert len(new_pods) == 2 and all(is_ready(p) and p["metadata"]["labels"][HASH] == new["metadata"]["labels"][HASH]
                                      for p in new_pods)


async def test_by_default_a_new_template_replaces_every_pod_at_once() -> None:
    """Without --rolling-updates the strategy is read as 100 % surge and unavailability: one sync scales the new
    replica set to the full count and the old ones to 0, whatever the Deployment's strategy says."""
    async with SandboxCluster(**FAST) as c:
        c.create(manifest("atonce", 3, rolling(0, 1)))
        await rolled_out(c, "atonce", 3)
        with sampling(c, "atonce") as s:
            new_image(c, "atonce")
            await rolled_out(c, "atonce", 3)
        assert s.min_available == 0  # every old pod went before a new one was Ready (rolling(0, 1): 2)
