"""Simulated inference pods: a :class:`~autoscaler.serving.Replica` each, with realistic ``/metrics``.

Every Running pod gets its own loopback port (as a real pod has its own IP) serving the exposition
format Prometheus scrapes, with the names, types, units and labels of the real exporters
(``/work/shared/reference/metrics.md``):

* kind ``triton``: Triton's per-model counters and pending gauge (``model``, ``version`` and, for the
  instance reporter, ``gpu_uuid``), GPU gauges (``gpu_uuid`` only) and CPU gauges (no labels), on
  ``/metrics`` (Triton's metrics port).
* kind ``nim``: the vLLM engine metrics (``vllm:*`` with ``model_name`` and ``engine``) plus the
  un-prefixed NIM names, on ``/v1/metrics`` (NIM's path; ``/metrics`` answers too). Its histograms (queue and
  inference time per request) are observed when a request finishes, as vLLM does.
* kind ``vllm``: a plain ``vllm serve``: the same ``vllm:*`` metrics, without the NIM names, on ``/metrics``.
* kind ``nim-legacy``: an older NIM: the un-prefixed NIM names only (no ``vllm:*``, so no time histograms), on
  ``/v1/metrics``.

Node-level exporters are separate targets, one of each per node (``spec.nodeName``, default
``sandbox-node``), as a DaemonSet would be:

* a **dcgm-exporter** (``DCGM_FI_DEV_GPU_UTIL`` 0-100 and friends, one GPU per pod) whose series carry
  the Kubernetes mapping labels ``pod``/``namespace``/``container`` of the GPU's user. The sandbox
  scrapes it with ``honor_labels: false`` as the Helm chart's ServiceMonitor does, so those arrive as
  ``exported_pod``/``exported_namespace``/``exported_container`` while ``pod``/``namespace`` name the
  exporter.
* a **kubelet** cAdvisor endpoint (``/metrics/cadvisor``) with ``container_cpu_usage_seconds_total``
  per container (and the pod-level ``container=""`` series that real cAdvisor also writes), scraped
  with ``honor_labels: true`` as kube-prometheus-stack does.

All endpoints share one aiohttp application and runner on the process's event loop; a pod costs one
listening socket and a few objects, so hundreds are cheap. Metrics are rendered only when scraped.
"""

from __future__ import annotations

import hashlib
import heapq
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from autoscaler.serving import Admission, Replica, ServingConfig

Clock = Callable[[], float]

GPU_MODEL_NAME = "NVIDIA H100 80GB HBM3"
GPU_MEMORY_TOTAL_BYTES = 85520809984
DEFAULT_NODE = "sandbox-node"
SERVING_KINDS = ("triton", "nim", "vllm", "nim-legacy")
NIM_KINDS = ("nim", "nim-legacy")  # serve on NIM's /v1/metrics


def gpu_uuid_for(key: str) -> str:
    """A stable, realistic-looking GPU UUID derived from ``key`` (e.g. the pod uid)."""
    h = hashlib.sha1(key.encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    if not kv:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}"


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


class _Exposition:
    """Minimal text-format writer (HELP/TYPE once per family)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, typ: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {typ}")

    def sample(self, name: str, labels: str, value: float) -> None:
        self.lines.append(f"{name}{labels} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _UtilWindow:
    """Utilisation over the last ``window_s`` from samples of a cumulative busy integral."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, float]] = deque()

    def read(self, t: float, cum: float) -> tuple[float, float]:
        """Returns (elapsed, delta) over about the last window (at least ``window_s`` when history allows)."""
        self.samples.append((t, cum))
        while len(self.samples) > 2 and self.samples[1][0] <= t - self.window_s:
            self.samples.popleft()
        t0, c0 = self.samples[0]
        return t - t0, cum - c0


QUEUE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INFERENCE_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                       240.0, 480.0, 960.0, 1920.0, 7680.0)  # vLLM's request-latency buckets


