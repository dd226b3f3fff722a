"""The deployment controller and kubelet stand-in: pods, their lifecycle, status, hooks, cascades."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from apihelpers import FAST, eventually

from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.controllers import ANN_KIND, ANN_SERVING, ANN_STARTUP
from autoscaler.sandbox.resources import DEPLOYMENTS, PODS, REPLICASETS
from autoscaler.sandbox.scenario import Scenario, load_scenario


class Recorder:
    """PodHooks that record calls; optionally raise to prove that hooks cannot break the controllers."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.fail = fail

    async def _record(self, hook: str, pod: dict[str, Any]) -> None:
        self.calls.append((hook, pod["metadata"]["name"], pod))
        if self.fail:
            raise RuntimeError(f"{hook} exploded")

    async def pod_running(self, pod: dict[str, Any]) -> None:
        await self._record("running", pod)

    async def pod_ready(self, pod: dict[str, Any]) -> None:
        await self._record("ready", pod)

    async def pod_terminating(self, pod: dict[str, Any]) -> None:
        await self._record("terminating", pod)

    async def pod_deleted(self, pod: dict[str, Any]) -> None:
        await self._record("deleted", pod)

    def sequence(self, name: str) -> list[str]:
        return [h for h, n, _ in self.calls if n == name]


def pods(c: SandboxCluster, app: str | None = None) -> list[dict[str, Any]]:
    return [p for p in c.store.list_objects(PODS.storage_key)
            if app is None or p["metadata"].get("labels", {}).get("app") == app]


