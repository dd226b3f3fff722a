"""The activator on its own: what it holds, forwards and refuses. Readiness comes from the sandbox API server's
Deployments (a real watch through our kube client); the upstream is a small model server written here."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from autoscaler.activator import HELD_HEADER, Activator, ActivatorSettings
from autoscaler.kube.api import KubeApi
from autoscaler.metrics.localprom import free_port
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.resources import DEPLOYMENTS
from autoscaler.telemetry import serve
from tests.support import P, wait_for


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SandboxCluster]:
    """Leases "cold" (no Ready replica) and "warm" (one), and "plain", a Deployment that is not a lease."""
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        await c.controllers.stop()
        c.create_ready_deployment("cold", namespace="ml", replicas=0, annotations={P + "enabled": "true"})
        c.create_ready_deployment("warm", namespace="ml", replicas=1, annotations={P + "enabled": "true"})
        c.create_ready_deployment("plain", namespace="ml", replicas=1)
        c.write_kubeconfig(tmp_path / "kubeconfig")
        yield c


def set_ready(c: SandboxCluster, name: str, ready: int) -> None:
    """The Deployment's status as its controller would write it (a watch event)."""
    dep = c.store.get(DEPLOYMENTS.storage_key, "ml", name)
    dep["status"]["readyReplicas"] = ready
    c.store.replace(DEPLOYMENTS.storage_key, dep)


async def echo(request: web.Request) -> web.StreamResponse:
    """A model server: ``.../stream`` answers in three chunks 0.3 s apart, anything else echoes the request."""
    if request.path.endswith("/stream"):
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for k in range(3):
            await out.write(f"data: {k}\n\n".encode())
            await asyncio.sleep(0.3)
        await out.write_eof()
        return out
    if request.path.endswith("/hangup"):  # takes the request, then closes the connection without an answer
        HANGUPS.append(request.path)
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
    return web.json_response({"method": request.method, "path": request.path, "query": request.query_string,
                              "body": (await request.read()).decode(), "headers": dict(request.headers),
                              "tags": request.headers.getall("X-Tag", [])},
                             headers={"X-Model": "echo"})


HANGUPS: list[str] = []


@contextlib.asynccontextmanager
async def upstream(port: int = 0) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner, bound = await serve(app, "127.0.0.1", port, shutdown_timeout=0.5)
    try:
        yield bound
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def activator(tmp_path: Path, upstream_port: int, **settings: Any) -> AsyncIterator[tuple[Activator, str]]:
    api = await KubeApi.connect(str(tmp_path / "kubeconfig"))
    act = Activator(api, ActivatorSettings(upstream=f"http://127.0.0.1:{upstream_port}/{{namespace}}/{{name}}",
                                           **settings))
    await act.start()
    runner, port = await serve(act.app(), "127.0.0.1", 0, shutdown_timeout=0.5)
    try:
        assert act.cache is not None
        await act.cache.synced.wait()
        yield act, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await act.stop()
        await api.close()


def sample(act: Activator, name: str, lease: str, **labels: str) -> float:
    value = act.metrics.registry.get_sample_value(name, {"namespace": "ml", "deployment": lease, **labels})
    return 0.0 if value is None else value


async def test_a_ready_lease_is_forwarded_at_once_with_its_request_intact(
        cluster: SandboxCluster, tmp_path: Path) -> None:
    async with upstream() as port, activator(tmp_path, port) as (act, url), aiohttp.ClientSession() as s:
        headers = [("Authorization", "Bearer t"), ("Connection", "keep-alive"), ("X-Trace", "7"), ("X-Tag", "a"),
                   ("X-Tag", "b")]
        headers.append((HELD_HEADER, "99"))  # the activator's to say, not the client's
        async with s.post(f"{url}/ml/warm/v2/models/m/infer?x=1&y=2", data=b'{"inputs": []}',
                          headers=CIMultiDict(headers)) as r:
            assert r.status == 200 and r.headers["X-Model"] == "echo"
            got = await r.json()
    assert got["method"] == "POST" and got["path"] == "/ml/warm/v2/models/m/infer" and got["query"] == "x=1&y=2"
    assert got["body"] == '{"inputs": []}'
    assert got["headers"]["Authorization"] == "Bearer t" and got["headers"]["X-Trace"] == "7"
    assert got["headers"]["X-Forwarded-For"] == "127.0.0.1" and got["tags"] == ["a", "b"]
    assert float(got["headers"][HELD_HEADER]) < 0.1  # forwarded at once (the client's value is not passed on)
    assert sample(act, "autoscaler_activator_requests_total", "warm") == 1
    assert sample(act, "autoscaler_activator_responses_total", "warm", code="200") == 1
    assert sample(act, "autoscaler_activator_hold_seconds_bucket", "warm", le="0.1") == 1