class _Histogram:
    """A Prometheus histogram of seconds: cumulative bucket counts, sum and count."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.count += 1
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def render(self, e: _Exposition, name: str, help_text: str, **labels: str) -> None:
        e.family(name, "histogram", help_text)
        for b, n in zip(self.buckets, self.counts, strict=True):
            e.sample(f"{name}_bucket", _labels(**labels, le=repr(float(b))), n)
        e.sample(f"{name}_bucket", _labels(**labels, le="+Inf"), self.count)
        e.sample(f"{name}_sum", _labels(**labels), round(self.sum, 6))
        e.sample(f"{name}_count", _labels(**labels), self.count)


@dataclass
class SimPod:
    """One simulated inference pod: identity, serving replica, lifecycle flags and exposition."""

    namespace: str
    name: str
    deployment: str
    container: str = "triton"
    kind: str = "triton"
    uid: str = ""
    node: str = DEFAULT_NODE
    labels: dict[str, str] = field(default_factory=dict)
    serving: ServingConfig = field(default_factory=ServingConfig)
    cpu_request_cores: float = 1.0
    model: str = ""
    clock: Clock = time.monotonic
    seed: int = 0
    port: int = 0
    ready: bool = False
    terminating: bool = False
    started_at: float = 0.0

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.replica = Replica(self.serving, seed=self.seed, start_time=0.0)
        self.model = self.model or self.serving.model or self.deployment
        self.gpu_uuid = gpu_uuid_for(self.uid or f"{self.namespace}/{self.name}")
        self.gpu_index = 0
        self._cpu_seconds = 0.0
        self._cpu_t = 0.0
        self._util_triton = _UtilWindow(1.0)
        self._util_dcgm = _UtilWindow(1.0)
        self._energy_j = 0.0
        self._energy_t = 0.0
        self.queue_time = _Histogram(QUEUE_BUCKETS_S)
        self.inference_time = _Histogram(INFERENCE_BUCKETS_S)
        self._unfinished: list[tuple[float, float, float]] = []  # (finish, queue s, inference s), a heap

    # -- time and traffic --------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the pod started (the replica's clock)."""
        return self.clock() - self.started_at

    def to_pod_time(self, wall: float) -> float:
        return wall - self.started_at

    def to_wall(self, pod_t: float) -> float:
        return pod_t + self.started_at

    @property
    def accepting(self) -> bool:
        return self.ready and not self.terminating

    def submit(self, at_wall: float | None = None, prompt_tokens: float | None = None,
               output_tokens: float | None = None) -> Admission:
        """One request reaches this pod at wall time ``at_wall`` (default now)."""
        t = self.now() if at_wall is None else self.to_pod_time(at_wall)
        adm = self.replica.arrive(t, prompt_tokens, output_tokens)
        if adm.accepted and self.kind != "triton":
            heapq.heappush(self._unfinished, (adm.finish, adm.queue_seconds, adm.finish - adm.start))
        return adm

    def terminate(self) -> None:
        self.terminating = True
        self.ready = False
        self.replica.drain()

    def sync(self) -> float:
        """Advance the replica to now; returns the pod time."""
        t = self.now()
        self.replica.advance_to(t)
        while self._unfinished and self._unfinished[0][0] <= t:
            _, queue_s, inference_s = heapq.heappop(self._unfinished)
            self.queue_time.observe(queue_s)
            self.inference_time.observe(inference_s)
        return t

    @property
    def drained(self) -> bool:
        self.sync()
        return self.replica.idle

    # -- derived gauges ----------------------------------------------------------------------------

    def _gpu_util(self, window: _UtilWindow, t: float) -> float:
        elapsed, busy = window.read(t, self.replica.busy_slot_seconds)
        if elapsed <= 0:
            return 1.0 if self.replica.running else 0.0
        return max(0.0, min(1.0, busy / (self.serving.slots * elapsed)))

    def _cpu_usage(self, t: float) -> float:
        """Cumulative CPU-seconds: 5 % of a core idle plus up to 60 % of the request when busy."""
        dt = t - self._cpu_t
        if dt > 0:
            busy = self.replica.running / self.serving.slots
            cores = 0.05 + 0.6 * self.cpu_request_cores * busy
            self._cpu_seconds += cores * dt
            self._cpu_t = t
        return self._cpu_seconds

    # -- expositions -------------------------------------------------------------------------------

    def render(self) -> str:
        t = self.sync()
        if self.kind == "triton":
            return self._render_triton(t)
        if self.kind == "nim-legacy":
            e = _Exposition()
            self._render_nim_names(e)
            self._gpu_util(self._util_triton, t)
            return e.text()
        return self._render_vllm(t)

    def _render_triton(self, t: float) -> str:
        r = self.replica
        c = r.counters
        e = _Exposition()
        base = {"model": self.model, "version": "1"}
        inst = _labels(gpu_uuid=self.gpu_uuid, **base)
        e.family("nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes")
        e.sample("nv_inference_request_success", inst, c.success)
        e.family("nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes")
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
            val = c.failure_rejected if reason == "REJECTED" else 0
            e.sample("nv_inference_request_failure", _labels(model=self.model, reason=reason, version="1"), val)
        e.family("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)")
        e.sample("nv_inference_count", inst, c.inference_count)
        e.family("nv_inference_exec_count", "counter",
                 "Number of model executions performed (does not include cached requests)")
        e.sample("nv_inference_exec_count", inst, c.exec_count)
        e.family("nv_inference_request_duration_us", "counter",
                 "Cumulative inference request duration in microseconds (includes cached requests)")
        e.sample("nv_inference_request_duration_us", inst, round(c.request_us))
        e.family("nv_inference_queue_duration_us", "counter",
                 "Cumulative inference queuing duration in microseconds (includes cached requests)")
        e.sample("nv_inference_queue_duration_us", inst, round(c.queue_us))
        e.family("nv_inference_compute_input_duration_us", "counter",
                 "Cumulative compute input duration in microseconds (does not include cached requests)")
        e.sample("nv_inference_compute_input_duration_us", inst, round(c.success * 50))
        e.family("nv_inference_compute_infer_duration_us", "counter",
                 "Cumulative compute inference duration in microseconds (does not include cached requests)")
        e.sample("nv_inference_compute_infer_duration_us", inst, round(c.compute_infer_us))
        e.family("nv_inference_compute_output_duration_us", "counter",
                 "Cumulative inference compute output duration in microseconds (does not include cached requests)")
        e.sample("nv_inference_compute_output_duration_us", inst, round(c.success * 30))
        e.family("nv_inference_pending_request_count", "gauge",
                 "Instantaneous number of pending requests awaiting execution per-model.")
        e.sample("nv_inference_pending_request_count", _labels(**base), r.pending)
        e.family("nv_model_load_duration_secs", "gauge", "Model load time in seconds")
        e.sample("nv_model_load_duration_secs", _labels(**base), 12.5)
        util = self._gpu_util(self._util_triton, t)
        gpu = _labels(gpu_uuid=self.gpu_uuid)
        power = 70.0 + 330.0 * util
        if t > self._energy_t:
            self._energy_j += power * (t - self._energy_t)
            self._energy_t = t
        e.family("nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)")
        e.sample("nv_gpu_utilization", gpu, round(util, 4))
        e.family("nv_gpu_memory_total_bytes", "gauge", "GPU total memory, in bytes")
        e.sample("nv_gpu_memory_total_bytes", gpu, GPU_MEMORY_TOTAL_BYTES)
        e.family("nv_gpu_memory_used_bytes", "gauge", "GPU used memory, in bytes")
        e.sample("nv_gpu_memory_used_bytes", gpu, 42949672960)
        e.family("nv_gpu_power_usage", "gauge", "GPU power usage in watts")
        e.sample("nv_gpu_power_usage", gpu, round(power, 3))
        e.family("nv_gpu_power_limit", "gauge", "GPU power management limit in watts")
        e.sample("nv_gpu_power_limit", gpu, 700)
        e.family("nv_energy_consumption", "counter", "GPU energy consumption in joules since the Triton Server started")
        e.sample("nv_energy_consumption", gpu, round(self._energy_j, 3))
        self._cpu_usage(t)
        e.family("nv_cpu_utilization", "gauge", "CPU utilization rate [0.0 - 1.0]")
        e.sample("nv_cpu_utilization", "", round(min(1.0, (0.05 + 0.6 * util * self.cpu_request_cores) / 16.0), 4))
        e.family("nv_cpu_memory_total_bytes", "gauge", "CPU total memory (RAM), in bytes")
        e.sample("nv_cpu_memory_total_bytes", "", 270582939648)
        e.family("nv_cpu_memory_used_bytes", "gauge", "CPU used memory (RAM), in bytes")
        e.sample("nv_cpu_memory_used_bytes", "", 34359738368)
        return e.text()

    def _render_vllm(self, t: float) -> str:
        r = self.replica
        c = r.counters
        e = _Exposition()
        lab = _labels(engine="0", model_name=self.model)
        e.family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.")
        e.sample("vllm:num_requests_running", lab, r.running)
        e.family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
        e.sample("vllm:num_requests_waiting", lab, r.pending)
        e.family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
        e.sample("vllm:kv_cache_usage_perc", lab, round(r.kv_usage, 6))
        e.family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.")
        e.sample("vllm:prompt_tokens_total", lab, c.prompt_tokens)
        e.family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.")
        e.sample("vllm:generation_tokens_total", lab, c.output_tokens)
        e.family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
        for reason in ("stop", "length", "abort"):
            val = c.success if reason == "stop" else 0
            e.sample("vllm:request_success_total", _labels(engine="0", finished_reason=reason, model_name=self.model),
                     val)
        self.queue_time.render(e, "vllm:request_queue_time_seconds",
                               "Histogram of time spent in WAITING phase for request.", engine="0",
                               model_name=self.model)
        self.inference_time.render(e, "vllm:request_inference_time_seconds",
                                   "Histogram of time spent in RUNNING phase for request.", engine="0",
                                   model_name=self.model)
        if self.kind == "nim":
            self._render_nim_names(e)
        self._gpu_util(self._util_triton, t)
        return e.text()

    def _render_nim_names(self, e: _Exposition) -> None:
        r = self.replica
        c = r.counters
        nim = _labels(model_name=self.model)
        e.family("num_requests_running", "gauge", "Number of requests currently running on GPU.")
        e.sample("num_requests_running", nim, r.running)
        e.family("num_requests_waiting", "gauge", "Number of requests waiting.")
        e.sample("num_requests_waiting", nim, r.pending)
        e.family("num_request_max", "gauge", "Max number of concurrently running requests.")
        e.sample("num_request_max", nim, self.serving.slots)
        e.family("gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.")
        e.sample("gpu_cache_usage_perc", nim, round(r.kv_usage, 6))
        e.family("request_success_total", "counter", "Number of successful requests.")
        e.sample("request_success_total", nim, c.success)
        e.family("request_failure_total", "counter", "Number of failed requests.")
        e.sample("request_failure_total", nim, c.failure_rejected)

    def dcgm_samples(self, node_labels: dict[str, str]) -> list[tuple[str, str, float]]:
        """(metric, labels, value) for this pod's GPU, as the node's dcgm-exporter shows them."""
        t = self.sync()
        util = self._gpu_util(self._util_dcgm, t)
        lab = _labels(gpu=str(self.gpu_index), UUID=self.gpu_uuid,
                      pci_bus_id=f"00000000:{0x18 + self.gpu_index:02X}:00.0", device=f"nvidia{self.gpu_index}",
                      modelName=GPU_MODEL_NAME, **node_labels, container=self.container, namespace=self.namespace,
                      pod=self.name)
        fb_used = 40960 if self.replica.running or self.ready else 512
        return [
            ("DCGM_FI_DEV_GPU_UTIL", lab, round(util * 100)),
            ("DCGM_FI_DEV_FB_USED", lab, fb_used),
            ("DCGM_FI_DEV_FB_FREE", lab, 81559 - fb_used),
            ("DCGM_FI_DEV_POWER_USAGE", lab, round(70.0 + 330.0 * util, 6)),
            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", lab, round(util, 6)),
        ]

    def cadvisor_samples(self) -> list[tuple[str, str, float]]:
        t = self.sync()
        cum = self._cpu_usage(t)
        pod_slice = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{self.uid.replace('-', '_')}.slice"
        ctr = _labels(container=self.container, cpu="total", id=f"{pod_slice}/cri-containerd-{self.uid[:12]}.scope",
                      image=f"sandbox.local/{self.kind}:sim", name=self.uid[:12], namespace=self.namespace,
                      pod=self.name)
        podl = _labels(container="", cpu="total", id=pod_slice, image="", name="", namespace=self.namespace,
                       pod=self.name)
        return [("container_cpu_usage_seconds_total", ctr, round(cum, 6)),
                ("container_cpu_usage_seconds_total", podl, round(cum + 0.01 * t, 6))]


