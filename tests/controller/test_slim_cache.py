"""The controller's caches keep only what it reads: Pods reduced to what `pod_from_k8s` and the label index use,
Deployments without their pod template, managedFields and kubectl's last-applied annotation. Checked on objects
as a real cluster returns them and live against the sandbox API server (list, then watch events)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from pathlib import Path

from autoscaler.kube.api import KubeApi
from autoscaler.kube.cache import WatchCache
from autoscaler.kube.workloads import (
    LAST_APPLIED,
    deployment_path,
    deployments_path,
    max_num_seqs,
    pods_path,
    slim_deployment,
)
from autoscaler.observe import pod_from_k8s, slim_pod
from autoscaler.sandbox.cluster import SandboxCluster
from tests.support import wait_for

STAMP = "2026-11-24T00:10:00Z"
MANAGED = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": STAMP,
            "fieldsType": "FieldsV1", "fieldsV1": {f"f:{k}": {} for k in ("metadata", "spec", "status") * 20}}]
TRITON = {
    "name": "triton", "image": "nvcr.io/nvidia/tritonserver:24.05-py3",
    "args": ["tritonserver", "--model-repository=/models", "--metrics-port=8002"],
    "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(12)],
    "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in (("http", 8000), ("grpc", 8001),
                                                                           ("metrics", 8002))],
    "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8000}, "periodSeconds": 5},
    "volumeMounts": [{"name": "models", "mountPath": "/models"}, {"name": "kube-api-access", "readOnly": True,
                                                                   "mountPath": "/var/run/secrets/kubernetes.io"}],
}


def _pod() -> dict:  # type: ignore[type-arg]
    """A Triton pod as a real API server returns it (spec defaults, managedFields, container statuses)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "llm-5d8f7c9b4-x2x9z", "namespace": "team-a", "uid": "3f0c", "resourceVersion": "812",
                     "generateName": "llm-5d8f7c9b4-", "creationTimestamp": STAMP, "labels": {"app": "llm", "h": "5d8f"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llm-5d8f7c9b4",
                                          "uid": "9a1b", "controller": True}],
                     "managedFields": MANAGED},
        "spec": {"containers": [TRITON, {**TRITON, "name": "sidecar", "resources": {"requests": {"cpu": "100m"}}}],
                 "volumes": [{"name": "models", "emptyDir": {}}, {"name": "kube-api-access", "projected": {}}],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "nodeName": "gpu-node-7",
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "status": {"phase": "Running", "startTime": STAMP, "hostIP": "10.0.0.7", "podIP": "10.1.2.3", "qosClass": "Burstable",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": STAMP}
                                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                            "PodScheduled")],
                   "containerStatuses": [{"name": "triton", "ready": True, "restartCount": 0, "image": TRITON["image"],
                                          "imageID": "sha256:" + "0" * 64, "containerID": "containerd://" + "1" * 64,
                                          "state": {"running": {"startedAt": STAMP}}}]},
    }


def test_the_pod_cache_keeps_what_the_controller_reads_and_little_else() -> None:
    full = _pod()
    before = copy.deepcopy(full)
    slim = slim_pod(full)
    assert full == before  # the object handed in is not changed
    assert pod_from_k8s(slim) == pod_from_k8s(full)
    assert pod_from_k8s(slim).requests_milli["nvidia.com/gpu"] == {"triton": 1000}
    assert slim["metadata"] == {k: full["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                                 "labels")}
    assert len(json.dumps(slim)) * 8 < len(json.dumps(full))  # what a 10,000-pod cache holds
    # a pod being deleted, not ready, without a status yet: the same view as the full object
    for change in ({"metadata": {"deletionTimestamp": STAMP}}, {"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": STAMP}], "phase": "Running"}},
                   {"status": {}}):
        obj = _pod()
        for part, fields in change.items():
            obj[part] = {**obj[part], **fields} if fields else {}
        assert pod_from_k8s(slim_pod(obj)) == pod_from_k8s(obj)


def test_a_deployment_is_kept_without_its_template_and_managed_fields() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "llm", "namespace": "team-a", "uid": "77", "resourceVersion": "9", "generation": 3,
                        "labels": {"app": "llm"}, "managedFields": MANAGED,
                        "annotations": {"inference-autoscaler.io/enabled": "true", LAST_APPLIED: "{" + "x" * 4000 + "}"}},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "llm"}},
                    "template": {"metadata": {"labels": {"app": "llm"}}, "spec": {"containers": [TRITON]}}},
           "status": {"replicas": 3, "readyReplicas": 2}}
    before = copy.deepcopy(dep)
    slim = slim_deployment(dep)
    assert dep == before
    assert slim["metadata"]["annotations"] == {"inference-autoscaler.io/enabled": "true"}
    assert "managedFields" not in slim["metadata"]
    assert slim["spec"] == {"replicas": 3, "selector": {"matchLabels": {"app": "llm"}},  # of the template, the
                            "template": {"spec": {"containers": [{"name": "triton", "args": TRITON["args"]}]}}}  # args
    assert {k: v for k, v in slim["metadata"].items() if k != "annotations"} == {
        k: v for k, v in dep["metadata"].items() if k not in ("annotations", "managedFields")}
    assert slim["status"] == dep["status"] and slim["kind"] == "Deployment"
    assert slim_deployment({"metadata": {"name": "x"}}) == {"metadata": {"name": "x"}}  # nothing to drop


