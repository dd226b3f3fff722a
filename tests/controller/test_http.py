"""The controller's HTTP endpoints, over HTTP: /metrics, /healthz, /readyz, /leases. A scrape reads the leases on the
event loop and renders its text in a worker thread, so a slow render (10,000 leases: ~0.5 s) stalls neither the
control loop nor the health probes, and each scrape shows the leases as they were when it read them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from autoscaler.telemetry import LeaseSeries, Telemetry, make_app, serve


class _SlowFirstRender(Collector):
    """Holds the first scrape's rendering until released, and records which thread rendered."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.threads.append(threading.current_thread())
        if len(self.threads) == 1:
            self.started.set()
            self.release.wait(10)
        yield GaugeMetricFamily("test_renders", "renders so far", value=len(self.threads))


class _App:
    def __init__(self) -> None:
        self.telemetry = Telemetry()
        self.rows = [LeaseSeries("ml", "a", "enforce", 2, 3, (("queueTime", 12000.0, 10000.0),))]
        self.read_on: list[threading.Thread] = []
        self.healthy = (True, "ok")

        def source() -> list[LeaseSeries]:
            self.read_on.append(threading.current_thread())
            return self.rows
        self.telemetry.watch_leases(source)
        self.slow = _SlowFirstRender()
        self.telemetry.register(self.slow)
        self.view: list[dict[str, Any]] = [{"namespace": "ml", "name": "a", "desired": 3, "history": []}]


@pytest.fixture
async def app() -> AsyncIterator[tuple[_App, str, aiohttp.ClientSession]]:
    a = _App()
    web_app = make_app(a.telemetry, healthy=lambda: a.healthy, ready=lambda: (False, "caches not synced"),
                       leases=lambda: a.view)
    runner, port = await serve(web_app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            yield a, f"http://127.0.0.1:{port}", http
    finally:
        a.slow.release.set()
        await runner.cleanup()


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_a_slow_scrape_stalls_neither_the_loop_nor_the_probes(
        app: tuple[_App, str, aiohttp.ClientSession]) -> None:
    a, base, http = app
    first = asyncio.create_task(_get(http, base + "/metrics"))
    assert await asyncio.to_thread(a.slow.started.wait, 10)  # its render has started, and is held
    # meanwhile the loop runs: the probes answer and the leases change (as the next control loop would change them)
    assert await _get(http, base + "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    a.healthy = (False, "last loop 75s ago")
    assert (await _get(http, base + "/healthz"))[::2] == (503, "last loop 75s ago\n")
    assert (await _get(http, base + "/readyz"))[::2] == (503, "caches not synced\n")
    a.rows = [LeaseSeries("ml", "b", "shadow", 1, 4, (("queueTime", 500.0, 10000.0),))]
    status, ctype, second = await _get(http, base + "/metrics")
    assert not first.done()
    assert status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype
    assert 'autoscaler_lease_desired_replicas{lease="b",mode="shadow",namespace="ml"} 4.0' in second
    assert 'lease="a"' not in second
    a.slow.release.set()
    status, _, text = await first  # what the first scrape read, although the leases changed while it rendered
    assert status == 200
    assert 'autoscaler_lease_desired_replicas{lease="a",mode="enforce",namespace="ml"} 3.0' in text
    assert 'autoscaler_lease_metric_value{lease="a",metric="queueTime",namespace="ml"} 12000.0' in text
    assert 'lease="b"' not in text
    loop_thread = threading.current_thread()
    assert a.read_on == [loop_thread, loop_thread]  # the leases are read on the loop, which changes them
    assert all(t is not loop_thread for t in a.slow.threads)  # the text is rendered off it


async def test_lease_view_is_the_leases_as_json(app: tuple[_App, str, aiohttp.ClientSession]) -> None:
    a, base, http = app
    async with http.get(base + "/leases") as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == a.view