DCGM_HELP = {
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gauge", "Ratio of time the graphics engine is active."),
}


@dataclass
class NodeExporters:
    """The per-node dcgm-exporter and kubelet cAdvisor endpoints (one port each)."""

    node: str
    dcgm_port: int = 0
    kubelet_port: int = 0
    pods: dict[tuple[str, str], SimPod] = field(default_factory=dict)

    @property
    def dcgm_pod(self) -> str:
        return "dcgm-exporter-" + hashlib.sha1(self.node.encode()).hexdigest()[:5]

    def next_gpu_index(self) -> int:
        used = {p.gpu_index for p in self.pods.values()}
        i = 0
        while i in used:
            i += 1
        return i

    def render_dcgm(self) -> str:
        rows: dict[str, list[tuple[str, float]]] = {k: [] for k in DCGM_HELP}
        node_labels = {"Hostname": self.node, "DCGM_FI_DRIVER_VERSION": "550.90.07"}
        for pod in sorted(self.pods.values(), key=lambda p: p.gpu_index):
            for name, lab, val in pod.dcgm_samples(node_labels):
                rows[name].append((lab, val))
        e = _Exposition()
        for name, (typ, help_text) in DCGM_HELP.items():
            e.family(name, typ, help_text)
            for lab, val in rows[name]:
                e.sample(name, lab, val)
        return e.text()

    def render_cadvisor(self) -> str:
        e = _Exposition()
        e.family("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.")
        for pod in self.pods.values():
            for name, lab, val in pod.cadvisor_samples():
                e.sample(name, lab, val)
        return e.text()


