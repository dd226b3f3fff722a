"""Watch semantics over raw HTTP and through kubernetes-asyncio's Watch, as controllers use them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from apihelpers import DEPLOYMENTS, Http, deployment

from autoscaler.sandbox.cluster import SandboxCluster

CMS = "/api/v1/namespaces/default/configmaps"


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


async def read_events(url: str, params: dict[str, str], count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Read ``count`` watch events (or until the stream ends)."""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.get(url, params=params) as resp:
        assert resp.status == 200
        async with asyncio.timeout(timeout_s):
            while len(events) < count:
                line = await resp.content.readline()
                if not line:
                    break
                events.append(json.loads(line))
    return events


async def test_watch_from_now_lists_then_streams(cluster: SandboxCluster, http: Http) -> None:
    """Without resourceVersion a watch starts with ADDED for what exists, then live events."""
    await http.post(CMS, cm("a"))

    async def writer() -> None:
        await asyncio.sleep(0.2)
        await http.post(CMS, cm("b"))
        await http.patch(f"{CMS}/a", {"data": {"k": "v"}})
        await http.delete(f"{CMS}/b")

    task = asyncio.create_task(writer())
    events = await read_events(cluster.url + CMS, {"watch": "true"}, 4)
    await task
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert events[0]["object"]["kind"] == "ConfigMap"
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events[1:]]
    assert rvs == sorted(rvs)


async def test_watch_from_resource_version_replays_history(cluster: SandboxCluster, http: Http) -> None:
    """A watch from resourceVersion X gets exactly the changes after X."""
    first = await http.post(CMS, cm("a"))
    rv = first.body["metadata"]["resourceVersion"]
    await http.post(CMS, cm("b"))
    await http.patch(f"{CMS}/a", {"data": {"x": "y"}})
    events = await read_events(cluster.url + CMS, {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "1"}, 10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("MODIFIED", "a")]


async def test_watch_timeout_ends_stream(cluster: SandboxCluster) -> None:
    """timeoutSeconds closes the stream cleanly."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    events = await read_events(cluster.url + CMS, {"watch": "true", "timeoutSeconds": "1",
                                                   "resourceVersion": str(cluster.store.resource_version)}, 5)
    assert events == [] and 0.9 <= loop.time() - start < 3


async def test_watch_too_old_is_410_error_event() -> None:
    """A resourceVersion older than the retained history gets a 410 Expired ERROR event."""
    async with SandboxCluster(history_size=5) as c, aiohttp.ClientSession() as s:
        for i in range(10):
            c.create(cm(f"c{i}"))
        async with s.get(c.url + CMS, params={"watch": "true", "resourceVersion": "2"}) as resp:
            event = json.loads(await resp.content.readline())
            assert await resp.content.readline() == b""  # the stream ends after the error
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


async def test_watch_bookmarks(cluster: SandboxCluster) -> None:
    """allowWatchBookmarks brings BOOKMARK events carrying the current resourceVersion."""
    cluster.create(cm("a"))
    cluster.create(deployment("d"))  # changes elsewhere advance the resourceVersion
    events = await read_events(cluster.url + CMS, {"watch": "true", "allowWatchBookmarks": "true",
                                                   "resourceVersion": "1"}, 2)
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK" and events[1]["object"]["kind"] == "ConfigMap"
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) >= cluster.store.resource_version - 20


async def test_watch_initial_events_end_bookmark(cluster: SandboxCluster) -> None:
    """sendInitialEvents=true ends the initial list with the k8s.io/initial-events-end bookmark."""
    cluster.create(cm("a"))
    events = await read_events(cluster.url + CMS, {"watch": "true", "allowWatchBookmarks": "true",
                                                   "sendInitialEvents": "true",
                                                   "resourceVersionMatch": "NotOlderThan"}, 2)
    assert events[0]["type"] == "ADDED"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_with_label_selector_sees_objects_enter_and_leave(cluster: SandboxCluster,
                                                                      http: Http) -> None:
    """An object relabelled out of the selection is DELETED for the watcher, one relabelled in ADDED."""
    await http.post(CMS, cm("a", team="x"))
    await http.post(CMS, cm("b", team="y"))

    async def writer() -> None:
        await asyncio.sleep(0.2)
        await http.patch(f"{CMS}/a", {"metadata": {"labels": {"team": "y"}}})
        await http.patch(f"{CMS}/b", {"metadata": {"labels": {"team": "x"}}})

    task = asyncio.create_task(writer())
    events = await read_events(cluster.url + CMS, {"watch": "true", "labelSelector": "team=x"}, 3)
    await task
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]


async def test_watch_table_events(cluster: SandboxCluster) -> None:
    """kubectl get -w asks for Tables: every event object is a one-row Table."""
    cluster.create(deployment("d"))
    async with aiohttp.ClientSession() as s, s.get(
            cluster.url + DEPLOYMENTS, params={"watch": "true", "timeoutSeconds": "1"},
            headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"}) as resp:
        event = json.loads(await resp.content.readline())
    assert event["type"] == "ADDED" and event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"][0] == "d" and event["object"]["columnDefinitions"]


async def test_slow_watchers_do_not_block_writes(cluster: SandboxCluster) -> None:
    """Writes complete while a watcher is connected but not reading."""
    async with aiohttp.ClientSession() as s, s.get(cluster.url + CMS, params={"watch": "true"}) as resp:
        assert resp.status == 200
        for i in range(200):
            cluster.create(cm(f"c{i}"))
    assert len(cluster.store.list_objects("/configmaps")) == 200