async def test_a_request_waits_for_the_first_ready_replica_then_is_answered(
        cluster: SandboxCluster, tmp_path: Path) -> None:
    async with upstream() as port, activator(tmp_path, port) as (act, url), aiohttp.ClientSession() as s:
        assert sample(act, "autoscaler_activator_requests_total", "cold") == 0  # a series from the start: rate() sees
        t0 = time.monotonic()  # the first request
        pending = [asyncio.create_task(s.post(f"{url}/ml/cold/infer", data=str(k))) for k in range(3)]
        await wait_for(lambda: sample(act, "autoscaler_activator_held_requests", "cold") == 3, 5, "three held")
        assert sample(act, "autoscaler_activator_requests_total", "cold") == 3  # counted while held: what wakes it
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in pending)
        set_ready(cluster, "cold", 1)
        answers = await asyncio.gather(*pending)
        waited = time.monotonic() - t0
        got = [await r.json() for r in answers]
        bodies = sorted(g["body"] for g in got)
        for r in answers:
            r.release()
    assert [r.status for r in answers] == [200] * 3 and bodies == ["0", "1", "2"]
    assert all(0.5 <= float(g["headers"][HELD_HEADER]) <= waited for g in got), got  # the server is told the wait
    assert waited >= 0.5
    assert sample(act, "autoscaler_activator_held_requests", "cold") == 0
    assert sample(act, "autoscaler_activator_hold_seconds_count", "cold") == 3
    assert sample(act, "autoscaler_activator_hold_seconds_bucket", "cold", le="0.1") == 0


async def test_what_cannot_be_held_is_answered_with_a_reason(cluster: SandboxCluster, tmp_path: Path) -> None:
    async with upstream() as port, activator(tmp_path, port, hold_timeout_s=0.6, max_held=1) as (act, url), \
            aiohttp.ClientSession() as s:
        for path, why in (("ml/nope/x", "not a lease"), ("ml/plain/x", "not a lease")):
            async with s.get(f"{url}/{path}") as r:
                assert r.status == 404 and why in (await r.json())["message"]
        first = asyncio.create_task(s.get(f"{url}/ml/cold/x"))
        await wait_for(lambda: sample(act, "autoscaler_activator_held_requests", "cold") == 1, 5, "one held")
        async with s.get(f"{url}/ml/cold/x") as r:  # the second: over max_held
            assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
        r = await first
        assert r.status == 504 and "no Ready replica within 0.6 s" in (await r.json())["message"]
        r.release()
        # a lease deleted while its request waits
        held = asyncio.create_task(s.get(f"{url}/ml/cold/x"))
        await wait_for(lambda: sample(act, "autoscaler_activator_held_requests", "cold") == 1, 5, "held again")
        cluster.store.remove(DEPLOYMENTS.storage_key, "ml", "cold")
        r = await held
        assert r.status == 404 and "deleted" in (await r.json())["message"]
        r.release()
    assert sample(act, "autoscaler_activator_responses_total", "nope", code="404") == 0  # no series per stray path


async def test_a_refused_connection_is_tried_again_until_the_upstream_listens(
        cluster: SandboxCluster, tmp_path: Path) -> None:
    """The Deployment reports Ready before its Service's endpoints do: the connection is refused for a moment."""
    port = free_port()
    async with activator(tmp_path, port, retry_s=0.1) as (act, url), aiohttp.ClientSession() as s:
        pending = asyncio.create_task(s.post(f"{url}/ml/warm/infer", data=b"once"))
        await wait_for(lambda: sample(act, "autoscaler_activator_connect_retries_total", "warm") >= 2, 5, "retries")
        async with upstream(port):
            r = await pending
            assert r.status == 200 and (await r.json())["body"] == "once"
            r.release()


async def test_an_upstream_that_fails_after_taking_the_request_is_a_502_not_a_second_send(
        cluster: SandboxCluster, tmp_path: Path) -> None:
    HANGUPS.clear()
    async with upstream() as port, activator(tmp_path, port, retry_s=0.05) as (_, url), aiohttp.ClientSession() as s:
        async with s.post(f"{url}/ml/warm/hangup", data=b"x") as r:
            assert r.status == 502 and "failed" in (await r.json())["message"]
    assert HANGUPS == ["/ml/warm/hangup"]


