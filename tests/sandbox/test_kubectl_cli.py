"""`autoscaler sandbox up` as a user runs it: URLs printed, kubeconfig usable by kubectl, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kubectl


async def test_sandbox_up_serves_kubectl_and_stops_on_sigterm(tmp_path: Path) -> None:
    """sandbox up --empty prints the API URL and kubeconfig; kubectl works; SIGTERM stops it with 0."""
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autoscaler.cli", "sandbox", "up", "--empty", "--api-port", "0",
        "--kubeconfig", str(kubeconfig), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    try:
        async with asyncio.timeout(60):
            while "kubeconfig" not in lines:
                line = (await proc.stdout.readline()).decode()
                assert line, "sandbox up exited early"
                key, _, value = line.partition(":")
                lines[key.strip()] = value.strip()
        assert lines["api"].startswith("http://127.0.0.1:") and lines["kubeconfig"] == str(kubeconfig)
        assert lines["prometheus"]
        home = tmp_path / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
        kc = await asyncio.create_subprocess_exec("kubectl", "get", "namespaces", "-o", "name", env=env,
                                                  stdout=asyncio.subprocess.PIPE)
        out, _ = await kc.communicate()
        assert "namespace/default" in out.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rc = await proc.wait()
    assert rc == 0
