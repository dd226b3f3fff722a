"""The sandbox scenario: which deployments ``autoscaler sandbox up`` starts with, and how pods behave.

Format (YAML)::

    startupSeconds: 5          # default Running -> Ready delay (model load) for every pod
    pendingSeconds: 0.5        # Pending -> Running
    terminatingSeconds: 1      # deletionTimestamp -> gone
    namespaces: [inference]    # created besides default, kube-system, kube-public, kube-node-lease
    deployments:
      - name: triton-resnet
        namespace: default
        replicas: 1
        kind: triton           # -> pod template annotation sandbox.inference-autoscaler.io/kind
        startupSeconds: 8      # -> pod template annotation sandbox.inference-autoscaler.io/startup-seconds
        labels: {tier: gpu}
        annotations: {inference-autoscaler.io/enabled: "true"}
        container: {name: triton, image: nvcr.io/nvidia/tritonserver:24.05-py3, cpu: "1", gpus: 1}
                               # also args: [...] and env: {NAME: value}; a vllm/nim pod runs --max-num-seqs at most
        serving: {concurrency: 4, serviceTimeMs: 40}   # -> annotation sandbox.inference-autoscaler.io/serving (JSON)
        load: {profile: step}  # passed as-is to the data plane's start_load
    objects: []                # any other manifests (ConfigMaps, PodMonitors, ...) created as they are

Deployments created later with kubectl get the same treatment when their pod template carries the
same annotations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoscaler.sandbox.controllers import ANN_KIND, ANN_SCRAPE, ANN_SERVING, ANN_STARTUP

Obj = dict[str, Any]
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "config" / "sandbox-scenario.yaml"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.05-py3"


class ScenarioError(ValueError):
    """The scenario file is unreadable or invalid; the message names the file and the fields."""


class ContainerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "triton"
    image: str = TRITON_IMAGE
    cpu: str = Field("1", description="CPU request, a Kubernetes quantity")
    memory: str | None = Field(None, description="memory request, a Kubernetes quantity")
    gpus: int = Field(0, ge=0, description="nvidia.com/gpu limit")
    ports: dict[str, int] = Field(default_factory=lambda: {"http": 8000, "grpc": 8001, "metrics": 8002})
    args: list[str] = Field(default_factory=list, description="the container's args (a vLLM or NIM pod runs at most "
                                                              "--max-num-seqs requests at once)")
    env: dict[str, str] = Field(default_factory=dict, description="the container's env (values only)")


class ScenarioDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    namespace: str = "default"
    replicas: int = Field(1, ge=0)
    kind: Literal["triton", "nim", "vllm", "nim-legacy"] = Field(
        "triton", description="serving kind: triton, nim, vllm, nim-legacy (NIM's un-prefixed names only)")
    scrape: bool = Field(True, description="Prometheus scrapes its pods' own metrics (false: as without a "
                                           "PodMonitor; their GPUs are still on the node's dcgm-exporter)")
    startupSeconds: float | None = Field(None, ge=0, description="Running -> Ready delay of its pods")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    container: ContainerSpec = Field(default_factory=ContainerSpec)
    serving: dict[str, Any] | None = None
    load: dict[str, Any] | None = None


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    startupSeconds: float = Field(5.0, ge=0)
    pendingSeconds: float = Field(0.5, ge=0)
    terminatingSeconds: float = Field(1.0, ge=0)
    namespaces: list[str] = Field(default_factory=list)
    deployments: list[ScenarioDeployment] = Field(default_factory=list)
    objects: list[dict[str, Any]] = Field(default_factory=list)


def load_scenario(path: Path | str | None = None) -> Scenario:
    """Read a scenario file (default: ``config/sandbox-scenario.yaml`` of the source tree, else empty)."""
    if path is None:
        if not DEFAULT_SCENARIO.exists():
            return Scenario()
        path = DEFAULT_SCENARIO
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{path}: {problems}") from exc


def deployment_manifest(d: ScenarioDeployment | Obj) -> Obj:
    """An apps/v1 Deployment for a scenario entry (a ScenarioDeployment or the equivalent dict)."""
    spec = d if isinstance(d, ScenarioDeployment) else ScenarioDeployment.model_validate(d)
    labels = {"app": spec.name, **spec.labels}
    template_annotations: dict[str, str] = {ANN_KIND: spec.kind}
    if spec.serving is not None:
        template_annotations[ANN_SERVING] = json.dumps(spec.serving, sort_keys=True)
    if not spec.scrape:
        template_annotations[ANN_SCRAPE] = "false"
    if spec.startupSeconds is not None:
        template_annotations[ANN_STARTUP] = f"{spec.startupSeconds:g}"
    c = spec.container
    resources: Obj = {"requests": {"cpu": c.cpu}}
    if c.memory:
        resources["requests"]["memory"] = c.memory
    if c.gpus:
        resources["limits"] = {"nvidia.com/gpu": str(c.gpus)}
    container: Obj = {"name": c.name, "image": c.image, "resources": resources,
                      "ports": [{"name": n, "containerPort": p} for n, p in c.ports.items()]}
    if c.args:
        container["args"] = list(c.args)
    if c.env:
        container["env"] = [{"name": k, "value": v} for k, v in c.env.items()]
    metadata: Obj = {"name": spec.name, "namespace": spec.namespace, "labels": labels}
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "template": {"metadata": {"labels": labels, "annotations": template_annotations},
                         "spec": {"containers": [container]}},
        },
    }
