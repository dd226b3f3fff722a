"""Kubernetes Events on the Deployment, with HPA-style reasons, deduplicated like client-go's correlator.

The first occurrence of (object, type, reason, message) creates an Event; repeats only bump a local
count and PATCH ``count``/``lastTimestamp`` at most once per ``min_patch_interval_s``, so a lease that
stays broken for hours produces one Event, not thousands of API writes. Posting never raises: an
unreachable API server must not stop the loop (failures are counted and logged).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from autoscaler.kube.api import KubeApi, KubeError

log = logging.getLogger(__name__)

COMPONENT = "inference-autoscaler"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Seen:
    name: str
    count: int
    first: float
    last_write: float
    pending: bool = False


class EventRecorder:
    def __init__(self, api: KubeApi, *, instance: str = "", min_patch_interval_s: float = 60.0,
                 max_entries: int = 50_000) -> None:
        self.api = api
        self.instance = instance
        self.min_patch_interval_s = min_patch_interval_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self.failures = 0
        self.posted = 0
        self.suppressed = 0

    async def record(self, obj: dict[str, Any], type_: str, reason: str, message: str, now: float, *,
                     kind: str = "Deployment", api_version: str = "apps/v1") -> None:
        md = obj.get("metadata") or {}
        ns, name, uid = str(md.get("namespace") or "default"), str(md.get("name") or ""), str(md.get("uid") or "")
        key = (ns, name, uid, type_, reason, message)
        seen = self._seen.get(key)
        try:
            if seen is None:
                ev_name = f"{name}.{hashlib.sha1('|'.join(key).encode()).hexdigest()[:16]}"
                body = {
                    "apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": ev_name, "namespace": ns},
                    "involvedObject": {"apiVersion": api_version, "kind": kind, "namespace": ns,
                                       "name": name, "uid": uid},
                    "reason": reason, "message": message[:1024], "type": type_,
                    "source": {"component": COMPONENT},
                    "reportingComponent": COMPONENT, "reportingInstance": self.instance,
                    "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now), "count": 1,
                }
                self._remember(key, _Seen(ev_name, 1, now, now))
                try:
                    await self.api.post(f"/api/v1/namespaces/{ns}/events", body)
                except KubeError as exc:
                    if exc.status != 409:  # 409: an earlier controller created it; patch next time
                        raise
                self.posted += 1
                return
            seen.count += 1
            self._seen.move_to_end(key)
            if now - seen.last_write < self.min_patch_interval_s:
                self.suppressed += 1
                return
            seen.last_write = now
            await self.api.patch(f"/api/v1/namespaces/{ns}/events/{seen.name}",
                                 {"count": seen.count, "lastTimestamp": rfc3339(now)})
            self.posted += 1
        except KubeError as exc:
            self.failures += 1
            if exc.not_found and seen is not None:
                self._seen.pop(key, None)  # the Event expired (TTL): create it again next time
            log.warning("event %s/%s %s not recorded: %s", ns, name, reason, exc)

    def _remember(self, key: tuple[str, ...], seen: _Seen) -> None:
        self._seen[key] = seen
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
