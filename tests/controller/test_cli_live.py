"""`autoscaler status` and `autoscaler explain` read what a running controller wrote, over HTTP, like kubectl."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.config import POLICY_CONFIGMAP, POLICY_NAMESPACE, STATUS_ANNOTATION
from autoscaler.sandbox.resources import CONFIGMAPS
from tests.controller.conftest import Env, wait_for
from tests.support import P

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in a thread (it runs its own event loop), return (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


async def test_status_and_explain_show_the_controllers_decision(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A decided lease: `status` lists it with its reason and targets; `explain` resolves its annotations against
    the cluster policy and prints the controller's last decision. A lease with no decision yet says so."""
    env.deployment("cli", {P + "max-replicas": "4"})
    env.deployment("cli-idle", {P + "max-replicas": "2"}, namespace="cli-other")
    await env.cluster.wait_for_ready("default", "cli")
    kc = str(env.kubeconfig)
    async with env.controller() as ctl:
        await env.load("cli", {"profile": {"type": "constant", "rate": 40}})
        await wait_for(lambda: STATUS_ANNOTATION in env.get("cli")["metadata"].get("annotations", {}), 20,
                       "a status annotation")
        assert ctl.runtime[("default", "cli")].last
        await env.dataplane.stop_load("default", "cli")
    written = json.loads(env.get("cli")["metadata"]["annotations"][STATUS_ANNOTATION])

    rc, out, _ = await cli(capsys, "status", "--kubeconfig", kc, "--json")
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"cli"}  # namespace default only
    assert rows["cli"]["reason"] == written["reason"] and rows["cli"]["max"] == 4
    assert rows["cli"]["targets"].startswith("queueTime: ")

    rc, out, _ = await cli(capsys, "status", "--kubeconfig", kc, "-A")
    assert rc == 0
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["NAMESPACE", "NAME", "TARGETS"]
    names = {line.split()[1]: line for line in lines}
    assert set(names) == {"cli", "cli-idle"}
    assert written["reason"] in names["cli"] and names["cli"].split()[0] == "default"

    rc, out, _ = await cli(capsys, "explain", "--kubeconfig", kc, "--policy-file", str(env.policy_file), "default/cli")
    assert rc == 0, out
    assert "effective: min 1, max 4, mode enforce" in out
    assert "metric queueTime: target 20000" in out
    assert f"[{written['reason']}]" in out and "queueTime: value" in out


async def test_explain_reads_the_policy_configmap_and_names_a_missing_key(env: Env,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Without --policy-file, `explain` resolves against the ConfigMap; a ConfigMap without the key is a clear
    error (exit 1), `--configmap-key` picks another key; an unreadable status annotation does not crash it."""
    env.deployment("cli-cm", {P + "max-replicas": "9", STATUS_ANNOTATION: "{not json"})
    env.cluster.ensure_namespace(POLICY_NAMESPACE)
    env.cluster.registry.create(
        CONFIGMAPS, POLICY_NAMESPACE,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": POLICY_CONFIGMAP, "namespace": POLICY_NAMESPACE},
         "data": {"custom.yaml": env.policy_file.read_text()}})
    kc = str(env.kubeconfig)
    rc, _, err = await cli(capsys, "explain", "--kubeconfig", kc, "default/cli-cm")
    assert rc == 1 and "has no key 'policy.yaml'" in err

    rc, out, err = await cli(capsys, "explain", "--kubeconfig", kc, "--configmap-key", "custom.yaml", "default/cli-cm")
    assert rc == 0, err
    assert f"configmap/{POLICY_NAMESPACE}/{POLICY_CONFIGMAP} key custom.yaml" in out
    # the cluster policy caps max-replicas at 4: explain says it adjusted the annotation
    assert "adjusted:" in out and "effective: min 1, max 4" in out
    assert "status annotation is unreadable" in out

    rc, out, _ = await cli(capsys, "explain", "--kubeconfig", kc, "--configmap-key", "custom.yaml", "--json",
                           "default/cli-cm")
    assert rc == 0 and json.loads(out)["status"] is None


async def test_status_shows_a_lease_the_controller_no_longer_scales(env: Env,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Leases whose last decision is still written in their status, then made invalid or paused: `status` resolves
    their annotations against the policy as the controller does, and shows them so instead of that last decision;
    when the policy cannot be read it says so and shows the last decisions as written."""
    last = json.dumps({"desired": 2, "reason": "DesiredWithinRange", "mode": "enforce", "min": 1, "max": 3,
                       "metrics": []})
    env.deployment("was-good", {P + "max-replicas": "lots", STATUS_ANNOTATION: last}, namespace="cli-stale")
    env.deployment("on-hold", {P + "paused": "true", STATUS_ANNOTATION: last}, namespace="cli-stale")
    env.deployment("fine", {STATUS_ANNOTATION: last}, namespace="cli-stale")
    kc = str(env.kubeconfig)
    rc, out, err = await cli(capsys, "status", "--kubeconfig", kc, "-n", "cli-stale", "--json",
                             "--policy-file", str(env.policy_file))
    assert rc == 0 and not err
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["was-good"]["mode"], rows["was-good"]["reason"], rows["was-good"]["desired"]) == (
        "invalid", "InvalidAnnotation", None)
    assert any("max-replicas='lots'" in i for i in rows["was-good"]["issues"])
    assert (rows["on-hold"]["mode"], rows["on-hold"]["reason"]) == ("paused", "Paused")
    assert (rows["fine"]["mode"], rows["fine"]["reason"], rows["fine"]["desired"]) == (
        "enforce", "DesiredWithinRange", 2)

    env.cluster.ensure_namespace("cli-policy")
    env.cluster.registry.create(CONFIGMAPS, "cli-policy", {"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": {"name": "keyless", "namespace": "cli-policy"},
                                                           "data": {}})
    rc, out, err = await cli(capsys, "status", "--kubeconfig", kc, "-n", "cli-stale", "--policy-namespace",
                             "cli-policy", "--configmap", "keyless")
    assert rc == 0 and "the policy cannot be read" in err and "has no key 'policy.yaml'" in err
    assert all("DesiredWithinRange" in line for line in out.splitlines()[1:]), out


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`autoscaler run` in this process sets up the root logger for itself (a handler on this test's stderr, which is
    closed after it): put the root logger back as it was."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in ("", "aiohttp.access", "kubernetes_asyncio")}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("command", ["run", "status", "explain", "doctor"])