async def test_pods_follow_replicas_with_names_labels_and_owners(cluster: SandboxCluster) -> None:
    """spec.replicas becomes pods named <deploy>-<hash>-<rand5>, labelled and owned by a ReplicaSet."""
    dep = cluster.create_deployment("triton-a", replicas=3, labels={"tier": "gpu"})
    await cluster.wait_for_ready("default", "triton-a")
    [rs] = cluster.store.list_objects(REPLICASETS.storage_key)
    assert rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    ps = pods(cluster, "triton-a")
    assert len(ps) == 3
    for p in ps:
        assert re.fullmatch(r"triton-a-[a-z0-9]{10}-[a-z0-9]{5}", p["metadata"]["name"])
        assert p["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
        assert p["metadata"]["labels"]["tier"] == "gpu" and "pod-template-hash" in p["metadata"]["labels"]
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("ReplicaSet", rs["metadata"]["uid"], True)
        assert p["metadata"]["annotations"][ANN_KIND] == "triton"


async def test_pod_lifecycle_and_status_fields(cluster: SandboxCluster) -> None:
    """Pending -> Running -> Ready after the start-up delay, with the status fields clients read."""
    cluster.create_deployment("triton-a")
    [pod] = await eventually(lambda: pods(cluster))
    assert pod["status"]["phase"] == "Pending"
    running = await eventually(lambda: [p for p in pods(cluster) if p["status"].get("phase") == "Running"])
    conds = {c["type"]: c for c in running[0]["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False"
    ready = await eventually(lambda: [p for p in pods(cluster) if
                                      any(c["type"] == "Ready" and c["status"] == "True"
                                          for c in p["status"]["conditions"])], timeout_s=3)
    status = ready[0]["status"]
    assert status["podIP"] == "127.0.0.1" and status["startTime"] and status["hostIP"] == "127.0.0.1"
    [cs] = status["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["state"]["running"]["startedAt"] and cs["restartCount"] == 0
    ready_cond = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready_cond["lastTransitionTime"] >= status["startTime"]
    assert ready[0]["spec"]["nodeName"] == "sandbox-node"


async def test_deployment_status_is_kept_true(cluster: SandboxCluster) -> None:
    """replicas/ready/available/updated and conditions track the pods; zero counts are omitted."""
    cluster.create_deployment("triton-a", replicas=2)
    starting = await eventually(lambda: cluster.store.get(DEPLOYMENTS.storage_key, "default", "triton-a")
                                .get("status", {}).get("replicas") == 2 and
                                cluster.store.get(DEPLOYMENTS.storage_key, "default", "triton-a"))
    assert "readyReplicas" not in starting["status"] and starting["status"]["unavailableReplicas"] == 2
    dep = await cluster.wait_for_ready("default", "triton-a")
    st = dep["status"]
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"], st["updatedReplicas"]) == (2, 2, 2, 2)
    assert st["observedGeneration"] == dep["metadata"]["generation"] and "unavailableReplicas" not in st
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True" and conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"


async def test_startup_delay_from_annotation() -> None:
    """The startup-seconds annotation on the deployment overrides the default delay."""
    async with SandboxCluster(**{**FAST, "startup_seconds": 30}) as c:
        c.create_deployment("slow", annotations={ANN_STARTUP: "0.1"})
        await c.wait_for_ready("default", "slow", timeout_s=3)
        c.create_deployment("templated", startupSeconds=0.1)  # scenario field -> pod template annotation
        await c.wait_for_ready("default", "templated", timeout_s=3)
        c.create_deployment("default-delay")
        await asyncio.sleep(0.5)
        dep = c.store.get(DEPLOYMENTS.storage_key, "default", "default-delay")
        assert dep is not None and "readyReplicas" not in dep.get("status", {})


async def test_graceful_scale_down(cluster: SandboxCluster) -> None:
    """Scale-down sets deletionTimestamp on the surplus pods, which disappear after a short grace."""
    cluster.create_deployment("triton-a", replicas=3)
    await cluster.wait_for_ready("default", "triton-a")
    dep = cluster.store.get(DEPLOYMENTS.storage_key, "default", "triton-a")
    assert dep is not None
    cluster.registry.patch(DEPLOYMENTS, "default", "triton-a", "application/merge-patch+json",
                           b'{"spec": {"replicas": 1}}', subresource="scale")
    terminating = await eventually(lambda: [p for p in pods(cluster) if p["metadata"].get("deletionTimestamp")])
    assert len(terminating) == 2 and terminating[0]["metadata"]["deletionGracePeriodSeconds"] == 30
    await eventually(lambda: len(pods(cluster)) == 1, timeout_s=3)
    await cluster.wait_for_ready("default", "triton-a")


async def test_hooks_are_called_in_order() -> None:
    """running, ready, terminating, deleted: in that order, with the full pod object."""
    rec = Recorder()
    async with SandboxCluster(hooks=rec, **FAST) as c:
        c.create_deployment("triton-a", serving={"concurrency": 4})
        await c.wait_for_ready("default", "triton-a")
        [pod] = pods(c)
        name = pod["metadata"]["name"]
        await eventually(lambda: rec.sequence(name) == ["running", "ready"])
        running_pod = rec.calls[0][2]
        assert running_pod["status"]["phase"] == "Running" and running_pod["spec"]["containers"]
        assert running_pod["metadata"]["annotations"][ANN_SERVING] == '{"concurrency": 4}'
        c.registry.delete(DEPLOYMENTS, "default", "triton-a")
        await eventually(lambda: rec.sequence(name) == ["running", "ready", "terminating", "deleted"])
        assert rec.calls[2][2]["metadata"]["deletionTimestamp"]


class Signal(Recorder):
    """Recorder whose ``running`` event is set by the pod_running hook itself, just before it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.running = asyncio.Event()

    async def pod_running(self, pod: dict[str, Any]) -> None:
        await super().pod_running(pod)
        self.running.set()


async def test_stopping_as_a_hook_returns_does_not_hang() -> None:
    """Stopping the controllers in the loop step after a pod's hook returned still ends the pod's task.

    The hook's event wakes this test one step before the kubelet stand-in resumes from the hook, so the stop's
    cancellation lands while the hook's result is waiting to be delivered. A timeout that then returns the result
    (asyncio.wait_for before Python 3.12) swallowed the cancellation: the pod's task went on to wait for a deletion
    that never comes, and the stop hung (a test's teardown once hung for half an hour this way)."""
    rec = Signal()
    async with SandboxCluster(hooks=rec, **FAST) as c:
        c.create_deployment("triton-a")
        async with asyncio.timeout(5):
            await rec.running.wait()  # no task in between: this resumes in the step after the hook returned
        try:
            async with asyncio.timeout(5):
                await c.controllers.stop()
        except TimeoutError:
            raise AssertionError("the controllers' stop hung on a pod task that ignored its cancellation") from None


async def test_failing_hooks_do_not_break_the_controller() -> None:
    """Hooks that raise are logged; pods still become Ready and go away."""
    async with SandboxCluster(hooks=Recorder(fail=True), **FAST) as c:
        c.create_deployment("triton-a", replicas=2)
        await c.wait_for_ready("default", "triton-a")
        c.registry.delete(DEPLOYMENTS, "default", "triton-a")
        await eventually(lambda: not pods(c), timeout_s=3)


async def test_template_change_replaces_pods(cluster: SandboxCluster) -> None:
    """A template change makes a new ReplicaSet; old pods go, new ones come, the old RS stays at 0."""
    cluster.create_deployment("triton-a", replicas=2)
    await cluster.wait_for_ready("default", "triton-a")
    old = {p["metadata"]["name"] for p in pods(cluster)}
    cluster.registry.patch(DEPLOYMENTS, "default", "triton-a", "application/strategic-merge-patch+json",
                           b'{"spec":{"template":{"spec":{"containers":[{"name":"triton","image":"t:2"}]}}}}')
    await eventually(lambda: {p["metadata"]["name"] for p in pods(cluster)}.isdisjoint(old)
                     and len(pods(cluster)) == 2, timeout_s=3)
    dep = await cluster.wait_for_ready("default", "triton-a")
    assert dep["metadata"]["generation"] == 2 and dep["status"]["observedGeneration"] == 2
    replica_sets = cluster.store.list_objects(REPLICASETS.storage_key)
    assert sorted(rs["spec"]["replicas"] for rs in replica_sets) == [0, 2]


async def test_replacing_a_deleted_pod(cluster: SandboxCluster) -> None:
    """A pod deleted by hand is replaced by its ReplicaSet."""
    cluster.create_deployment("triton-a")
    await cluster.wait_for_ready("default", "triton-a")
    [pod] = pods(cluster)
    cluster.registry.delete(PODS, "default", pod["metadata"]["name"], {"gracePeriodSeconds": 0})
    await eventually(lambda: [p for p in pods(cluster) if p["metadata"]["name"] != pod["metadata"]["name"]])
    await cluster.wait_for_ready("default", "triton-a")


async def test_orphan_deletion_keeps_pods(cluster: SandboxCluster) -> None:
    """propagationPolicy=Orphan deletes the deployment but leaves its ReplicaSet and pods."""
    cluster.create_deployment("triton-a")
    await cluster.wait_for_ready("default", "triton-a")
    cluster.registry.delete(DEPLOYMENTS, "default", "triton-a", {"propagationPolicy": "Orphan"})
    await asyncio.sleep(0.3)
    [rs] = cluster.store.list_objects(REPLICASETS.storage_key)
    assert "ownerReferences" not in rs["metadata"] and len(pods(cluster)) == 1


async def test_default_scenario_loads_and_runs() -> None:
    """config/sandbox-scenario.yaml parses, and its deployments come up with their annotations."""
    scenario = load_scenario()
    assert scenario.deployments and all(d.load for d in scenario.deployments)
    fast = scenario.model_copy(update={"startupSeconds": 0.1, "pendingSeconds": 0.05,
                                       "deployments": [d.model_copy(update={"startupSeconds": None})
                                                       for d in scenario.deployments]})
    async with SandboxCluster.from_scenario(Scenario.model_validate(fast.model_dump())) as c:
        for d in scenario.deployments:
            dep = await c.wait_for_ready(d.namespace, d.name)
            assert dep["spec"]["template"]["metadata"]["annotations"][ANN_KIND] == d.kind