async def test_listed_and_watched_objects_are_kept_slim(tmp_path: Path) -> None:
    async with SandboxCluster(startup_seconds=0.0, pending_seconds=0.0) as c:
        api = await KubeApi.connect(str(c.write_kubeconfig(tmp_path / "kubeconfig")))
        deps = WatchCache(api, deployments_path(), name="deployments", transform=slim_deployment)
        pods = WatchCache(api, pods_path(), name="pods", transform=slim_pod)
        handed: list[dict] = []  # type: ignore[type-arg]
        pods.add_handler(lambda kind, obj: handed.append(obj))
        c.create_deployment("llm", namespace="default", replicas=1, kind="triton",
                            annotations={"inference-autoscaler.io/enabled": "true", LAST_APPLIED: "{}"})
        tasks: list[asyncio.Task[None]] = []
        try:
            for _ in range(100):  # the sandbox's deployment controller makes the first pod; then the caches list
                if (await api.get(pods_path("default")))["items"]:
                    break
                await asyncio.sleep(0.1)
            tasks = [asyncio.create_task(cache.run()) for cache in (deps, pods)]
            await asyncio.wait_for(asyncio.gather(deps.synced.wait(), pods.synced.wait()), 10)
            key = ("default", "llm")
            assert "template" not in deps.objects[key]["spec"]
            assert deps.objects[key]["metadata"]["annotations"] == {"inference-autoscaler.io/enabled": "true"}
            served = (await api.get(pods_path("default")))["items"]
            assert served and served[0]["spec"]["containers"][0].get("ports")  # the API serves whole pods
            assert [pod_from_k8s(p) for p in pods.objects.values()] == [pod_from_k8s(p) for p in served]
            assert all("ports" not in ctr for p in pods.objects.values() for ctr in p["spec"]["containers"])
            # watch events: an annotation written, then a second pod
            await api.patch(deployment_path(*key), {"metadata": {"annotations": {"team": "a"}}})
            await wait_for(lambda: "team" in deps.objects[key]["metadata"]["annotations"], 10, "the watched change")
            assert "template" not in deps.objects[key]["spec"]
            await api.patch(deployment_path(*key) + "/scale", {"spec": {"replicas": 2}})
            await wait_for(lambda: len(pods.objects) == 2, 10, "the second pod, watched")
            assert all(set(p) == {"metadata", "spec", "status"} for p in handed) and len(handed) >= 2
            assert all("ports" not in ctr for p in handed for ctr in p["spec"]["containers"])
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await api.close()


def vllm(command: list[str] | None = None, args: list[str] | None = None, **env: str) -> dict:  # type: ignore[type-arg]
    """A Deployment of one vLLM container with this command line and env, beside a sidecar."""
    ctr: dict = {"name": "vllm", "image": "vllm/vllm-openai:v0.9.0",  # type: ignore[type-arg]
                 "env": [*({"name": k, "value": v} for k, v in env.items()),
                         {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]}
    if command is not None:
        ctr["command"] = command
    if args is not None:
        ctr["args"] = args
    sidecar = {"name": "proxy", "image": "envoy", "args": ["--config", "/etc/envoy.yaml"]}
    return {"spec": {"template": {"spec": {"containers": [ctr, sidecar]}}}}


def test_max_num_seqs_is_read_from_the_pod_templates_command_lines() -> None:
    """vLLM's --max-num-seqs wherever a Deployment passes it: args (both spellings, = or a word of its own), a shell
    command, a $(VAR) from the container's env, NIM's passthrough variable; and none when it is absent, 0, or said
    twice differently. The controller's slim cache keeps what it takes (and not the rest of the env)."""
    assert max_num_seqs(vllm(args=["--model", "m", "--max-num-seqs", "64"])) == 64
    assert max_num_seqs(vllm(args=["--max_num_seqs=32"])) == 32
    assert max_num_seqs(vllm(command=["sh", "-c", "vllm serve m --max-num-seqs 16 --port 8000"])) == 16
    assert max_num_seqs(vllm(args=["--max-num-seqs", "$(SEQS)"], SEQS="48", OTHER="x")) == 48
    assert max_num_seqs(vllm(NIM_PASSTHROUGH_ARGS="--max-num-seqs 8 --enable-prefix-caching")) == 8
    assert max_num_seqs(vllm(args=["--max-num-seqs", "$(UNSET)"])) is None
    assert max_num_seqs(vllm(args=["--model", "m"])) is None and max_num_seqs(vllm()) is None
    assert max_num_seqs(vllm(args=["--max-num-seqs", "0"])) is None
    assert max_num_seqs(vllm(args=["--max-num-seqs", "8"], NIM_PASSTHROUGH_ARGS="--max-num-seqs 16")) is None
    assert max_num_seqs({}) is None and max_num_seqs({"spec": {"template": {"spec": {"containers": "x"}}}}) is None
    dep = vllm(args=["--max-num-seqs", "$(SEQS)"], SEQS="48", OTHER="x" * 4000)
    slim = slim_deployment(dep)
    assert max_num_seqs(slim) == 48
    assert slim["spec"]["template"]["spec"]["containers"][0] == {
        "name": "vllm", "args": ["--max-num-seqs", "$(SEQS)"], "env": [{"name": "SEQS", "value": "48"}]}
