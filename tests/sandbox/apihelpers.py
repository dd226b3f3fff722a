"""Helpers for the sandbox API tests: raw HTTP, kubectl in a fresh HOME, manifests, polling."""

from __future__ import annotations

import asyncio
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

FAST = {"startup_seconds": 0.3, "pending_seconds": 0.05, "terminating_seconds": 0.1, "bookmark_interval_s": 0.5}




@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def reason(self) -> str:
        return str(self.body.get("reason")) if isinstance(self.body, dict) else ""


class Http:
    """Raw HTTP against the sandbox, for the semantics that clients hide."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                      content_type: str | None = "application/json", headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> Reply:
        hdrs = dict(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if content_type and data is not None:
            hdrs["Content-Type"] = content_type
        payload: Any = io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data
        async with self.session.request(method, self.url + path, data=payload, headers=hdrs, params=params) as resp:
            text = await resp.text()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return Reply(resp.status, parsed, resp.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json",
                    **kw: Any) -> Reply:
        return await self.request("PATCH", path, body, content_type=content_type, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)


def deployment(name: str, replicas: int = 1, **extra_annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if extra_annotations:
        meta["annotations"] = dict(extra_annotations)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "triton", "image": "triton:1",
                                                       "resources": {"requests": {"cpu": "1"}}}]}}},
    }


DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"


async def eventually(check: Any, timeout_s: float = 5.0, interval_s: float = 0.05) -> Any:
    """Poll ``check()`` (sync or async) until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {result!r})")
        await asyncio.sleep(interval_s)


@dataclass
class Run:
    rc: int
    out: str
    err: str


class Kubectl:
    """The real kubectl with a fresh HOME and the sandbox's kubeconfig, run without blocking the loop
    that serves it."""

    def __init__(self, home: Path, kubeconfig: Path) -> None:
        self.env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig)}

    async def __call__(self, *args: str, stdin: str | None = None) -> Run:
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--request-timeout=10s", *args, env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 30)
        return Run(proc.returncode or 0, out.decode(), err.decode())

    async def ok(self, *args: str, stdin: str | None = None) -> str:
        run = await self(*args, stdin=stdin)
        assert run.rc == 0, f"kubectl {' '.join(args)} failed: {run.err}"
        return run.out
