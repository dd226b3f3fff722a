"""The backfilled data set of the metrics tests, queried at time T0.

Pods (namespace/pod) and what each metric holds at T0 (samples every 15 s from T0-600 s):

* team-a/llm-a-0 (lease A, by name): CPU triton 1.5 + envoy 0.25 cores (plus cgroup artefacts that
  must be excluded); DCGM pod style on 2 GPUs 80/60; queue 600 us/request over 2 GPUs; KV 0.5 (new
  vLLM name); inflight 3+4 over two workers; Triton nv_gpu_utilization 0.33.
* team-a/llm-a-1 (lease A): CPU 0.5; DCGM 50 (pod style) and 90 (exported style, must be ignored);
  no Triton traffic; KV 0.25 (old vLLM name); inflight 5.
* team-b/llm-b-0 (lease B, regex ``llm-b-[0-9]+``): CPU 2.0; DCGM 40 exported style only; queue
  2000 us/request; KV 0.4 (new name) and 0.75 (NIM name, must be ignored).
* team-b/llm-b-1 (lease B): CPU samples end at T0-240; DCGM samples end at T0-180 (stale); queue
  counter grows with no success (+Inf); KV NaN.
* team-b/llm-a-1, team-b/llm-b-x, team-a/noise-0: decoys that no lease asks for.
* team-c/chat-5d8c7-aaaaa (lease C, Deployment ``chat``): a vLLM server with two engines: 3 + 1 + 1 finished req/s
  (``finished_reason`` stop, length and abort on engine 0; the aborted ones gave up while waiting, so they are in
  neither histogram), 2 s of inference per request that ran, 50 ms (50,000 us) of queueing per
  request, 2 + 3 requests waiting, 16 slots (NIM's ``num_request_max``).
* team-c/chat-6b9d4-bbbbb (lease C, the same Deployment's other ReplicaSet): a Triton server, 2 req/s succeeded and
  0.5 failed, 100 ms of compute and 300 us of queueing per request, 1 pending.
"""

from __future__ import annotations

import math
from pathlib import Path

from autoscaler.metrics.localprom import OpenMetricsWriter

T0 = 1_700_003_600.0
STEP = 15.0
START = T0 - 600.0
VLLM_POD, TRITON_POD = "chat-5d8c7-aaaaa", "chat-6b9d4-bbbbb"
OLD_NIM_POD, WEB_POD = "nim-7d9f8-ccccc", "web-5c5c5-ddddd"
RULES = Path(__file__).resolve().parents[2] / "config" / "rules" / "queue-time.rules.yaml"


