"""Leader election on a coordination.k8s.io/v1 Lease (kubernetes-asyncio's implementation).

Only the leader writes (scale patches, annotations, Events). ``is_leader`` flips as the library
calls back; a standby takes over within ``lease_duration_s`` after the leader stops renewing. On a
graceful stop the controller calls :meth:`LeaderElector.release` once its loop has stopped (so no write
can follow): it clears ``holderIdentity``, as client-go's ``ReleaseOnCancel`` does, and a standby takes
over at its next retry instead of waiting the lease out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client import CoordinationV1Api
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from autoscaler.kube.api import FIELD_MANAGER, KubeApi, KubeError
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


class _LibraryRepeats(logging.Filter):
    """Drops the election library's own line for a refused Lease request ("failed to create lock", "failed to acquire
    lease", "Error retrieving resource lock"), at every retry: :class:`_ReportingLeaseLock` has reported the refusal
    once, with its reason and the fix (a lost update race, 409, is no news)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.endswith(("failed to create lock", "failed to acquire lease"))
                    or msg.startswith("Error retrieving resource lock"))


logging.getLogger(leaderelection.__name__).addFilter(_LibraryRepeats())


def refusal_message(action: str, namespace: str, name: str, exc: ApiException) -> str:
    """Why the API server refused a Lease request, and what to do about it, in one line."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        message = str(exc.reason)
    head = f"leader election: cannot {action} the Lease {namespace}/{name}: {exc.status} {message}"
    if exc.status == 404 and "namespace" in message:
        return (f"{head}; create the namespace (kubectl create namespace {namespace}) or run with --namespace set "
                "to one that exists")
    if exc.status == 403:
        return (f"{head}; the controller's account needs get, create and update on leases in {namespace} "
                "(manifests/rbac.yaml)")
    if exc.status == 401:
        return f"{head}; the API server does not accept the credentials (kubeconfig user or service-account token)"
    return head


class _ReportingLeaseLock(LeaseLock):
    """The library's Lease lock, whose refused requests (403 from RBAC, a namespace that does not exist) go to
    ``report`` as an ApiException instead of a traceback in the log at every retry."""

    def __init__(self, name: str, namespace: str, identity: str, api_client: ApiClient,
                 report: Callable[[str, ApiException], None]) -> None:
        super().__init__(name, namespace, identity, api_client)
        self._report = report

    async def get(self, name: str, namespace: str) -> Any:
        found, record = await super().get(name, namespace)
        if not found and isinstance(record, ApiException) and record.status != 404:
            self._report("read", record)
        return found, record

    async def create(self, name: str, namespace: str, election_record: LeaderElectionRecord) -> bool:
        body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=name), spec=self.update_lease(election_record))
        try:
            await self.api_instance.create_namespaced_lease(namespace, body, field_manager=FIELD_MANAGER)
        except ApiException as exc:
            self._report("create", exc)
            return False
        return True

    async def update(self, name: str, namespace: str, updated_record: LeaderElectionRecord) -> bool:
        if self.lease_reference is None:
            return False
        self.lease_reference.spec = self.update_lease(updated_record, self.lease_reference.spec)
        try:
            await self.api_instance.replace_namespaced_lease(name=name, namespace=namespace, body=self.lease_reference,
                                                             field_manager=FIELD_MANAGER)
        except ApiException as exc:
            if exc.status != 409:  # another candidate renewed first: the election's ordinary race, not a problem
                self._report("update", exc)
            return False
        return True


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
        self._lock = _ReportingLeaseLock(name, namespace, self.identity, api_client, self._log_refusal)
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
        """An API server that cannot be reached, in one line (:meth:`_log_once`)."""
        self._log_once(f"leader election: cannot reach the API server for the Lease {self.namespace}/{self.name}: "
                       f"{str(exc) or type(exc).__name__}")

    def _log_refusal(self, action: str, exc: ApiException) -> None:
        """A Lease request the API server refused (RBAC, a missing namespace, bad credentials), in one line with
        the fix (:meth:`_log_once`)."""
        self._log_once(refusal_message(action, self.namespace, self.name, exc))

    def _log_once(self, message: str) -> None:
        """A failure to campaign as one warning, the same one again only after RELOG_S: not a traceback every retry
        period."""
        now = time.monotonic()
        if self._failure is None or self._failure[0] != message or now - self._failure[1] >= RELOG_S:
            log.warning("%s; retrying every %gs", message, self._config.retry_period)
            self._failure = (message, now)

    async def release(self, timeout_s: float = 2.0) -> bool:
        """Give the Lease up if this candidate still holds it (a JSON patch that tests the holder first)."""
        patch = [{"op": "test", "path": "/spec/holderIdentity", "value": self.identity},
                 {"op": "remove", "path": "/spec/holderIdentity"}]
        try:
            async with asyncio.timeout(timeout_s):
                await CoordinationV1Api(self._api).patch_namespaced_lease(self.name, self.namespace, patch,
                                                                          field_manager=FIELD_MANAGER)
        except Exception as exc:  # the lease simply runs out instead
            log.warning("leader election: could not release %s/%s: %s", self.namespace, self.name, exc)
            return False
        log.info("leader election: %s released %s/%s", self.identity, self.namespace, self.name)
        return True
