"""The invariant checker of the fault suite and the soak: watches every write to the sandbox store.

It listens to the store (synchronously, so it sees every change in order, with the previous object)
and attributes each write to a controller through that controller's :class:`FaultProxy` (one proxy
per controller: a write landing while the proxy forwards a write to the same object is that
controller's; anything else is a human, the test or the sandbox's own controllers). It records a
:class:`Violation` whenever a controller:

* sets replicas above the lease's effective max or below its min (``bounds``), or touches a lease
  whose annotations are invalid, disabled or paused (``untouchable``);
* scales down while the lease's metrics are missing or failing (``blind-scale-down``): while a
  watched Prometheus proxy injects a blinding fault, or while the test marked the lease blind;
* writes while another identity holds the leader Lease (``non-leader``), or two identities write
  the same object at once / within ``two_writer_window_s`` without leader election (``two-writers``);
* repeats a scale write that changes nothing (``duplicate-scale``: a retried decision that the
  resourceVersion precondition should have turned into a 409);
* scales without a ``SuccessfulRescale`` Event or a ``rescaled ns/name from a to b`` log line naming
  the new size within ``event_grace_s`` (``unexplained``);
* removes or changes anything the user wrote: annotations (other than the controller's own status
  and state), labels, the pod template, or the policy ConfigMap; or deletes a Deployment
  (``user-data-lost``).

Usage::

    checker = InvariantChecker(cluster, policy_text)
    checker.attach("ctl-a", proxy_a)          # controller "ctl-a" talks to the API through proxy_a
    checker.watch_prometheus(prom_proxy)      # its blinding faults mark every lease blind
    with checker:                             # listening while inside
        ...
    assert checker.finish() == []
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoscaler.config import CONTROLLER_ANNOTATIONS, ClusterPolicy, parse_policy, resolve_lease
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.faultproxy import FaultProxy
from autoscaler.sandbox.resources import CONFIGMAPS, DEPLOYMENTS, EVENTS, LEASES
from autoscaler.sandbox.store import Change

Obj = dict[str, Any]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONTROLLER_KEYS = CONTROLLER_ANNOTATIONS
BLINDING = frozenset({"down", "status", "garbage", "rewrite"})
RESCALED = re.compile(r"rescaled (?P<ns>[^/ ]+)/(?P<name>\S+) from \d+ to (?P<n>\d+)")


@dataclass(frozen=True)
class Violation:
    kind: str
    namespace: str
    name: str
    detail: str
    at: float

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}: {self.detail}"


@dataclass
class _Pending:
    at: float
    namespace: str
    name: str
    replicas: int
    writer: str


@dataclass
class _Writer:
    identity: str
    proxy: FaultProxy


@dataclass
class Counts:
    """What the checker saw (for reports): writes by identity, scale writes up/down, events."""

    writes: Counter[str] = field(default_factory=Counter)
    scale_up: int = 0
    scale_down: int = 0
    external_scales: int = 0
    rescale_events: int = 0
    checks: int = 0


def _replicas(deployment: dict[str, Any]) -> int:
    return int((deployment.get("spec") or {}).get("replicas", 1))


def _status_only(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Only ``status`` (and the bookkeeping metadata every write bumps) differs between two versions."""
    def core(obj: dict[str, Any]) -> dict[str, Any]:
        md = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": md}
    return core(old) == core(new)


