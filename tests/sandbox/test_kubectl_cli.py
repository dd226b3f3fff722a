"""`autoscaler sandbox up` as a user runs it: URLs printed, kubeconfig usable by kubectl, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.kubectl
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: llm
  annotations: {inference-autoscaler.io/enabled: "true", inference-autoscaler.io/min-replicas: "0"}
spec:
  replicas: 0
  selector: {matchLabels: {app: llm}}
  template:
    metadata: {labels: {app: llm}}
    spec: {containers: [{name: triton, image: nvcr.io/nvidia/tritonserver:24.08-py3}]}
"""


async def test_sandbox_up_serves_kubectl_and_stops_on_sigterm(tmp_path: Path) -> None:
    """sandbox up --empty --activator prints the URLs and the kubeconfig; kubectl works; a request sent to the
    activator for a Deployment at zero waits until kubectl scales it up, then a pod answers it; SIGTERM stops it
    with 0."""
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autoscaler.cli", "sandbox", "up", "--empty", "--api-port", "0",
        "--kubeconfig", str(kubeconfig), "--activator", "--startup-seconds", "0.5", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
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
        kc = await asyncio.create_subprocess_exec("kubectl", "apply", "-f", "-", env=env, stdin=asyncio.subprocess.PIPE,
                                                  stdout=asyncio.subprocess.PIPE)
        await kc.communicate(DEPLOYMENT.encode())
        assert kc.returncode == 0
        activator = lines["activator"].split()[0].split("/<namespace>")[0]
        async with aiohttp.ClientSession() as s:
            held = asyncio.create_task(s.post(f"{activator}/default/llm/v2/models/llm/infer", data=b"{}"))
            await asyncio.sleep(1.0)
            assert not held.done()
            kc = await asyncio.create_subprocess_exec("kubectl", "scale", "deployment/llm", "--replicas=1", env=env,
                                                      stdout=asyncio.subprocess.PIPE)
            await kc.communicate()
            async with asyncio.timeout(20):
                r = await held
            assert r.status == 200 and (await r.json())["pod"].startswith("llm-")
            r.release()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rc = await proc.wait()
    assert rc == 0
