"""Watch-based caches (a small informer): list once, then follow a watch, never list per loop.

Concurrency: one task per cache owns the store; readers get plain dict lookups on the event loop,
so no locking is needed. The watch reconnects with exponential backoff; on 410 Gone (or an ERROR
event) it relists and replaces the store, reporting objects that vanished meanwhile as deletions.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from autoscaler.kube.api import KubeApi, KubeError

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Handler = Callable[[str, dict[str, Any]], None]  # (event type, object)
Transform = Callable[[dict[str, Any]], dict[str, Any]]  # the part of an object worth keeping


def obj_key(obj: dict[str, Any]) -> Key:
    md = obj.get("metadata") or {}
    return (str(md.get("namespace") or ""), str(md.get("name") or ""))


class WatchCache:
    """Keeps ``objects`` in step with the server for one collection path.

    ``transform`` (as client-go's informer transform) reduces every object, listed or watched, before it is
    stored and handed to the handlers: the cache holds only what its readers use (it must keep
    ``metadata.name``, ``namespace`` and ``resourceVersion``).
    """

    def __init__(self, api: KubeApi, path: str, *, name: str = "", label_selector: str | None = None,
                 field_selector: str | None = None, watch_timeout_s: int = 300,
                 max_backoff_s: float = 30.0, page_size: int = 5000, transform: Transform | None = None) -> None:
        self.api = api
        self.path = path
        self.name = name or path
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout_s = watch_timeout_s
        self.max_backoff_s = max_backoff_s
        self.page_size = page_size
        self.transform = transform
        self.objects: dict[Key, dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.handlers: list[Handler] = []
        self.relists = 0
        self.errors = 0

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        for h in self.handlers:
            try:
                h(kind, obj)
            except Exception:  # a handler bug must not kill the watch
                log.exception("cache %s: handler failed on %s", self.name, kind)

    def _query(self) -> dict[str, Any]:
        return {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}

    async def relist(self) -> None:
        items: dict[Key, dict[str, Any]] = {}
        cont: str | None = None
        while True:
            doc = await self.api.get(self.path, limit=self.page_size, **{"continue": cont}, **self._query())
            for item in doc.get("items") or []:
                items[obj_key(item)] = item if self.transform is None else self.transform(item)
            meta = doc.get("metadata") or {}
            cont = meta.get("continue") or None
            rv = str(meta.get("resourceVersion") or "")
            if not cont:
                break
        old = self.objects
        self.objects = items
        self.resource_version = rv
        self.relists += 1
        for key, obj in old.items():
            if key not in items:
                self._emit("DELETED", obj)
        for key, obj in items.items():
            prev = old.get(key)
            if prev is None:
                self._emit("ADDED", obj)
            elif (prev.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get(
                    "resourceVersion"):
                self._emit("MODIFIED", obj)
        self.synced.set()

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """Apply one watch event (also used to fold in our own writes' responses early)."""
        if self.transform is not None:
            obj = self.transform(obj)
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        key = obj_key(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            cur = self.objects.get(key)
            if cur is not None and _rv_newer(cur, rv):
                return  # stale event: we already hold a newer version
            self.objects[key] = obj
        self._emit(kind, obj)

    async def run(self) -> None:
        backoff = 0.5
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                async for event in self.api.watch(self.path, resource_version=self.resource_version,
                                                  timeout_s=self.watch_timeout_s, **self._query()):
                    etype = event.get("type")
                    obj = event.get("object") or {}
                    if etype == "ERROR":
                        code = obj.get("code")
                        log.info("cache %s: watch ERROR %s (%s); relisting", self.name, code, obj.get("message"))
                        need_list = True
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.resource_version = str(rv)
                    if etype == "BOOKMARK":
                        continue
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        self.apply(etype, obj)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                self.errors += 1
                if exc.gone:
                    need_list = True
                    continue
                log.warning("cache %s: %s; retrying in %.1fs", self.name, exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff_s)
                need_list = need_list or exc.status in (0, 500, 503)
            except Exception as exc:
                self.errors += 1
                log.warning("cache %s: watch failed (%s); relisting in %.1fs", self.name, exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff_s)
                need_list = True


def _rv_newer(obj: dict[str, Any], rv: str) -> bool:
    cur = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    try:
        return int(cur) > int(rv)
    except ValueError:
        return False