class InvariantChecker:
    def __init__(self, cluster: SandboxCluster, policy: str | ClusterPolicy, *, leader_election: bool = False,
                 lease_namespace: str = "inference-autoscaler", lease_name: str = "inference-autoscaler",
                 policy_configmap: tuple[str, str] = ("inference-autoscaler", "inference-autoscaler-policy"),
                 event_grace_s: float = 5.0, blind_grace_s: float = 1.5, blind_delay_s: float = 3.0,
                 two_writer_window_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.policy = parse_policy(policy, "checker") if isinstance(policy, str) else policy
        self.leader_election = leader_election
        self.lease_key = (lease_namespace, lease_name)
        self.policy_configmap = policy_configmap
        self.event_grace_s = event_grace_s
        self.blind_grace_s = blind_grace_s
        self.blind_delay_s = blind_delay_s
        self.two_writer_window_s = two_writer_window_s
        self.clock = clock
        self.violations: list[Violation] = []
        self.counts = Counts()
        self._writers: list[_Writer] = []
        self._prom: list[FaultProxy] = []
        self._blind: dict[tuple[str, str], float] = {}
        self._pending: list[_Pending] = []
        self._explained: set[tuple[str, str, int]] = set()
        self._last_writer: dict[tuple[str, str], tuple[str, float]] = {}
        self._holder: str | None = None
        self._log_handler: _LogHandler | None = None
        self._listening = False

    # ------------------------------------------------------------------ wiring
    def attach(self, identity: str, proxy: FaultProxy) -> None:
        """Writes forwarded by ``proxy`` are made by the controller ``identity``."""
        self._writers.append(_Writer(identity, proxy))
        previous = proxy.observer

        def observe(method: str, path: str, body: bytes) -> None:
            if previous is not None:
                previous(method, path, body)
            self._observe_request(identity, method, path, body)

        proxy.observer = observe

    def watch_prometheus(self, proxy: FaultProxy) -> None:
        """While ``proxy`` injects a blinding fault, every lease's metrics count as missing."""
        self._prom.append(proxy)

    def blind(self, namespace: str, name: str, on: bool = True) -> None:
        """Mark one lease's metrics as missing (``on``) or back (the test knows, e.g. pods never Ready)."""
        if on:
            self._blind.setdefault((namespace, name), self.clock())
        else:
            self._blind.pop((namespace, name), None)

    def log_line(self, line: str) -> None:
        """Feed a controller log line (a subprocess's output); rescale lines explain scale writes."""
        for m in RESCALED.finditer(line):
            self._explained.add((m["ns"], m["name"], int(m["n"])))

    def capture_logs(self, logger: str = "autoscaler.controller") -> None:
        """Read the log lines of in-process controllers."""
        self._log_handler = _LogHandler(self)
        logging.getLogger(logger).addHandler(self._log_handler)

    def start(self) -> None:
        if not self._listening:
            holder = self.cluster.store.get(LEASES.storage_key, *self.lease_key)
            self._holder = ((holder or {}).get("spec") or {}).get("holderIdentity")
            self.cluster.store.add_listener(self._on_change)
            self._listening = True

    def stop(self) -> None:
        if self._listening:
            self.cluster.store.remove_listener(self._on_change)
            self._listening = False
        if self._log_handler is not None:
            logging.getLogger("autoscaler.controller").removeHandler(self._log_handler)
            self._log_handler = None

    def __enter__(self) -> InvariantChecker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ results
    def check(self) -> list[Violation]:
        """Settle the Event/log check for scale writes older than the grace period; all violations so far."""
        now = self.clock()
        keep = []
        for p in self._pending:
            if (p.namespace, p.name, p.replicas) in self._explained or self._event_exists(p):
                continue
            if now - p.at > self.event_grace_s:
                self._violate("unexplained", p.namespace, p.name,
                              f"{p.writer} scaled to {p.replicas} without a SuccessfulRescale Event or log line")
            else:
                keep.append(p)
        self._pending = keep
        return list(self.violations)

    def finish(self, wait: bool = False) -> list[Violation]:
        """Final check; pending scale writes still inside the grace period are judged now."""
        if not wait:
            self.event_grace_s = -1.0
        self.stop()
        return self.check()

    # ------------------------------------------------------------------ internals
    def _violate(self, kind: str, namespace: str, name: str, detail: str) -> None:
        self.violations.append(Violation(kind, namespace, name, detail, self.clock()))

    def _is_blind(self, namespace: str, name: str) -> str | None:
        now = self.clock()
        for proxy in self._prom:
            f = proxy.fault
            blinding = f.mode in BLINDING or (f.mode == "delay" and f.delay_s >= self.blind_delay_s)
            if blinding and f.probability >= 1.0 and now - proxy.fault_set_at > self.blind_grace_s:
                return f"Prometheus fault {f.mode} for {now - proxy.fault_set_at:.1f}s"
        since = self._blind.get((namespace, name))
        if since is not None and now - since > self.blind_grace_s:
            return f"lease marked blind for {now - since:.1f}s"
        return None

    def _writer_of(self, target: str, ns: str, name: str) -> str | None:
        """The controller with a write in flight to ``target`` (the path itself, a subpath or with a query)."""
        writers = {w.identity for w in self._writers for method, path in w.proxy.inflight
                   if method in WRITES and (path == target or path.startswith((target + "/", target + "?")))}
        if len(writers) > 1:
            self._violate("two-writers", ns, name, f"concurrent writes by {sorted(writers)}")
        return min(writers) if writers else None

    def _observe_request(self, identity: str, method: str, path: str, body: bytes) -> None:
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/?]+)/scale(\?.*)?", path)
        if method != "PATCH" or m is None:
            return
        try:
            doc = json.loads(body)
            want = int(doc["spec"]["replicas"])
            rv = str((doc.get("metadata") or {}).get("resourceVersion") or "")
        except (ValueError, KeyError, TypeError):
            return
        cur = self.cluster.store.get(DEPLOYMENTS.storage_key, m[1], m[2])
        if cur is None:
            return
        same_rv = not rv or rv == cur["metadata"].get("resourceVersion")
        if same_rv and _replicas(cur) == want:
            self._violate("duplicate-scale", m[1], m[2], f"{identity} re-sent replicas={want}, already applied")

    def _event_exists(self, p: _Pending) -> bool:
        for ev in self.cluster.store.iter(EVENTS.storage_key, p.namespace):
            inv = ev.get("involvedObject") or {}
            if (inv.get("name") == p.name and ev.get("reason") == "SuccessfulRescale"
                    and str(ev.get("message", "")).startswith(f"New size: {p.replicas};")):
                return True
        return False

    def _on_change(self, change: Change) -> None:
        if change.storage == LEASES.storage_key:
            md = change.obj.get("metadata") or {}
            if (md.get("namespace"), md.get("name")) == self.lease_key and change.type != "DELETED":
                self._holder = (change.obj.get("spec") or {}).get("holderIdentity")
            return
        md = change.obj.get("metadata") or {}
        ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
        modified = change.old if change.type == "MODIFIED" else None
        rescaled = (change.storage == DEPLOYMENTS.storage_key and modified is not None
                    and _replicas(modified) != _replicas(change.obj))
        if change.storage == DEPLOYMENTS.storage_key:
            path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
            if rescaled:
                # a replica change is the controller's only if it has a /scale write in flight (the one way it
                # scales): a human's `kubectl scale` landing while its status PATCH is in flight is not its own
                path += "/scale"
            elif modified is not None and _status_only(modified, change.obj):
                # the sandbox's own Deployment controller updating status while a client's PATCH is in flight
                path += "/status"
            writer = self._writer_of(path, ns, name)
        elif change.storage == EVENTS.storage_key:
            writer = self._writer_of(f"/api/v1/namespaces/{ns}/events", ns, name)
        elif change.storage == CONFIGMAPS.storage_key:
            writer = self._writer_of(f"/api/v1/namespaces/{ns}/configmaps/{name}", ns, name)
        else:
            return
        self.counts.checks += 1
        if change.storage == DEPLOYMENTS.storage_key and writer is None:
            self.counts.external_scales += rescaled
            return
        if writer is None:
            return
        self.counts.writes[writer] += 1
        self._check_writer(writer, ns, name)
        if change.storage == EVENTS.storage_key:
            if change.obj.get("reason") == "SuccessfulRescale":
                self.counts.rescale_events += 1
            return
        if change.storage == CONFIGMAPS.storage_key:
            if change.type == "DELETED" or (change.old or {}).get("data") != change.obj.get("data"):
                self._violate("user-data-lost", ns, name, f"{writer} changed or deleted ConfigMap data")
            return
        self._check_deployment(writer, change, ns, name)

    def _check_writer(self, writer: str, ns: str, name: str) -> None:
        now = self.clock()
        if self.leader_election:
            if self._holder != writer:
                self._violate("non-leader", ns, name, f"{writer} wrote while the leader Lease is held by {self._holder}")
            return
        prev = self._last_writer.get((ns, name))
        if prev is not None and prev[0] != writer and now - prev[1] < self.two_writer_window_s:
            self._violate("two-writers", ns, name, f"{prev[0]} and {writer} wrote within {now - prev[1]:.2f}s")
        self._last_writer[(ns, name)] = (writer, now)

    def _check_deployment(self, writer: str, change: Change, ns: str, name: str) -> None:
        new, old = change.obj, change.old or {}
        if change.type == "DELETED":
            self._violate("user-data-lost", ns, name, f"{writer} deleted the Deployment")
            return
        old_md, new_md = old.get("metadata") or {}, new.get("metadata") or {}
        old_ann, new_ann = old_md.get("annotations") or {}, new_md.get("annotations") or {}
        lost = sorted(k for k, v in old_ann.items() if k not in CONTROLLER_KEYS and new_ann.get(k) != v)
        if lost:
            self._violate("user-data-lost", ns, name, f"{writer} removed or changed annotations {lost}")
        if (old_md.get("labels") or {}) != (new_md.get("labels") or {}):
            self._violate("user-data-lost", ns, name, f"{writer} changed labels")
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if {k: v for k, v in old_spec.items() if k != "replicas"} != {k: v for k, v in new_spec.items()
                                                                       if k != "replicas"}:
            self._violate("user-data-lost", ns, name, f"{writer} changed the Deployment spec beyond replicas")
        before, after = int(old_spec.get("replicas", 1)), int(new_spec.get("replicas", 1))
        if before == after:
            return
        if after > before:
            self.counts.scale_up += 1
        else:
            self.counts.scale_down += 1
        res = resolve_lease(ns, name, new_ann, self.policy)
        if res.lease is None or res.lease.paused:
            self._violate("untouchable", ns, name, f"{writer} scaled a lease that is invalid, disabled or paused")
        else:
            lo, hi = res.lease.min_replicas, res.lease.max_replicas
            if not lo <= after <= hi:
                self._violate("bounds", ns, name, f"{writer} set replicas={after} outside [{lo}, {hi}]")
        if after < before and (why := self._is_blind(ns, name)) is not None:
            self._violate("blind-scale-down", ns, name, f"{writer} scaled {before} -> {after} while blind: {why}")
        self._pending.append(_Pending(self.clock(), ns, name, after, writer))


class _LogHandler(logging.Handler):
    def __init__(self, checker: InvariantChecker) -> None:
        super().__init__(logging.INFO)
        self.checker = checker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.checker.log_line(record.getMessage())
        except Exception:  # a log handler must never raise into the controller
            self.handleError(record)