async def test_a_streamed_answer_passes_through_as_it_comes(cluster: SandboxCluster, tmp_path: Path) -> None:
    async with upstream() as port, activator(tmp_path, port) as (_, url), aiohttp.ClientSession() as s:
        async with s.get(f"{url}/ml/warm/v1/stream") as r:
            t0 = time.monotonic()
            first = await r.content.readuntil(b"\n\n")
            first_at = time.monotonic() - t0
            rest = await r.read()
            end_at = time.monotonic() - t0
    assert first == b"data: 0\n\n" and rest == b"data: 1\n\ndata: 2\n\n"
    assert end_at - first_at >= 0.4, (first_at, end_at)  # the first chunk came before the upstream finished


async def test_the_command_serves_until_sigterm_and_rejects_a_bad_template(
        cluster: SandboxCluster, tmp_path: Path) -> None:
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autoscaler.cli", "activator", "--kubeconfig", str(tmp_path / "kubeconfig"),
        "--upstream", "http://{service}.svc", stderr=asyncio.subprocess.PIPE)
    _, err = await bad.communicate()
    assert bad.returncode == 1 and b"only {namespace} and {name} can be filled in" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "autoscaler.cli", "activator", "--kubeconfig", str(tmp_path / "kubeconfig"),
            "--listen", f"127.0.0.1:{taken.getsockname()[1]}", stderr=asyncio.subprocess.PIPE)
        _, err = await busy.communicate()
    assert busy.returncode == 1 and b"cannot listen on 127.0.0.1:" in err, err
    listen = free_port()
    async with upstream() as port:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "autoscaler.cli", "activator", "--kubeconfig", str(tmp_path / "kubeconfig"),
            "--listen", f"127.0.0.1:{listen}", "--upstream", f"http://127.0.0.1:{port}/{{namespace}}/{{name}}",
            stderr=asyncio.subprocess.PIPE)
        try:
            async with aiohttp.ClientSession() as s:
                t0 = time.monotonic()
                while True:
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        async with s.get(f"http://127.0.0.1:{listen}/readyz") as r:
                            if r.status == 200:
                                break
                    assert time.monotonic() - t0 < 20, "the activator never became ready"
                    await asyncio.sleep(0.1)
                async with s.get(f"http://127.0.0.1:{listen}/ml/warm/health") as r:
                    assert r.status == 200 and (await r.json())["path"] == "/ml/warm/health"
                async with s.get(f"http://127.0.0.1:{listen}/metrics") as r:
                    assert 'autoscaler_activator_requests_total{deployment="warm",namespace="ml"} 1.0' in await r.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"stopping" in err


async def test_a_lease_names_its_own_upstream(cluster: SandboxCluster, tmp_path: Path) -> None:
    """``inference-autoscaler.io/upstream`` sends one lease elsewhere (its server on another port); a bad value is
    ignored for the activator's template."""
    async with upstream() as default_port, upstream() as own_port:
        cluster.create_ready_deployment("own", namespace="ml", replicas=1, annotations={
            P + "enabled": "true", P + "upstream": f"http://127.0.0.1:{own_port}/v2/{{name}}"})
        cluster.create_ready_deployment("typo", namespace="ml", replicas=1, annotations={
            P + "enabled": "true", P + "upstream": "127.0.0.1:9/x"})
        async with activator(tmp_path, default_port) as (_, url), aiohttp.ClientSession() as s:
            async with s.get(f"{url}/ml/own/infer") as r:
                assert (await r.json())["path"] == "/v2/own/infer"
            async with s.get(f"{url}/ml/typo/infer") as r:
                assert (await r.json())["path"] == "/ml/typo/infer"


async def test_held_bodies_are_bounded_in_memory(cluster: SandboxCluster, tmp_path: Path) -> None:
    """Held requests wait in memory: past ``max_held_bytes`` of bodies (all leases), a request at zero gets 503 with
    Retry-After; the bytes are given back when a held request leaves."""
    async with upstream() as port, activator(tmp_path, port, max_held_bytes=100, hold_timeout_s=0.5) as (act, url), \
            aiohttp.ClientSession() as s:
        held = asyncio.create_task(s.post(f"{url}/ml/cold/x", data=b"a" * 60))
        await wait_for(lambda: act.held_bytes == 60, 5, "60 bytes held")
        async with s.post(f"{url}/ml/cold/x", data=b"b" * 60) as r:
            assert r.status == 503 and "MiB of request bodies" in (await r.json())["message"]
            assert int(r.headers["Retry-After"]) >= 1
        async with s.post(f"{url}/ml/warm/x", data=b"c" * 600) as r:  # a Ready lease: forwarded, never held
            assert r.status == 200
        r = await held
        assert r.status == 504
        r.release()
        assert act.held_bytes == 0
