"""Leader election on a coordination.k8s.io/v1 Lease (kubernetes-asyncio's implementation).

Only the leader writes (scale patches, annotations, Events). ``is_leader`` flips as the library
calls back; a standby takes over within ``lease_duration_s`` after the leader stops renewing. On a
graceful stop the controller calls :meth:`LeaderElector.release` once its loop has stopped (so no write
can follow): it clears ``holderIdentity``, as client-go's ``ReleaseOnCancel`` does, and a standby takes
over at its next retry instead of waiting the lease out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from kubernetes_asyncio.client import CoordinationV1Api
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from autoscaler.kube.api import KubeApi, KubeError
from autoscaler.logs import RELOG_S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseView:
    """A leader-election Lease as another process sees it: who holds it and how long since it was renewed."""

    holder: str | None
    age_s: float  # since renewTime (inf without one)
    duration_s: float

    @property
    def stale(self) -> bool:
        """No controller leads: released, or not renewed for three lease durations (a margin for clock skew)."""
        return not self.holder or self.age_s > 3 * self.duration_s


async def read_lease(api: KubeApi, namespace: str, name: str, now: float) -> LeaseView | None:
    """The Lease ``namespace/name`` at wall time ``now``, or None if there is none (KubeError for other failures)."""
    try:
        obj = await api.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    except KubeError as exc:
        if exc.not_found:
            return None
        raise
    spec = obj.get("spec") or {}
    try:
        renewed = datetime.fromisoformat(str(spec["renewTime"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        renewed = -math.inf
    return LeaseView(spec.get("holderIdentity") or None, now - renewed, float(spec.get("leaseDurationSeconds") or 15))


def default_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class LeaderElector:
    def __init__(self, api_client: ApiClient, *, namespace: str, name: str = "inference-autoscaler",
                 identity: str | None = None, lease_duration_s: float = 15.0, renew_deadline_s: float = 10.0,
                 retry_period_s: float = 2.0) -> None:
        self.identity = identity or default_identity()
        self.namespace = namespace
        self.name = name
        self.is_leader = False
        self.held_at_stop = False
        self.transitions = 0
        self.changed = asyncio.Event()
        self._failure: tuple[str, float] | None = None  # the last failure logged, and when (monotonic)
        self._api = api_client
        self._lock = LeaseLock(name, namespace, self.identity, api_client)
        self._config = electionconfig.Config(
            # the library stores the duration as a string and int()s it: it must be a whole number
            self._lock, max(2, round(lease_duration_s)), renew_deadline_s, retry_period_s,
            self._on_started, self._on_stopped,
        )

    async def _on_started(self) -> None:
        log.info("leader election: %s is now the leader of %s/%s", self.identity, self.namespace, self.name)
        self.is_leader = True
        self._failure = None  # reachable again: the next failure is news
        self.transitions += 1
        self.changed.set()

    async def _on_stopped(self) -> None:
        if self.is_leader:
            log.warning("leader election: %s lost the lease %s/%s", self.identity, self.namespace, self.name)
        self.is_leader = False
        self.changed.set()

    async def run(self) -> None:
        """Campaign forever: after losing the lease, campaign again."""
        while True:
            try:
                await leaderelection.LeaderElection(self._config).run()
            except asyncio.CancelledError:
                self.held_at_stop = self.is_leader  # the owner releases once its writers have stopped
                self.is_leader = False
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # the API server cannot be reached
                self._log_failure(exc)
            except Exception:
                log.exception("leader election round failed")
            self.is_leader = False
            await asyncio.sleep(self._config.retry_period)

    def _log_failure(self, exc: BaseException) -> None:
        """An API server that cannot be reached, in one line, and the same one again only after RELOG_S: not a
        traceback every retry period. (Refusals, e.g. 403 from RBAC, the library logs in a line itself and retries.)"""
        reason = str(exc) or type(exc).__name__
        now = time.monotonic()
        if self._failure is None or self._failure[0] != reason or now - self._failure[1] >= RELOG_S:
            log.warning("leader election: cannot reach the API server for the Lease %s/%s: %s; retrying every %gs",
                        self.namespace, self.name, reason, self._config.retry_period)
            self._failure = (reason, now)

    async def release(self, timeout_s: float = 2.0) -> bool:
        """Give the Lease up if this candidate still holds it (a JSON patch that tests the holder first)."""
        patch = [{"op": "test", "path": "/spec/holderIdentity", "value": self.identity},
                 {"op": "remove", "path": "/spec/holderIdentity"}]
        try:
            async with asyncio.timeout(timeout_s):
                await CoordinationV1Api(self._api).patch_namespaced_lease(self.name, self.namespace, patch)
        except Exception as exc:  # the lease simply runs out instead
            log.warning("leader election: could not release %s/%s: %s", self.namespace, self.name, exc)
            return False
        log.info("leader election: %s released %s/%s", self.identity, self.namespace, self.name)
        return True
