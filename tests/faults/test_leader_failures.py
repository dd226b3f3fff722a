"""Leader election while the API server cannot be reached: one log line, repeated only when the error changes or
after a minute, not a traceback per retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
import yaml

from autoscaler.kube.api import load_api_client
from autoscaler.kube.leader import LeaderElector
from autoscaler.sandbox.cluster import SandboxCluster


async def _campaign(kubeconfig: Path, seconds: float, namespace: str = "default") -> LeaderElector:
    """Campaign for ``seconds``, retrying every second (the library's shortest period)."""
    api = await load_api_client(str(kubeconfig))
    try:
        elector = LeaderElector(api, namespace=namespace, lease_duration_s=3, renew_deadline_s=1.5,
                                retry_period_s=1.0)
        task = asyncio.ensure_future(elector.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await api.close()
    return elector


def _leader_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "autoscaler.kube.leader" and r.levelno >= logging.WARNING]


async def test_an_unreachable_api_server_is_one_line_not_a_traceback_per_retry(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Three retries against a closed port: one warning naming the Lease and the connection error, no traceback (it
    logged the whole aiohttp traceback every retry period)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}], "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}]}))
    caplog.set_level(logging.INFO, logger="autoscaler.kube.leader")
    elector = await _campaign(kubeconfig, 2.5)
    assert not elector.is_leader
    (record,) = _leader_records(caplog)
    assert record.exc_info is None and record.levelno == logging.WARNING
    assert "cannot reach the API server for the Lease default/inference-autoscaler" in record.getMessage()
    assert "127.0.0.1:1" in record.getMessage() and "retrying every 1s" in record.getMessage()


@pytest.mark.parametrize("case", ["missing-namespace", "bad-token"])
async def test_a_refused_lease_request_is_one_line_with_its_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              case: str) -> None:
    """The sandbox API server refusing the Lease, three retries: a namespace that does not exist (a local run's
    default namespace, not created) and credentials it does not accept. One warning each, saying what was refused
    and how to fix it; the election library's traceback ("Failed to create lock") and its own error line per retry
    are gone."""
    async with SandboxCluster(token="right") as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        namespace = "default"
        if case == "bad-token":
            kubeconfig.write_text(kubeconfig.read_text().replace("right", "wrong"))
        else:
            namespace = "inference-autoscaler"
        caplog.set_level(logging.INFO)
        elector = await _campaign(kubeconfig, 2.5, namespace=namespace)
    assert not elector.is_leader
    (record,) = _leader_records(caplog)
    assert record.exc_info is None and "retrying every 1s" in record.getMessage()
    if case == "bad-token":
        assert "cannot read the Lease default/inference-autoscaler: 401" in record.getMessage()
        assert "does not accept the credentials" in record.getMessage()
    else:
        assert "cannot create the Lease inference-autoscaler/inference-autoscaler: 404" in record.getMessage()
        assert "kubectl create namespace inference-autoscaler" in record.getMessage()
    library = [r for r in caplog.records if r.name.startswith("kubernetes_asyncio") and r.levelno >= logging.WARNING]
    assert not library, [r.getMessage() for r in library]
