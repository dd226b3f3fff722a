"""Simulated pods: exposition names, types and labels as the real exporters; cheap endpoints."""

from __future__ import annotations

import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.sandbox.pods import MetricsServer, NodeExporters, SimPod, node_dcgm_page, node_kubelet_page, pod_page
from autoscaler.serving import ServingConfig


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def families(text: str) -> dict[str, tuple[str, list[dict[str, str]]]]:
    """name -> (type, label sets) of a page, parsed by prometheus_client's own parser."""
    out: dict[str, tuple[str, list[dict[str, str]]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = (fam.type, [dict(s.labels) for s in fam.samples])
    return out


def sample(text: str, name: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in (name, name + "_total"):  # the parser appends _total to counter samples
                return float(s.value)
    raise KeyError(name)


def make_pod(kind: str = "triton", clock: FakeClock | None = None, **kw: object) -> SimPod:
    return SimPod(namespace="inference", name="resnet-6c9d7b8f4-k2x7p", deployment="resnet", container="triton",
                  kind=kind, uid="0c1d2e3f-4a5b", serving=ServingConfig(concurrency=4, service_time_ms=40),
                  clock=clock or FakeClock(), **kw)  # type: ignore[arg-type]


def test_triton_page_names_types_labels() -> None:
    """Triton families carry model/version (+gpu_uuid on instance metrics); GPU only gpu_uuid; CPU none."""
    page = make_pod().render()
    fam = families(page)
    for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                 "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                 "nv_inference_request_duration_us"):
        typ, labels = fam[name]
        assert typ == "counter", name
        assert f"# TYPE {name} counter" in page and f"\n{name}{{" in page  # exposed under this exact name
        assert set(labels[0]) == {"model", "version", "gpu_uuid"}, name
        assert labels[0]["model"] == "resnet" and labels[0]["version"] == "1"
    typ, labels = fam["nv_inference_request_failure"]
    assert typ == "counter" and {lab["reason"] for lab in labels} == {"REJECTED", "CANCELED", "BACKEND", "OTHER"}
    typ, labels = fam["nv_inference_pending_request_count"]
    assert typ == "gauge" and set(labels[0]) == {"model", "version"}  # never gpu_uuid
    typ, labels = fam["nv_gpu_utilization"]
    assert typ == "gauge" and set(labels[0]) == {"gpu_uuid"}
    typ, labels = fam["nv_cpu_utilization"]
    assert typ == "gauge" and labels == [{}]


def test_triton_counters_follow_requests() -> None:
    """Counters move as requests finish; pending is the queue; GPU utilisation is 0-1."""
    clock = FakeClock()
    pod = make_pod(clock=clock)
    pod.render()
    for _ in range(12):
        pod.submit()  # 4 run at once, 8 wait
    assert sample(pod.render(), "nv_inference_pending_request_count") == 8
    clock.t += 0.1  # 8 done (two rounds of 40 ms), 4 running
    page = pod.render()
    assert sample(page, "nv_inference_request_success") == 8
    assert sample(page, "nv_inference_pending_request_count") == 0
    assert sample(page, "nv_inference_queue_duration_us") == pytest.approx(4 * 40000)
    assert sample(page, "nv_inference_compute_infer_duration_us") == pytest.approx(8 * 40000)
    assert sample(page, "nv_gpu_utilization") == pytest.approx(1.0)
    clock.t += 5
    page = pod.render()
    assert sample(page, "nv_inference_request_success") == 12
    assert 0.0 <= sample(page, "nv_gpu_utilization") < 0.05


def test_nim_page_vllm_names() -> None:
    """NIM pods expose vllm:* with model_name/engine (KV usage 0-1) and the NIM un-prefixed names."""
    clock = FakeClock()
    pod = make_pod(kind="nim", clock=clock)
    for _ in range(6):
        pod.submit(prompt_tokens=1000, output_tokens=200)
    page = pod.render()
    fam = families(page)
    assert fam["vllm:kv_cache_usage_perc"][0] == "gauge"
    assert set(fam["vllm:num_requests_waiting"][1][0]) == {"model_name", "engine"}
    assert sample(page, "vllm:num_requests_waiting") == 2
    assert sample(page, "vllm:num_requests_running") == 4
    kv = sample(page, "vllm:kv_cache_usage_perc")
    assert 0 < kv <= 1
    assert fam["vllm:request_success"][0] == "counter"  # exposed as vllm:request_success_total
    assert "vllm:request_success_total" in page
    assert fam["vllm:request_queue_time_seconds"][0] == "histogram"
    assert sample(page, "num_requests_waiting") == 2
    clock.t += 1
    assert sample(pod.render(), "vllm:request_success_total") == 6


def test_nim_histograms_are_observed_as_requests_finish() -> None:
    """vLLM's queue and inference (RUNNING phase) time histograms move when a request finishes, as vLLM observes
    them, so their counts agree with the finished-request counter at every scrape (4 slots, 40 ms a request)."""
    clock = FakeClock()
    pod = make_pod(kind="nim", clock=clock)
    for _ in range(6):
        pod.submit()  # 4 run now; 2 wait 40 ms
    page = pod.render()
    assert sample(page, "vllm:request_inference_time_seconds_count") == 0  # nothing finished yet
    assert sample(page, "vllm:request_queue_time_seconds_count") == 0
    clock.t += 0.05
    page = pod.render()
    assert sample(page, "vllm:request_success_total") == 4
    assert sample(page, "vllm:request_inference_time_seconds_count") == 4
    assert sample(page, "vllm:request_inference_time_seconds_sum") == pytest.approx(4 * 0.04)
    assert sample(page, "vllm:request_queue_time_seconds_sum") == pytest.approx(0.0)
    clock.t += 0.05
    page = pod.render()
    assert sample(page, "vllm:request_success_total") == sample(page, "vllm:request_queue_time_seconds_count") == 6
    assert sample(page, "vllm:request_queue_time_seconds_sum") == pytest.approx(2 * 0.04)
    assert sample(page, "vllm:request_inference_time_seconds_sum") == pytest.approx(6 * 0.04)
    fam = families(page)
    assert fam["vllm:request_inference_time_seconds"][0] == "histogram"
    buckets = {lab["le"]: s.value for f in text_string_to_metric_families(page)
               if f.name == "vllm:request_inference_time_seconds" for s in f.samples
               if s.name.endswith("_bucket") for lab in [s.labels]}
    assert buckets["0.3"] == buckets["+Inf"] == 6
    assert {"model_name", "engine"} <= set(fam["vllm:request_inference_time_seconds"][1][0])


def test_dcgm_and_cadvisor_labels() -> None:
    """dcgm-exporter series carry the GPU user's pod/namespace/container; cAdvisor has per-container CPU."""
    clock = FakeClock()
    node = NodeExporters("gpu-node-a")
    a = make_pod(clock=clock)
    b = SimPod(namespace="inference", name="other-1", deployment="other", container="vllm", uid="u2", clock=clock)
    b.gpu_index = 1
    node.pods = {("inference", a.name): a, ("inference", b.name): b}
    for _ in range(4):
        a.submit()
    node.render_dcgm()
    clock.t += 0.02
    page = node.render_dcgm()
    fam = families(page)
    typ, labels = fam["DCGM_FI_DEV_GPU_UTIL"]
    assert typ == "gauge"
    assert {(lab["pod"], lab["namespace"], lab["container"], lab["gpu"]) for lab in labels} == {
        (a.name, "inference", "triton", "0"), ("other-1", "inference", "vllm", "1")}
    assert {"UUID", "modelName", "Hostname", "device", "pci_bus_id"} <= set(labels[0])
    assert max(s.value for f in text_string_to_metric_families(page) if f.name == "DCGM_FI_DEV_GPU_UTIL"
               for s in f.samples) == 100
    cad = families(node.render_cadvisor())
    typ, labels = cad["container_cpu_usage_seconds"]
    assert typ == "counter"
    assert {lab["container"] for lab in labels} == {"triton", "vllm", ""}  # plus the pod-level cgroup series
    assert all(lab["cpu"] == "total" for lab in labels)


async def test_metrics_server_one_port_per_pod() -> None:
    """Every pod answers on its own loopback port; NIM also on /v1/metrics; closed ports refuse."""
    server = MetricsServer()
    pods = [make_pod(), make_pod(kind="nim")]
    node = NodeExporters("n1")
    try:
        ports = [await server.open(pod_page(p)) for p in pods]
        dcgm = await server.open(node_dcgm_page(node))
        kubelet = await server.open(node_kubelet_page(node))
        assert len({*ports, dcgm, kubelet}) == 4
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{ports[0]}/metrics") as r:
                assert r.status == 200 and "nv_inference_request_success" in await r.text()
                assert r.headers["Content-Type"].startswith("text/plain")
            async with s.get(f"http://127.0.0.1:{ports[1]}/v1/metrics") as r:
                assert r.status == 200 and "vllm:kv_cache_usage_perc" in await r.text()
            async with s.get(f"http://127.0.0.1:{ports[0]}/v1/metrics") as r:
                assert r.status == 404
            async with s.get(f"http://127.0.0.1:{kubelet}/metrics/cadvisor") as r:
                assert r.status == 200
            await server.close(ports[0])
            with pytest.raises(aiohttp.ClientConnectionError):
                async with s.get(f"http://127.0.0.1:{ports[0]}/metrics") as r:
                    pass
    finally:
        await server.stop()


async def test_hundreds_of_pods_are_cheap() -> None:
    """300 pod endpoints open, answer and close in a few seconds on one event loop."""
    server = MetricsServer()
    t0 = time.perf_counter()
    try:
        pods = [SimPod(namespace="ns", name=f"p-{i}", deployment="d", uid=f"u{i}") for i in range(300)]
        ports = [await server.open(pod_page(p)) for p in pods]
        async with aiohttp.ClientSession() as s:
            for port in ports[::10]:
                async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert r.status == 200
        for port in ports:
            await server.close(port)
    finally:
        await server.stop()
    assert time.perf_counter() - t0 < 10
