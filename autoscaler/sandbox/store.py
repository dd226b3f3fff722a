"""In-memory object store: one resourceVersion counter, a bounded watch history, subscribers.

Every write takes the next value of a single counter as the object's ``metadata.resourceVersion`` (as
etcd's revision does for kube-apiserver) and appends a :class:`Change` to the history. A watch from a
resourceVersion replays the history after it; one older than the retained history gets 410 Gone.

Concurrency: the store is used from one asyncio event loop and never awaits, so each method is atomic
with respect to the others. Objects handed in and out are copies; callers may mutate what they get.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from autoscaler.sandbox.errors import gone

Obj = dict[str, Any]
log = logging.getLogger(__name__)


def clone(value: Any) -> Any:
    """Deep copy of a JSON value (faster than copy.deepcopy for plain dicts and lists)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


@dataclass(frozen=True)
class Change:
    """One write: ADDED, MODIFIED or DELETED, with the new object (final state for DELETED) and the
    previous one (so that selector-filtered watches can turn a MODIFIED into ADDED or DELETED)."""

    rv: int
    type: str
    storage: str
    obj: Obj
    old: Obj | None


class Subscription:
    """A live feed of changes to one storage key. Bounded: a subscriber that falls too far behind is
    cut off (``overflowed``), as the real server closes slow watches; the client re-watches."""

    def __init__(self, store: Store, storage: str, maxsize: int) -> None:
        self._store = store
        self.storage = storage
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.closed = False

    def offer(self, change: Change) -> None:
        if self.overflowed or self.closed:
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self, wait_s: float) -> Change | None:
        """The next change, or None after ``wait_s`` seconds without one (or once closed)."""
        try:
            async with asyncio.timeout(wait_s):
                return await self._queue.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop the feed and wake a reader blocked in :meth:`get`."""
        if self.closed:
            return
        self.closed = True
        self._store._subs.discard(self)
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # a reader with a full queue is not blocked


class Store:
    def __init__(self, history_size: int = 10_000, subscriber_queue: int = 10_000) -> None:
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[Change] = deque()
        self._history_size = history_size
        self._subscriber_queue = subscriber_queue
        self.compacted_rv = 0  # changes with rv <= this are no longer in the history
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[Change], None]] = []

    # ------------------------------------------------------------------ reads
    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, storage: str, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(storage, {}).get((namespace, name))
        return clone(obj) if obj is not None else None

    def exists(self, storage: str, namespace: str, name: str) -> bool:
        return (namespace, name) in self._objects.get(storage, {})

    def list_objects(self, storage: str, namespace: str | None = None) -> list[Obj]:
        """Objects sorted by (namespace, name); ``namespace=None`` means all namespaces."""
        return [clone(o) for o in self.iter(storage, namespace)]

    def iter(self, storage: str, namespace: str | None = None) -> Iterator[Obj]:
        """Like :meth:`list_objects` without copying: the caller must not mutate what it gets."""
        bucket = self._objects.get(storage, {})
        for key in sorted(bucket):
            if namespace is None or key[0] == namespace:
                yield bucket[key]

    def storages(self) -> list[str]:
        return list(self._objects)

    # ------------------------------------------------------------------ writes
    def _commit(self, kind: str, storage: str, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if kind == "DELETED":
            self._objects.get(storage, {}).pop(key, None)
        else:
            self._objects.setdefault(storage, {})[key] = obj
        change = Change(self._rv, kind, storage, obj, old)
        self._history.append(change)
        while len(self._history) > self._history_size:
            self.compacted_rv = self._history.popleft().rv
        for sub in list(self._subs):
            if sub.storage == storage:
                sub.offer(change)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a broken listener must not break writes
                log.exception("store listener failed")
        copy: Obj = clone(obj)
        return copy

    def add(self, storage: str, obj: Obj) -> Obj:
        """Store a new object (the caller checked it does not exist); returns a copy with its rv."""
        return self._commit("ADDED", storage, clone(obj), None)

    def replace(self, storage: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        old = self._objects.get(storage, {}).get((meta.get("namespace", ""), meta["name"]))
        return self._commit("MODIFIED", storage, clone(obj), old)

    def remove(self, storage: str, namespace: str, name: str) -> Obj | None:
        """Delete an object; the DELETED change (and the returned copy) carry a new resourceVersion."""
        old = self._objects.get(storage, {}).get((namespace, name))
        if old is None:
            return None
        return self._commit("DELETED", storage, clone(old), old)

    # ------------------------------------------------------------------ watch support
    def changes_since(self, storage: str, rv: int) -> list[Change]:
        """Changes to ``storage`` after ``rv``; 410 Gone when the history no longer reaches back."""
        if rv < self.compacted_rv:
            raise gone(f"too old resource version: {rv} ({self.compacted_rv + 1})")
        return [c for c in self._history if c.rv > rv and c.storage == storage]

    def close_subscriptions(self) -> None:
        """End every live feed (server shutdown)."""
        for sub in list(self._subs):
            sub.close()

    def subscribe(self, storage: str) -> Subscription:
        sub = Subscription(self, storage, self._subscriber_queue)
        self._subs.add(sub)
        return sub

    def add_listener(self, fn: Callable[[Change], None]) -> None:
        """Call ``fn`` synchronously after every write (controllers use it to enqueue work)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[Change], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)
