"""The invariant checker catches what it claims to (writes through a proxy it attributes to a fake
controller), and cheap security checks: loopback-only sandbox, TLS verification on by default."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from autoscaler.metrics.client import ClientSettings, _ssl_context
from autoscaler.sandbox.cluster import SandboxCluster
from autoscaler.sandbox.faultproxy import FaultProxy
from autoscaler.sandbox.invariants import InvariantChecker
from autoscaler.sandbox.resources import DEPLOYMENTS
from tests.faults.conftest import POLICY, P

DEP = "/apis/apps/v1/namespaces/default/deployments/web"


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[tuple[SandboxCluster, FaultProxy, aiohttp.ClientSession]]:
    async with SandboxCluster(startup_seconds=0.0) as cluster, FaultProxy(cluster.url) as proxy, \
            aiohttp.ClientSession() as http:
        cluster.create_deployment("web", replicas=2, annotations={P + "enabled": "true", P + "max-replicas": "3",
                                                                  "team": "search"})
        yield cluster, proxy, http


async def _patch(http: aiohttp.ClientSession, proxy: FaultProxy, path: str, body: object) -> int:
    async with http.patch(proxy.url + path, data=json.dumps(body),
                          headers={"Content-Type": "application/merge-patch+json"}) as r:
        return r.status


async def test_checker_flags_bounds_lost_annotations_duplicates_and_blind_scale_down(
        rig: tuple[SandboxCluster, FaultProxy, aiohttp.ClientSession]) -> None:
    """A 'controller' that scales past max, drops a user annotation, re-sends a scale and scales down while
    Prometheus is down produces exactly those violations; a human's writes produce none."""
    cluster, proxy, http = rig
    async with FaultProxy("http://127.0.0.1:9") as prom:
        checker = InvariantChecker(cluster, POLICY, blind_grace_s=0.0, event_grace_s=0.0)
        checker.attach("ctl", proxy)
        checker.watch_prometheus(prom)
        with checker:
            assert await _patch(http, proxy, DEP + "/scale", {"spec": {"replicas": 5}}) == 200
            assert await _patch(http, proxy, DEP + "/scale", {"spec": {"replicas": 5}}) == 200
            assert await _patch(http, proxy, DEP, {"metadata": {"annotations": {"team": None}}}) == 200
            prom.set("down")
            assert await _patch(http, proxy, DEP + "/scale", {"spec": {"replicas": 1}}) == 200
            human = cluster.registry.get(DEPLOYMENTS, "default", "web")
            human["metadata"]["annotations"].pop(P + "max-replicas")
            human["spec"]["replicas"] = 9
            cluster.registry.update(DEPLOYMENTS, "default", "web", human)
        found = checker.finish()
        kinds = sorted(v.kind for v in found)
    assert kinds == ["blind-scale-down", "bounds", "duplicate-scale", "unexplained", "unexplained",
                     "user-data-lost"], kinds


async def test_checker_flags_a_write_by_a_non_leader(
        rig: tuple[SandboxCluster, FaultProxy, aiohttp.ClientSession]) -> None:
    """With leader election, a write from an identity that does not hold the Lease is a violation."""
    cluster, proxy, http = rig
    checker = InvariantChecker(cluster, POLICY, leader_election=True, lease_namespace="default")
    checker.attach("standby", proxy)
    cluster.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "inference-autoscaler", "namespace": "default"},
                    "spec": {"holderIdentity": "leader"}})
    with checker:
        assert await _patch(http, proxy, DEP, {"metadata": {"annotations": {"x": "1"}}}) == 200
    assert [v.kind for v in checker.finish()] == ["non-leader"]


async def test_sandbox_api_server_listens_on_loopback_only() -> None:
    """The sandbox API server binds 127.0.0.1 by default: nothing outside the machine can reach it."""
    async with SandboxCluster() as cluster:
        assert cluster.url.startswith("http://127.0.0.1:")
        runner = cluster.server._runner
        assert runner is not None and runner.addresses
        assert all(addr[0] == "127.0.0.1" for addr in runner.addresses)


def test_prometheus_tls_verification_is_on_by_default() -> None:
    """`ClientSettings` verifies TLS unless told otherwise; insecure mode is an explicit opt-in."""
    settings = ClientSettings(url="https://prometheus:9090")
    assert settings.insecure_skip_verify is False
    assert _ssl_context(settings) is True  # aiohttp's default: verify against the system CAs
    insecure = _ssl_context(ClientSettings(url="https://p:9090", insecure_skip_verify=True))
    assert isinstance(insecure, ssl.SSLContext) and insecure.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("where", ["settings", "client"])
def test_bearer_token_file_path_only_in_reprs(where: str, tmp_path: object) -> None:
    """The token's value never appears in the reprs of the settings or the client (the metrics client
    tests cover logs); only the file path does."""
    from pathlib import Path

    from autoscaler.metrics.client import PrometheusClient
    token = Path(str(tmp_path)) / "token"
    token.write_text("s3cr3t-t0ken")
    settings = ClientSettings(url="http://p:9090", bearer_token_file=str(token), headers={"X-Key": "s3cr3t-t0ken"})
    text = repr(settings) if where == "settings" else repr(PrometheusClient(settings))
    assert "s3cr3t-t0ken" not in text