def _bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class MetricsServer:
    """One aiohttp application whose sites (one per pod / exporter, each on its own port) all share it.

    The handler tells the endpoints apart by the local port the request came in on.
    """

    def __init__(self) -> None:
        self._app = web.Application()
        self._app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        self._sites: dict[int, web.SockSite] = {}
        self._routes: dict[int, Callable[[str], str | None]] = {}
        self._serve: dict[int, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._runner.setup()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._runner.cleanup()
            self._sites.clear()
            self._routes.clear()
            self._serve.clear()
            self._started = False

    async def open(self, render: Callable[[str], str | None],
                   serve: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None) -> int:
        """Listen on a new loopback port; ``render(path)`` returns the page for a GET, or None; ``serve`` answers
        every other request (none: 404 for a GET ``render`` has no page for, 405 for another method)."""
        await self.start()
        sock = _bind_loopback()
        port: int = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        self._routes[port] = render
        if serve is not None:
            self._serve[port] = serve
        await site.start()
        self._sites[port] = site
        return port

    async def close(self, port: int) -> None:
        """Stop listening on ``port`` and drop its open (keep-alive) connections, as a deleted pod would."""
        self._routes.pop(port, None)
        self._serve.pop(port, None)
        site = self._sites.pop(port, None)
        if site is not None:
            await site.stop()
        server = self._runner.server
        for conn in list(server.connections) if server is not None else []:
            tr = conn.transport
            name: Any = tr.get_extra_info("sockname") if tr is not None else None
            if tr is not None and name and name[1] == port:
                conn.force_close()
                tr.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sockname: Any = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if sockname else -1
        render = self._routes.get(port)
        page = render(request.path) if render is not None and request.method in ("GET", "HEAD") else None
        if page is None:
            serve = self._serve.get(port)
            if serve is not None:
                return await serve(request)
            if request.method not in ("GET", "HEAD"):
                raise web.HTTPMethodNotAllowed(request.method, ["GET"])
            raise web.HTTPNotFound()
        return web.Response(text=page, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})


def pod_page(pod: SimPod) -> Callable[[str], str | None]:
    def render(path: str) -> str | None:
        if path == "/metrics" or (pod.kind in NIM_KINDS and path == "/v1/metrics"):
            return pod.render()
        return None

    return render


def node_dcgm_page(node: NodeExporters) -> Callable[[str], str | None]:
    def render(path: str) -> str | None:
        return node.render_dcgm() if path == "/metrics" else None

    return render


def node_kubelet_page(node: NodeExporters) -> Callable[[str], str | None]:
    def render(path: str) -> str | None:
        return node.render_cadvisor() if path == "/metrics/cadvisor" else None

    return render