def times(end: float = T0) -> list[float]:
    """Sample times from START to `end`."""
    n = int((end - START) // STEP)
    return [START + i * STEP for i in range(n + 1)]


def counter(rate: float, end: float = T0, base: float = 1000.0) -> list[tuple[float, float]]:
    """A counter growing at `rate` per second."""
    return [(t, base + rate * (t - START)) for t in times(end)]


def gauge(value: float, end: float = T0) -> list[tuple[float, float]]:
    """A constant gauge."""
    return [(t, value) for t in times(end)]


def dataset() -> OpenMetricsWriter:
    """The data set described in the module docstring."""
    w = OpenMetricsWriter()
    cpu = "container_cpu_usage_seconds_total"

    def cadvisor(ns: str, pod: str, container: str, cores: float, end: float = T0, image: str = "img") -> None:
        w.add(cpu, {"namespace": ns, "pod": pod, "container": container, "image": image, "cpu": "total",
                    "id": f"/kubepods/{pod}/{container}"}, counter(cores, end))

    cadvisor("team-a", "llm-a-0", "triton", 1.5)
    cadvisor("team-a", "llm-a-0", "envoy", 0.25)
    cadvisor("team-a", "llm-a-0", "", 1.75, image="")      # pod-level cgroup
    cadvisor("team-a", "llm-a-0", "POD", 0.01, image="")   # sandbox
    cadvisor("team-a", "llm-a-1", "triton", 0.5)
    cadvisor("team-b", "llm-b-0", "triton", 2.0)
    cadvisor("team-b", "llm-b-1", "triton", 1.0, end=T0 - 240)
    cadvisor("team-b", "llm-a-1", "triton", 9.0)           # decoy: same name, other namespace
    cadvisor("team-b", "llm-b-x", "triton", 9.0)           # decoy: does not match the regex
    cadvisor("team-a", "noise-0", "triton", 9.0)           # decoy: in no lease

    dcgm = "DCGM_FI_DEV_GPU_UTIL"
    exporter = {"namespace": "gpu-operator", "pod": "dcgm-exporter-abc", "job": "dcgm"}

    def gpu(gpu_id: str, value: float, end: float = T0, **labels: str) -> None:
        w.add(dcgm, {"gpu": gpu_id, "UUID": f"GPU-{gpu_id}", "modelName": "H100", **labels}, gauge(value, end))

    gpu("0", 80, namespace="team-a", pod="llm-a-0", container="triton")
    gpu("1", 60, namespace="team-a", pod="llm-a-0", container="triton")
    gpu("2", 50, namespace="team-a", pod="llm-a-1", container="triton")
    gpu("2", 90, exported_namespace="team-a", exported_pod="llm-a-1", **exporter)
    gpu("3", 40, exported_namespace="team-b", exported_pod="llm-b-0", **exporter)
    gpu("4", 70, end=T0 - 180, exported_namespace="team-b", exported_pod="llm-b-1", **exporter)
    gpu("5", 0, **exporter)                                # unallocated GPU
    gpu("6", 99, namespace="team-b", pod="llm-a-1")        # decoy
    w.add("nv_gpu_utilization", {"namespace": "team-a", "pod": "llm-a-0", "gpu_uuid": "GPU-0"}, gauge(0.33))

    def triton(ns: str, pod: str, success: float, queue_us: float, **labels: str) -> None:
        base = {"namespace": ns, "pod": pod, "model": "m", "version": "1", **labels}
        w.add("nv_inference_request_success", base, counter(success))
        w.add("nv_inference_queue_duration_us", base, counter(queue_us))

    triton("team-a", "llm-a-0", 2.0, 600.0, gpu_uuid="GPU-0")
    triton("team-a", "llm-a-0", 1.0, 1200.0, gpu_uuid="GPU-1")
    triton("team-a", "llm-a-1", 0.0, 0.0)
    triton("team-b", "llm-b-0", 4.0, 8000.0)
    triton("team-b", "llm-b-1", 0.0, 100.0)
    # What the recording rule would have written (rules never evaluate over backfilled history).
    for pod, ns, q, r in [("llm-a-0", "team-a", 600.0, 3.0), ("llm-a-1", "team-a", math.nan, 0.0),
                          ("llm-b-0", "team-b", 2000.0, 4.0), (VLLM_POD, "team-c", 50000.0, 4.0),
                          (TRITON_POD, "team-c", 300.0, 2.0)]:
        w.add("inference_autoscaler:queue_time_us:rate1m", {"namespace": ns, "pod": pod}, gauge(q))
        w.add("inference_autoscaler:request_success:rate1m", {"namespace": ns, "pod": pod}, gauge(r))

    vllm = {"model_name": "llama", "engine": "0"}
    w.add("vllm:kv_cache_usage_perc", {"namespace": "team-a", "pod": "llm-a-0", **vllm}, gauge(0.5))
    w.add("vllm:gpu_cache_usage_perc", {"namespace": "team-a", "pod": "llm-a-1", **vllm}, gauge(0.25))
    w.add("vllm:kv_cache_usage_perc", {"namespace": "team-b", "pod": "llm-b-0", **vllm}, gauge(0.4))
    w.add("gpu_cache_usage_perc", {"namespace": "team-b", "pod": "llm-b-0", "model_name": "x"}, gauge(0.75))
    w.add("vllm:kv_cache_usage_perc", {"namespace": "team-b", "pod": "llm-b-1", **vllm}, gauge(math.nan))

    chat = {"namespace": "team-c", "pod": VLLM_POD, "model_name": "llama"}
    for reason, rate in (("stop", 3.0), ("length", 1.0)):
        w.add("vllm:request_success_total", {**chat, "engine": "0", "finished_reason": reason}, counter(rate))
    w.add("vllm:request_success_total", {**chat, "engine": "0", "finished_reason": "abort"}, counter(1.0))
    for engine, share, waiting, running in (("0", 0.25, 2, 6), ("1", 0.75, 3, 10)):  # the requests split over engines
        lab = {**chat, "engine": engine}
        w.add("vllm:num_requests_running", lab, gauge(running))  # saturated: requests waited throughout
        w.add("vllm:request_inference_time_seconds_sum", lab, counter(8.0 * share))
        w.add("vllm:request_inference_time_seconds_count", lab, counter(4.0 * share))
        w.add("vllm:request_queue_time_seconds_sum", lab, counter(0.2 * share))
        w.add("vllm:request_queue_time_seconds_count", lab, counter(4.0 * share))
        w.add("vllm:num_requests_waiting", lab, gauge(waiting))
        w.add("vllm:kv_cache_usage_perc", lab, gauge(0.05))  # under a tenth in use: no KV fit extrapolated
    w.add("num_request_max", {"namespace": "team-c", "pod": VLLM_POD, "model_name": "llama"}, gauge(16))  # NIM's name
    # A pod whose requests wait only at the last scrape (one scheduler step), with 3 running: not saturated.
    w.add("vllm:num_requests_running", {"namespace": "team-a", "pod": "llm-a-0", **vllm}, gauge(3))
    w.add("vllm:num_requests_waiting", {"namespace": "team-a", "pod": "llm-a-0", **vllm},
          [(t, 1.0 if t == T0 else 0.0) for t in times()])
    # NIM's un-prefixed names only (an older NIM): 4 req/s (+1 failed), 8 running and 2 waiting throughout
    old_nim = {"namespace": "team-d", "pod": OLD_NIM_POD, "model_name": "llama"}
    w.add("request_success_total", old_nim, counter(4.0))
    w.add("request_failure_total", old_nim, counter(1.0))
    w.add("num_requests_running", old_nim, gauge(8))
    w.add("num_requests_waiting", old_nim, gauge(2))
    w.add("num_request_max", old_nim, gauge(16))
    w.add("gpu_cache_usage_perc", old_nim, gauge(0.5))  # 8 running in half its KV cache: 16 would fit
    # a pod reading vLLM's old KV name: 1 running in a quarter of its cache, so 4 would fit
    w.add("vllm:num_requests_running", {"namespace": "team-a", "pod": "llm-a-1", **vllm}, gauge(1))
    # another application with names like NIM's, but no num_request_max: not read as NIM
    w.add("request_success_total", {"namespace": "team-d", "pod": WEB_POD}, counter(50.0))
    w.add("num_requests_waiting", {"namespace": "team-d", "pod": WEB_POD}, gauge(1))
    tri = {"namespace": "team-c", "pod": TRITON_POD, "model": "m", "version": "1"}
    w.add("nv_inference_request_success", tri, counter(2.0))
    w.add("nv_inference_request_failure", {**tri, "reason": "REJECTED"}, counter(0.5))
    w.add("nv_inference_compute_infer_duration_us", tri, counter(2.0 * 100_000))
    w.add("nv_inference_queue_duration_us", tri, counter(2.0 * 300))
    w.add("nv_inference_pending_request_count", tri, gauge(1))

    for pod, worker, value in [("llm-a-0", "w1", 3), ("llm-a-0", "w2", 4), ("llm-a-1", "w1", 5)]:
        w.add("app_inflight_requests", {"namespace": "team-a", "pod": pod, "worker": worker}, gauge(value))
    return w
