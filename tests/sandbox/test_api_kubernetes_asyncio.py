"""kubernetes-asyncio, the client the controller uses, against the sandbox: config loading, lists,
watches (with the relist after 410 Gone), the scale subresource, conflicts, leader election."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from apihelpers import FAST, deployment
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from autoscaler.sandbox.cluster import SandboxCluster


@pytest.fixture
async def api(cluster: SandboxCluster, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.write_kubeconfig(tmp_path / "kc")),
                                  client_configuration=cfg)
    async with client.ApiClient(cfg) as api_client:
        yield api_client


async def test_kubeconfig_with_token_works(tmp_path: Path) -> None:
    """The kubeconfig written for a token-protected sandbox authenticates kubernetes-asyncio."""
    async with SandboxCluster(token="t0k3n", **FAST) as c:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(c.write_kubeconfig(tmp_path / "kc")),
                                      client_configuration=cfg)
        async with client.ApiClient(cfg) as api_client:
            namespaces = await client.CoreV1Api(api_client).list_namespace()
        assert "default" in [n.metadata.name for n in namespaces.items]


async def test_list_typed_objects(cluster: SandboxCluster, api: client.ApiClient) -> None:
    """Lists deserialise into typed models with status filled in by the controllers."""
    cluster.create_deployment("triton-a", replicas=2, annotations={"inference-autoscaler.io/enabled": "true"})
    await cluster.wait_for_ready("default", "triton-a")
    deps = await client.AppsV1Api(api).list_namespaced_deployment("default")
    [dep] = deps.items
    assert dep.metadata.annotations["inference-autoscaler.io/enabled"] == "true"
    assert dep.status.ready_replicas == 2 and dep.status.observed_generation == 1
    pods = await client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=triton-a")
    assert len(pods.items) == 2 and all(p.status.pod_ip == "127.0.0.1" for p in pods.items)


async def test_scale_read_and_patch(cluster: SandboxCluster, api: client.ApiClient) -> None:
    """read/patch_namespaced_deployment_scale drive spec.replicas, and pods follow."""
    cluster.create_deployment("triton-a", replicas=1)
    apps = client.AppsV1Api(api)
    scale = await apps.read_namespaced_deployment_scale("triton-a", "default")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=triton-a"
    patched = await apps.patch_namespaced_deployment_scale("triton-a", "default", {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3
    await cluster.wait_for_ready("default", "triton-a", replicas=3)


async def test_stale_replace_is_409(cluster: SandboxCluster, api: client.ApiClient) -> None:
    """replace with a resourceVersion someone else moved past raises ApiException 409."""
    cluster.create_deployment("triton-a")
    apps = client.AppsV1Api(api)
    mine = await apps.read_namespaced_deployment_scale("triton-a", "default")
    theirs = await apps.read_namespaced_deployment_scale("triton-a", "default")
    theirs.spec.replicas = 2
    await apps.replace_namespaced_deployment_scale("triton-a", "default", theirs)
    mine.spec.replicas = 4
    with pytest.raises(ApiException) as err:
        await apps.replace_namespaced_deployment_scale("triton-a", "default", mine)
    assert err.value.status == 409
    core = client.CoreV1Api(api)  # no controller writes ConfigMaps, so the race below is ours alone
    cm = await core.create_namespaced_config_map("default", {"metadata": {"name": "policy"}, "data": {"a": "1"}})
    cm.data = {"a": "2"}
    await core.replace_namespaced_config_map("policy", "default", cm)
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as err:
        await core.replace_namespaced_config_map("policy", "default", cm)
    assert err.value.status == 409


async def test_watch_stream(cluster: SandboxCluster, api: client.ApiClient) -> None:
    """Watch.stream yields typed ADDED/MODIFIED events for deployments."""
    cluster.create_deployment("triton-a")
    w = watch.Watch()
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(10):
        async for event in w.stream(client.AppsV1Api(api).list_namespaced_deployment, "default",
                                    timeout_seconds=2):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "MODIFIED" and event["object"].status.ready_replicas == 1:
                w.stop()
    assert seen[0] == ("ADDED", "triton-a") and seen[-1][0] == "MODIFIED"


async def test_watch_reconnect_after_410(api: client.ApiClient) -> None:
    """A watch from a compacted resourceVersion raises 410; a relist and a new watch recover."""
    async with SandboxCluster(history_size=5, **FAST) as c:
        cfg_api = api  # same client, other server: point it at this cluster
        cfg_api.configuration.host = c.url
        core = client.CoreV1Api(cfg_api)
        first = await core.list_namespaced_config_map("default")
        old_rv = first.metadata.resource_version
        for i in range(10):
            c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
        w = watch.Watch()
        with pytest.raises(ApiException) as err:
            async for _ in w.stream(core.list_namespaced_config_map, "default", resource_version=old_rv,
                                    timeout_seconds=2):
                pass
        assert err.value.status == 410
        relist = await core.list_namespaced_config_map("default")
        assert len(relist.items) == 10

        async def later() -> None:
            await asyncio.sleep(0.2)
            c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}})

        task = asyncio.create_task(later())
        w2 = watch.Watch()
        async with asyncio.timeout(10):
            async for event in w2.stream(core.list_namespaced_config_map, "default",
                                         resource_version=relist.metadata.resource_version, timeout_seconds=3):
                assert (event["type"], event["object"].metadata.name) == ("ADDED", "after")
                w2.stop()
        await task


async def test_leader_election_with_leases(cluster: SandboxCluster, api: client.ApiClient) -> None:
    """kubernetes_asyncio.leaderelection acquires and renews a Lease; a second candidate waits."""
    started: list[str] = []
    leading = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def on_started(identity: str) -> None:
        started.append(identity)
        leading[identity].set()
        await asyncio.sleep(3600)

    async def on_stopped() -> None:
        return None

    def candidate(identity: str) -> leaderelection.LeaderElection:
        lock = LeaseLock("autoscaler-leader", "default", identity, api)
        cfg = electionconfig.Config(lock, lease_duration=3, renew_deadline=2, retry_period=1,
                                    onstarted_leading=lambda: on_started(identity), onstopped_leading=on_stopped)
        return leaderelection.LeaderElection(cfg)

    first = asyncio.create_task(candidate("a").run())
    async with asyncio.timeout(10):
        await leading["a"].wait()
    second = asyncio.create_task(candidate("b").run())
    await asyncio.sleep(2)
    lease = await client.CoordinationV1Api(api).read_namespaced_lease("autoscaler-leader", "default")
    assert started == ["a"] and lease.spec.holder_identity == "a"
    assert lease.spec.lease_duration_seconds == 3 and lease.spec.renew_time is not None
    renewed = lease.metadata.resource_version
    await asyncio.sleep(1.2)
    lease = await client.CoordinationV1Api(api).read_namespaced_lease("autoscaler-leader", "default")
    assert lease.metadata.resource_version != renewed  # the leader keeps renewing
    first.cancel()  # the leader dies without releasing: b takes over after the lease expires
    async with asyncio.timeout(15):
        await leading["b"].wait()
    assert started == ["a", "b"]
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)


async def test_create_via_client_then_pods_appear(cluster: SandboxCluster, api: client.ApiClient) -> None:
    """A deployment created through the API (not the scenario) gets pods too."""
    await client.AppsV1Api(api).create_namespaced_deployment("default", deployment("late", replicas=2))
    await cluster.wait_for_ready("default", "late")
