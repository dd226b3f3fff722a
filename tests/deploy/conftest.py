"""Fixtures for the deployment tests: the rendered manifests, a sandbox cluster, kubectl in a fresh HOME."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.sandbox.cluster import SandboxCluster

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"


def kustomize(path: Path) -> list[dict[str, Any]]:
    """Render a kustomization with the kubectl built-in kustomize."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed (it carries kustomize)")
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def rendered() -> list[dict[str, Any]]:
    return kustomize(MANIFESTS)


def with_component(tmp_path_factory: pytest.TempPathFactory, component: str) -> list[dict[str, Any]]:
    """The base plus one of its components, through an overlay as a user would write it."""
    overlay = tmp_path_factory.mktemp("overlay")
    rel = os.path.relpath(MANIFESTS, overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [rel], "components": [f"{rel}/components/{component}"]}))
    return kustomize(overlay)


@pytest.fixture(scope="session")
def rendered_with_prometheus_objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return with_component(tmp_path_factory, "prometheus-objects")


@pytest.fixture(scope="session")
def rendered_with_activator(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return with_component(tmp_path_factory, "activator")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@dataclass
class Kubectl:
    home: Path
    kubeconfig: Path

    async def __call__(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        env = {"HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig), "PATH": os.environ.get("PATH", "")}
        proc = await asyncio.create_subprocess_exec(
            "kubectl", *args, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
        return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def cluster() -> AsyncIterator[SandboxCluster]:
    async with SandboxCluster(startup_seconds=0.2, pending_seconds=0.05, terminating_seconds=0.1) as c:
        yield c


@pytest.fixture
async def kubectl(cluster: SandboxCluster, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed")
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(home, cluster.write_kubeconfig(tmp_path / "kubeconfig"))
