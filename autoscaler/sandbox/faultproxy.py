"""A small HTTP fault proxy for tests and the soak: put it in front of Prometheus or the API server.

It forwards every request to ``upstream`` (streaming responses, so Kubernetes watches work) unless a
fault is set: ``down`` (connection reset), ``status`` (an HTTP error answer), ``delay`` (sleep before
forwarding), ``garbage`` (200 with an unparsable body), ``cut`` (end streamed responses after
``cut_after_s``) or ``rewrite`` (forward, then pass the upstream JSON body through ``rewrite``: how the
fault suite makes a real Prometheus answer empty, NaN, multi-series or stale). Faults apply to paths
matching ``path_filter`` (substring of path and query), to ``methods`` (all when empty), with
``probability`` (storms: some requests fail, some pass).

``observer`` sees every request (method, path with query, body) before it is forwarded, and
``inflight`` holds the requests being forwarded right now: the invariant checker uses them to tell
which controller (one proxy per controller) made a write it sees landing in the sandbox store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}


@dataclass
class Fault:
    mode: str = "pass"  # pass | down | status | delay | garbage | cut | rewrite
    status: int = 503
    delay_s: float = 0.0
    cut_after_s: float = 1.0
    path_filter: str = ""
    methods: frozenset[str] = frozenset()
    probability: float = 1.0
    rewrite: Callable[[Any], Any] | None = None

    def applies(self, method: str, path_qs: str) -> bool:
        if self.mode == "pass" or self.path_filter not in path_qs:
            return False
        if self.methods and method not in self.methods:
            return False
        return self.probability >= 1.0 or random.random() < self.probability


Observer = Callable[[str, str, bytes], None]  # (method, path with query, body)

REASONS = {409: "Conflict", 410: "Expired", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
           504: "Timeout"}


@dataclass
class FaultProxy:
    upstream: str
    host: str = "127.0.0.1"
    port: int = 0
    fault: Fault = field(default_factory=Fault)
    requests: int = 0
    faulted: int = 0
    observer: Observer | None = None
    inflight: list[tuple[str, str]] = field(default_factory=list)
    fault_set_at: float = 0.0  # time.monotonic() of the last set()
    streams: dict[asyncio.Event, str] = field(default_factory=dict)  # open streamed responses -> path_qs

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(self, mode: str = "pass", **kw: Any) -> None:
        if "methods" in kw:
            kw["methods"] = frozenset(kw["methods"])
        self.fault = Fault(mode=mode, **kw)
        self.fault_set_at = time.monotonic()
        if mode in ("cut", "down", "status", "garbage"):  # streams opened before the fault end now too
            for ended, path_qs in self.streams.items():
                if self.fault.path_filter in path_qs:
                    ended.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        f = self.fault
        body = await request.read()
        if self.observer is not None:
            self.observer(request.method, request.path_qs, body)
        applies = f.applies(request.method, request.path_qs)
        return await self._forward(request, body, f, applies)

    async def _forward(self, request: web.Request, body: bytes, f: Fault, applies: bool) -> web.StreamResponse:
        if applies:
            self.faulted += 1
            if f.mode == "down":
                if request.transport is not None:  # drop the connection: the client sees a reset
                    request.transport.abort()
                await asyncio.sleep(3600)  # cancelled at once: the runner cancels handlers of lost connections
            if f.mode == "status":
                return web.json_response({"status": "error", "errorType": "unavailable", "error": "fault proxy",
                                          "kind": "Status", "apiVersion": "v1", "code": f.status,
                                          "reason": REASONS.get(f.status, "InternalError"),
                                          "message": "fault proxy"},
                                         status=f.status)
            if f.mode == "garbage":
                return web.Response(status=200, body=b"\x00not json{{", content_type="application/json")
            if f.mode == "delay":
                await asyncio.sleep(f.delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        # In flight while the upstream handles it (until its response headers: a write commits before those).
        entry = (request.method, request.path)
        self.inflight.append(entry)
        try:
            upstream = await self._session.request(request.method, self.upstream + request.path_qs, data=body or None,
                                                   headers=headers, allow_redirects=False)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"fault proxy: upstream error {exc}")
        finally:
            self.inflight.remove(entry)
        async with upstream:
            if applies and f.mode == "rewrite" and f.rewrite is not None:
                raw = await upstream.read()
                try:
                    doc = f.rewrite(json.loads(raw))
                except ValueError:
                    return web.Response(status=upstream.status, body=raw)
                return web.json_response(doc, status=upstream.status)
            resp = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await resp.prepare(request)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + f.cut_after_s if applies and f.mode == "cut" else None
            ended = asyncio.Event()
            self.streams[ended] = request.path_qs
            try:
                with contextlib.suppress(ConnectionResetError, aiohttp.ClientError, asyncio.TimeoutError):
                    while not ended.is_set():
                        remaining = None if deadline is None else deadline - loop.time()
                        if remaining is not None and remaining <= 0:
                            break
                        read = asyncio.ensure_future(upstream.content.readany())
                        stop = asyncio.ensure_future(ended.wait())
                        try:
                            done, _ = await asyncio.wait({read, stop}, timeout=remaining,
                                                         return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            stop.cancel()
                            if not read.done():
                                read.cancel()
                        if read not in done or read.cancelled():
                            break
                        chunk = read.result()
                        if not chunk:
                            break
                        await resp.write(chunk)
            finally:
                del self.streams[ended]
            with contextlib.suppress(ConnectionResetError):
                await resp.write_eof()
            return resp
