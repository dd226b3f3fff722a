"""Fixtures: an in-process sandbox cluster on a free loopback port with fast pod timings, and real
clients to drive it (kubectl in a fresh HOME per test, raw HTTP)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from apihelpers import FAST, Http, Kubectl

from autoscaler.sandbox.cluster import SandboxCluster


@pytest.fixture
async def cluster() -> AsyncIterator[SandboxCluster]:
    async with SandboxCluster(**FAST) as c:
        yield c


@pytest.fixture
async def http(cluster: SandboxCluster) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, cluster.url)


@pytest.fixture
async def kubectl(cluster: SandboxCluster, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed (scripts/setup.sh installs it)")
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(home, cluster.write_kubeconfig(tmp_path / "kubeconfig"))