@pytest.mark.usefixtures("root_logging")
async def test_a_missing_kubeconfig_is_one_line_not_a_traceback(command: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Every command that talks to a cluster, given a kubeconfig that is not there or names no such context, says so
    in one line and exits 1 (it printed kubernetes-asyncio's traceback: 'Expected key current-context'; migrate-hpa
    has said it in its own words, exit 2, all along)."""
    extra = ["default/x"] if command == "explain" else []
    rc, out, err = await cli(capsys, command, "--kubeconfig", str(tmp_path / "nope.yaml"), *extra)
    text = out + err
    assert rc == 1 and "Traceback" not in text, text
    assert f"kubeconfig {tmp_path / 'nope.yaml'}: no such file" in text, text
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "a",
                                      "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                                      "users": [{"name": "u", "user": {}}],
                                      "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}]}))
    rc, out, err = await cli(capsys, command, "--kubeconfig", str(kubeconfig), "--context", "nope", *extra)
    text = out + err
    assert rc == 1 and "Traceback" not in text and "Expected object with name nope" in text, text


async def test_status_says_when_no_controller_renews_its_lease(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The decisions `status` shows are the last a controller wrote: when its leader Lease was released or not renewed
    for three lease durations, `status` says that no controller is running; a fresh Lease says nothing."""
    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t))
    env.cluster.ensure_namespace("cli-ctl")
    for name, holder, renewed in (("fresh", "ctl-a", time.time()), ("stale", "ctl-b", time.time() - 900),
                                  ("released", None, time.time())):
        spec = {"leaseDurationSeconds": 15, "renewTime": stamp(renewed), **({"holderIdentity": holder} if holder else {})}
        env.cluster.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": name, "namespace": "cli-ctl"}, "spec": spec})
    kc = str(env.kubeconfig)
    said = {}
    for name in ("fresh", "stale", "released", "absent"):
        rc, _, err = await cli(capsys, "status", "--kubeconfig", kc, "--policy-file", str(env.policy_file),
                               "--policy-namespace", "cli-ctl", "--lease-name", name)
        assert rc == 0
        said[name] = err
    assert said["fresh"] == "" and said["absent"] == ""
    assert "no controller is running (Lease cli-ctl/stale last renewed 9" in said["stale"], said["stale"]
    assert "ago by ctl-b)" in said["stale"]
    assert "no controller is running (Lease cli-ctl/released released)" in said["released"]
