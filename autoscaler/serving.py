"""The serving model of one inference replica (Triton / NIM), shared by the live sandbox and the replay.

Pure: numpy only, no clocks and no I/O (``python -m autoscaler.tools.check_layers`` enforces it).
Time always comes in as an argument, in seconds since an arbitrary origin.

The replica
-----------
A replica has ``concurrency = instances x max_batch_size`` execution slots. A request waits in one
FIFO queue per replica until a slot is free, then holds that slot for its service time::

    service_s = (service_time_ms                                   # no token counts known
                 or base_ms + prefill_ms_per_token * prompt + decode_ms_per_token * output) / 1000

Slots are independent (continuous / in-flight batching, as vLLM, TRT-LLM and Triton's dynamic batcher
with a short queue delay behave): a request may join an instance that is already executing when the
instance still has a free batch slot. Requests that start at the same instant on the same instance
form one execution (``nv_inference_exec_count``), so ``count / exec_count`` is the mean batch size.
An optional ``max_queue`` rejects arrivals beyond it (Triton's ``max_queue_size``: failure reason
``REJECTED``). A draining replica (its pod is terminating) accepts nothing new and finishes what it
holds (graceful termination).

The same replica in two forms
-----------------------------
* :class:`Replica`: exact discrete-event simulation, request by request. Used per pod by the live
  sandbox (``advance_to(t)`` on the wall clock, ``arrive(t, ...)`` per request). FIFO with identical
  slots means a request's start time is fixed when it arrives (later arrivals never overtake it), so
  each arrival is assigned its slot, start and finish at once: closed-loop clients learn their
  completion time immediately, and the per-request queue time is exact.
* :class:`FleetState`: R replicas as numpy arrays, stepped in fixed steps of ``dt`` (1 s in the
  replay) with per-replica arrival *counts*. A 7-day trace has ~1e8 requests, far too many to
  simulate one by one, so this is an aggregate model with two parts:

  1. a **fluid backlog** ``q`` (Lindley recursion ``q' = max(0, q + a - cap)``, ``cap = c * dt / s``)
     that carries overload, bursts and drain from step to step; vectorised over time as well as
     replicas in :meth:`FleetState.run`, which is how a week of 1 s steps takes seconds;
  2. the **stationary queueing** of Poisson arrivals inside a step at the utilisation ``rho`` of the
     step (``rho`` clipped to ``rho_max`` = 0.98), from the Allen-Cunneen approximation of G/G/c::

        Wq = ErlangC(c, rho) / (c*mu - lambda) * (ca2 + cs2) / 2,   mu = 1 / s
        P(Wq > T) = ErlangC(c, rho) * exp(-(c*mu - lambda) * T * 2 / (ca2 + cs2))

     with ``ca2`` the squared coefficient of variation of inter-arrival times (1 = Poisson) and
     ``cs2`` that of service times (0 = constant). It is exact for M/M/c and M/D/1 and within ~10 %
     for M/D/c. ``lambda`` is an exponentially smoothed rate (``rate_smoothing_s``): a queue needs
     time to build, so one busy second does not produce the full steady-state wait at once, and a
     noisy per-step count does not inflate the wait through the convexity of ``Wq(rho)``.

  A request's queue time is the larger of its stationary wait and the fluid backlog ahead of it
  divided by the service rate ``c * mu`` (the two describe the same queue: a per-step count above
  capacity is partly the Poisson noise the stationary term already holds, so adding them would count
  it twice). :attr:`StepResult.slo_violations` is the expected number of arrivals of the step whose
  queue time exceeds ``slo_target_us``: all of those arriving while the fluid wait exceeds the target
  (the backlog is linear inside a step, so the part of the step above the target is exact), and
  ``P(Wq > T)`` of the others. ``queue_time_us`` is the queue time *accrued* in the step (the
  larger of the backlog's integral and the stationary wait of the step's arrivals), which is what
  ``rate(nv_inference_queue_duration_us)`` measures over a window.

  Accuracy against :class:`Replica` with Poisson arrivals (checked in ``tests/sandbox/test_serving.py``):
  the fraction of requests over a 10 ms target agrees within 0.05 and the mean queue time within ~30 %
  up to rho = 0.85; above that the fleet overestimates the mean (up to ~1.5x at rho = 0.93: the
  smoothed rate is still noisy where ``Wq(rho)`` is steep), i.e. it errs on the side of more SLO
  violations.

Conservation holds exactly in both forms: ``arrived = served + queued + dropped`` (the fleet's
counts are fluid, i.e. floats). ``pending`` (the ``nv_inference_pending_request_count`` gauge) is
the fluid backlog plus the stationary mean queue length ``lambda * Wq``; the latter is counted as
served in its step and is not part of ``queued``.

Use in a replay (sketch)::

    fleet = FleetState(ServingConfig.from_annotation(serving_json), replicas=0, slo_target_us=10000)
    rows = fleet.add(2)                                   # pods created (route nothing until Ready)
    per_replica = split_evenly(counts[t0:t1], n_ready)    # [T, n_ready] from the trace's per-step counts
    res = fleet.run(arrivals_matrix, dt=1.0)              # [T, R] results; fleet.counters are Triton's counters
    violations += res.slo_violations.sum(); served += res.served.sum()
    fleet.remove(rows_of_drained_pods)                    # once fleet.idle[row] after scale-down

Other outputs
-------------
* ``busy`` (``nv_gpu_utilization``, 0-1) is the fraction of slot-time in use. Real DCGM utilisation
  is the fraction of time *any* kernel runs, which saturates earlier with several instances; we take
  the GPU as proportionally busy.
* ``kv_usage`` (``vllm:kv_cache_usage_perc``) is the prompt + output tokens of the running requests
  over ``kv_cache_tokens``; a request holds its whole allocation while it runs. Set, ``kv_cache_tokens`` also
  limits what a :class:`Replica` runs at once (first come, first served), as vLLM's scheduler does.
* Without token counts a request is taken to have ``default_prompt_tokens`` / ``default_output_tokens``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RHO_MAX = 0.98


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------

_ANNOTATION_KEYS = {
    # camelCase annotation key -> field name
    "concurrency": "concurrency",
    "instances": "instances",
    "maxBatchSize": "max_batch_size",
    "serviceTimeMs": "service_time_ms",
    "baseMs": "base_ms",
    "prefillMsPerToken": "prefill_ms_per_token",
    "decodeMsPerToken": "decode_ms_per_token",
    "serviceTimeCv": "service_time_cv",
    "arrivalCv2": "arrival_cv2",
    "maxQueue": "max_queue",
    "kvCacheTokens": "kv_cache_tokens",
    "defaultPromptTokens": "default_prompt_tokens",
    "defaultOutputTokens": "default_output_tokens",
    "rateSmoothingS": "rate_smoothing_s",
    "model": "model",
}


@dataclass(frozen=True)
class ServingConfig:
    """How one replica serves. Build it from the pod annotation with :meth:`from_annotation`."""

    concurrency: int = 4
    """Execution slots (instances x max batch size). Ignored when ``instances`` is set."""
    instances: int | None = None
    max_batch_size: int = 1
    service_time_ms: float = 40.0
    """Service time when the requests carry no token counts (or token costs are all zero)."""
    base_ms: float = 0.0
    prefill_ms_per_token: float = 0.0
    decode_ms_per_token: float = 0.0
    service_time_cv: float = 0.0
    """Coefficient of variation of the constant service time (gamma-distributed in :class:`Replica`)."""
    arrival_cv2: float = 1.0
    """Squared CV of inter-arrival times inside a step, for the fleet's stationary term (1 = Poisson)."""
    max_queue: int | None = None
    kv_cache_tokens: float | None = None
    """KV-cache capacity in tokens. Set, it also limits what runs at once in :class:`Replica` (the live sandbox):
    a request starts only once its prompt and output tokens fit beside those of the requests running (vLLM's
    scheduler, first come first served: the head of the queue waits for room, and those behind it wait too), so a
    replica whose requests are long runs fewer than its slots. Unset, only the KV-cache gauge uses a capacity,
    ``slots * (default_prompt_tokens + default_output_tokens) * 1.25``. The replay's fleet model does not limit
    its batch by it."""
    default_prompt_tokens: float = 512.0
    default_output_tokens: float = 128.0
    rate_smoothing_s: float = 5.0
    model: str | None = None
    """Model name reported in metric labels (default: chosen by the caller, e.g. the deployment name)."""

    def __post_init__(self) -> None:
        errors = []
        if self.instances is not None and self.instances < 1:
            errors.append(f"instances must be >= 1, got {self.instances}")
        if self.max_batch_size < 1:
            errors.append(f"maxBatchSize must be >= 1, got {self.max_batch_size}")
        if self.instances is None and self.concurrency < 1:
            errors.append(f"concurrency must be >= 1, got {self.concurrency}")
        for name in ("service_time_ms", "base_ms", "prefill_ms_per_token", "decode_ms_per_token",
                     "service_time_cv", "arrival_cv2", "rate_smoothing_s"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.service_time_ms <= 0 and not self.uses_tokens:
            errors.append("serviceTimeMs must be > 0 when no per-token costs are given")
        if self.max_queue is not None and self.max_queue < 0:
            errors.append(f"maxQueue must be >= 0, got {self.max_queue}")
        if errors:
            raise ValueError("invalid serving config: " + "; ".join(errors))

    @property
    def slots(self) -> int:
        """Requests that execute at once."""
        if self.instances is not None:
            return self.instances * self.max_batch_size
        return self.concurrency

    @property
    def n_instances(self) -> int:
        return self.instances if self.instances is not None else max(1, self.concurrency // self.max_batch_size)

    @property
    def uses_tokens(self) -> bool:
        return self.prefill_ms_per_token > 0 or self.decode_ms_per_token > 0

    @property
    def kv_capacity_tokens(self) -> float:
        if self.kv_cache_tokens is not None:
            return float(self.kv_cache_tokens)
        return self.slots * (self.default_prompt_tokens + self.default_output_tokens) * 1.25

    def service_seconds(self, prompt_tokens: float | None = None, output_tokens: float | None = None) -> float:
        """Service time of one request in seconds (mean, before any jitter)."""
        if not self.uses_tokens:
            return self.service_time_ms / 1000.0
        p = self.default_prompt_tokens if prompt_tokens is None else prompt_tokens
        o = self.default_output_tokens if output_tokens is None else output_tokens
        return max(1e-6, (self.base_ms + self.prefill_ms_per_token * p + self.decode_ms_per_token * o) / 1000.0)

    @classmethod
    def from_annotation(cls, value: str | Mapping[str, Any] | None) -> ServingConfig:
        """Parse ``sandbox.inference-autoscaler.io/serving`` (JSON object, camelCase or snake_case keys)."""
        import json

        if value is None or value == "":
            return cls()
        data = json.loads(value) if isinstance(value, str) else dict(value)
        if not isinstance(data, dict):
            raise ValueError(f"serving annotation must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        unknown = []
        for key, val in data.items():
            name = _ANNOTATION_KEYS.get(key, key if key in names else None)
            if name is None:
                unknown.append(key)
            else:
                kwargs[name] = val
        if unknown:
            raise ValueError(f"unknown serving keys {sorted(unknown)}; known: {sorted(_ANNOTATION_KEYS)}")
        if "concurrency" in kwargs and "instances" not in kwargs and "max_batch_size" in kwargs:
            kwargs["instances"] = max(1, int(kwargs["concurrency"]) // int(kwargs["max_batch_size"]))
        return cls(**kwargs)


# --------------------------------------------------------------------------------------------------
# the exact per-request replica (live sandbox)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """What happened to one arrival."""

    accepted: bool
    arrival: float
    start: float = math.nan
    finish: float = math.nan

    @property
    def queue_seconds(self) -> float:
        return self.start - self.arrival

    @property
    def latency_seconds(self) -> float:
        return self.finish - self.arrival


@dataclass
class _Req:
    arrival: float
    start: float
    finish: float
    tokens: float
    prompt: float
    output: float
    opens_exec: bool


@dataclass
class ReplicaCounters:
    """Cumulative counters, updated as each request finishes (as Triton does)."""

    success: int = 0
    failure_rejected: int = 0
    inference_count: int = 0
    exec_count: int = 0
    queue_us: float = 0.0
    compute_infer_us: float = 0.0
    request_us: float = 0.0
    prompt_tokens: float = 0.0
    output_tokens: float = 0.0


class Replica:
    """One replica, simulated request by request. Not thread-safe; time never goes backwards.

    ``arrive(t)`` with ``t`` earlier than the replica's clock is treated as arriving at the clock.
    """

    def __init__(self, config: ServingConfig, *, seed: int = 0, start_time: float = 0.0) -> None:
        self.config = config
        self.now = start_time
        self.draining = False
        self.counters = ReplicaCounters()
        self._rng = np.random.default_rng(seed)
        self._slots: list[tuple[float, int]] = [(start_time, i) for i in range(config.slots)]
        self._batch_start = [-math.inf] * config.n_instances
        self._batch_size = [0] * config.n_instances
        self._waiting: list[tuple[float, int, _Req]] = []  # heap by start
        self._running: list[tuple[float, int, _Req]] = []  # heap by finish
        self._seq = 0
        self._n_running = 0
        self._running_start_sum = 0.0
        self._running_tokens = 0.0
        self._busy_done = 0.0  # slot-seconds of finished requests
        self._last_tail = start_time  # finish time of the last request assigned
        self._last_start = start_time  # start time of the last request assigned
        self._inflight_tokens = 0.0  # KV-cache tokens of the requests running or waiting

    # -- inputs ------------------------------------------------------------------------------------

    def service_seconds(self, prompt_tokens: float | None, output_tokens: float | None) -> float:
        s = self.config.service_seconds(prompt_tokens, output_tokens)
        cv = self.config.service_time_cv
        if cv > 0:
            shape = 1.0 / (cv * cv)
            s = float(self._rng.gamma(shape, s / shape))
        return s

    def arrive(self, t: float, prompt_tokens: float | None = None, output_tokens: float | None = None,
               service_s: float | None = None) -> Admission:
        """A request arrives at time ``t``: FIFO, so its slot, start and finish are fixed now."""
        self.advance_to(t)
        t = self.now
        if self.draining or (self.config.max_queue is not None and self.pending >= self.config.max_queue):
            self.counters.failure_rejected += 1
            return Admission(False, t)
        s = self.service_seconds(prompt_tokens, output_tokens) if service_s is None else service_s
        p = self.config.default_prompt_tokens if prompt_tokens is None else float(prompt_tokens)
        o = self.config.default_output_tokens if output_tokens is None else float(output_tokens)
        free_at, slot = self._slots[0]
        start = max(t, free_at, self._last_start)  # FIFO: a request never starts before one that came earlier
        if self.config.kv_cache_tokens is not None and self._inflight_tokens + p + o > self.config.kv_cache_tokens:
            start = self._kv_start(start, p + o, self.config.kv_cache_tokens)
        finish = start + s
        heapq.heapreplace(self._slots, (finish, slot))
        inst = slot // self.config.max_batch_size
        if self._batch_start[inst] == start and self._batch_size[inst] < self.config.max_batch_size:
            self._batch_size[inst] += 1
            opens = False
        else:
            self._batch_start[inst] = start
            self._batch_size[inst] = 1
            opens = True
        req = _Req(t, start, finish, p + o, p, o, opens)
        self._seq += 1
        heapq.heappush(self._waiting, (start, self._seq, req))
        self._last_tail = max(self._last_tail, finish)
        self._last_start = start
        self._inflight_tokens += p + o
        self.advance_to(t)  # a request that starts at once is running at once
        return Admission(True, t, start, finish)

    def _kv_start(self, earliest: float, tokens: float, capacity: float) -> float:
        """When a request of ``tokens`` fits in the KV cache beside the requests admitted before it, from
        ``earliest`` on (they all start by then: FIFO). Their usage only falls after that, one finish at a time; a
        request larger than the whole cache runs alone."""
        ahead = sorted((r.finish, r.tokens) for _, _, r in (*self._running, *self._waiting) if r.finish > earliest)
        used = sum(tok for _, tok in ahead)
        start = earliest
        for finish, tok in ahead:
            if used + tokens <= capacity:
                break
            used -= tok
            start = finish
        return start

    def advance_to(self, t: float) -> None:
        """Move the clock to ``t``: start and finish whatever is due by then."""
        if t < self.now:
            return
        self.now = t
        while self._waiting and self._waiting[0][0] <= t:
            start, seq, req = heapq.heappop(self._waiting)
            heapq.heappush(self._running, (req.finish, seq, req))
            self._n_running += 1
            self._running_start_sum += start
            self._running_tokens += req.tokens
        c = self.counters
        while self._running and self._running[0][0] <= t:
            _, _, req = heapq.heappop(self._running)
            self._n_running -= 1
            self._running_start_sum -= req.start
            self._running_tokens -= req.tokens
            self._inflight_tokens -= req.tokens
            compute = req.finish - req.start
            self._busy_done += compute
            c.success += 1
            c.inference_count += 1
            c.exec_count += 1 if req.opens_exec else 0
            c.queue_us += (req.start - req.arrival) * 1e6
            c.compute_infer_us += compute * 1e6
            c.request_us += (req.finish - req.arrival) * 1e6
            c.prompt_tokens += req.prompt
            c.output_tokens += req.output
        if not self._running:
            self._running_start_sum = 0.0  # avoid drift
            self._running_tokens = 0.0
            if not self._waiting:
                self._inflight_tokens = 0.0

    def drain(self) -> None:
        """Stop accepting arrivals; what is queued or running still completes."""
        self.draining = True

    # -- outputs -----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests waiting for a slot (``nv_inference_pending_request_count``)."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._n_running

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._running

    @property
    def drained_at(self) -> float:
        """When the last accepted request finishes (the replica is idle from then on)."""
        return self._last_tail

    @property
    def busy_slot_seconds(self) -> float:
        """Cumulative slot-seconds in use up to ``now`` (integrate to get utilisation)."""
        return self._busy_done + self._n_running * self.now - self._running_start_sum

    @property
    def kv_usage(self) -> float:
        return min(1.0, self._running_tokens / self.config.kv_capacity_tokens)


# --------------------------------------------------------------------------------------------------
# the vectorised fleet (replay)
# --------------------------------------------------------------------------------------------------


def erlang_c(c: int, rho: FloatArray | float) -> FloatArray:
    """Probability that an arrival waits in M/M/c at utilisation ``rho`` (< 1), vectorised in rho."""
    r = np.clip(np.asarray(rho, dtype=np.float64), 0.0, RHO_MAX)
    a = r * c  # offered load in Erlangs
    b = np.ones_like(a)  # Erlang B by the stable recursion B(n) = a B(n-1) / (n + a B(n-1))
    for n in range(1, c + 1):
        b = a * b / (n + a * b)
    out: FloatArray = b / (1.0 - r * (1.0 - b))
    return out


@dataclass
class StepResult:
    """Per-replica results of one step (shape ``[R]``) or of :meth:`FleetState.run` (shape ``[T, R]``)."""

    arrived: FloatArray
    served: FloatArray
    queued: FloatArray
    """Fluid backlog at the end of the step (requests)."""
    dropped: FloatArray
    queue_time_us: FloatArray
    """Queue time accrued in the step, in µs (increment of ``nv_inference_queue_duration_us``)."""
    compute_us: FloatArray
    request_us: FloatArray
    busy: FloatArray
    """Fraction of slot-time in use, 0-1 (``nv_gpu_utilization``)."""
    pending: FloatArray
    """Mean queue length in the step: fluid backlog + stationary ``lambda * Wq``."""
    running: FloatArray
    kv_usage: FloatArray
    slo_violations: FloatArray
    """Expected arrivals of the step whose queue time exceeds ``slo_target_us`` (0 if it is None)."""
    executions: FloatArray
    mean_queue_time_us: FloatArray
    """Expected queue time of an arrival of the step (stationary + fluid), µs."""


_CUMULATIVE = ("success", "inference_count", "exec_count", "queue_us", "compute_infer_us", "request_us",
               "failure_rejected")
_RESULT_FIELDS = tuple(f.name for f in fields(StepResult))


@dataclass
class FleetState:
    """R replicas of one configuration as numpy arrays, stepped with per-replica arrival counts.

    Rows are positions: :meth:`add` appends fresh replicas, :meth:`remove` deletes rows (the caller
    keeps its own mapping from pods to rows). A replica that must drain simply gets no arrivals;
    :attr:`idle` tells when it has nothing left. Deterministic: no randomness inside.
    """

    config: ServingConfig
    replicas: int = 0
    slo_target_us: float | None = None
    queue: FloatArray = field(init=False)
    rate: FloatArray = field(init=False)
    svc: FloatArray = field(init=False)
    tokens: FloatArray = field(init=False)
    counters: dict[str, FloatArray] = field(init=False)

    def __post_init__(self) -> None:
        n = self.replicas
        cfg = self.config
        self.queue = np.zeros(n)
        self.rate = np.zeros(n)  # smoothed arrival rate (req/s) for the stationary term
        self.svc = np.full(n, cfg.service_seconds())  # service time of the last requests seen
        self.tokens = np.full(n, cfg.default_prompt_tokens + cfg.default_output_tokens)
        self.counters = {k: np.zeros(n) for k in _CUMULATIVE}
        self._grid_n = 4096
        self._erlang_grid = erlang_c(cfg.slots, np.linspace(0.0, RHO_MAX, self._grid_n + 1))
        self._k = (cfg.arrival_cv2 + cfg.service_time_cv**2) / 2.0
        self._alpha = 1.0 if cfg.rate_smoothing_s <= 0 else -math.expm1(-1.0 / cfg.rate_smoothing_s)

    # -- membership --------------------------------------------------------------------------------

    def add(self, n: int = 1) -> npt.NDArray[np.int64]:
        """Append ``n`` idle replicas; returns their row indices."""
        first = self.replicas
        cfg = self.config
        self.queue = np.concatenate([self.queue, np.zeros(n)])
        self.rate = np.concatenate([self.rate, np.zeros(n)])
        self.svc = np.concatenate([self.svc, np.full(n, cfg.service_seconds())])
        self.tokens = np.concatenate([self.tokens, np.full(n, cfg.default_prompt_tokens + cfg.default_output_tokens)])
        for k in _CUMULATIVE:
            self.counters[k] = np.concatenate([self.counters[k], np.zeros(n)])
        self.replicas += n
        return np.arange(first, first + n, dtype=np.int64)

    def remove(self, rows: npt.ArrayLike) -> None:
        """Delete rows (e.g. pods that finished draining)."""
        idx = np.asarray(rows, dtype=np.int64)
        self.queue = np.delete(self.queue, idx)
        self.rate = np.delete(self.rate, idx)
        self.svc = np.delete(self.svc, idx)
        self.tokens = np.delete(self.tokens, idx)
        for k in _CUMULATIVE:
            self.counters[k] = np.delete(self.counters[k], idx)
        self.replicas = int(self.queue.shape[0])

    @property
    def idle(self) -> npt.NDArray[np.bool_]:
        """Replicas with no backlog (a draining replica may be deleted once idle)."""
        out: npt.NDArray[np.bool_] = self.queue <= 1e-9
        return out

    @property
    def capacity_rps(self) -> FloatArray:
        """Requests per second each replica serves at full load with its current service time."""
        out: FloatArray = self.config.slots / self.svc
        return out

    # -- stepping ----------------------------------------------------------------------------------

    def step(self, arrivals: npt.ArrayLike, dt: float = 1.0, prompt_tokens: npt.ArrayLike | None = None,
             output_tokens: npt.ArrayLike | None = None) -> StepResult:
        """Advance all replicas by ``dt`` seconds; ``arrivals[r]`` requests reached replica r in it.

        ``prompt_tokens`` / ``output_tokens`` are the *sums* over those arrivals (trace format).
        """
        a = self._check(np.asarray(arrivals, dtype=np.float64).reshape(1, -1))
        p = None if prompt_tokens is None else np.asarray(prompt_tokens, dtype=np.float64).reshape(1, -1)
        o = None if output_tokens is None else np.asarray(output_tokens, dtype=np.float64).reshape(1, -1)
        res = self._advance(a, dt, p, o)
        return StepResult(**{k: v[0] for k, v in res.items()})

    def run(self, arrivals: npt.ArrayLike, dt: float = 1.0, prompt_tokens: npt.ArrayLike | None = None,
            output_tokens: npt.ArrayLike | None = None) -> StepResult:
        """Advance by ``T`` steps of ``dt`` at once; ``arrivals`` has shape ``[T, R]``.

        Same result as ``T`` calls of :meth:`step` (vectorised over time: Lindley's recursion as a
        cumulative sum and a running minimum, the exponential smoothing as a scaled cumulative sum
        in chunks short enough to stay in floating-point range).
        """
        a_all = self._check(np.asarray(arrivals, dtype=np.float64))
        T, R = a_all.shape
        p_all = None if prompt_tokens is None else np.broadcast_to(np.asarray(prompt_tokens, np.float64), a_all.shape)
        o_all = None if output_tokens is None else np.broadcast_to(np.asarray(output_tokens, np.float64), a_all.shape)
        beta = 1.0 - self._alpha
        chunk = 4096 if beta <= 0 else int(max(8, min(4096, 250.0 / max(1e-9, -math.log10(beta)))))
        out = {k: np.empty((T, R)) for k in _RESULT_FIELDS}
        for lo in range(0, T, chunk):
            hi = min(T, lo + chunk)
            res = self._advance(a_all[lo:hi], dt, None if p_all is None else p_all[lo:hi],
                                None if o_all is None else o_all[lo:hi])
            for k, v in res.items():
                out[k][lo:hi] = v
        return StepResult(**out)

    def _check(self, a: FloatArray) -> FloatArray:
        if a.ndim != 2 or a.shape[1] != self.replicas:
            raise ValueError(f"arrivals must have shape [T, {self.replicas}], got {a.shape}")
        if a.size and a.min() < 0:
            raise ValueError("arrivals must be >= 0")
        return a

    def _advance(self, a: FloatArray, dt: float, p: FloatArray | None, o: FloatArray | None) -> dict[str, FloatArray]:
        cfg = self.config
        c = cfg.slots
        # service time and tokens per request in each step: from the step's mean tokens when the
        # trace has them, else carried over from the last step that had arrivals
        if p is not None or o is not None:
            has = a > 0
            n = np.where(has, a, 1.0)
            pm = p / n if p is not None else cfg.default_prompt_tokens
            om = o / n if o is not None else cfg.default_output_tokens
            tok = _ffill(np.where(has, pm + om, np.nan), self.tokens)
            if cfg.uses_tokens:
                s_new = (cfg.base_ms + cfg.prefill_ms_per_token * pm + cfg.decode_ms_per_token * om) / 1000.0
                s = _ffill(np.where(has, np.maximum(s_new, 1e-6), np.nan), self.svc)
            else:
                s = self.svc[None, :]
        else:
            s = self.svc[None, :]
            tok = self.tokens[None, :]
        mu_c = c / s  # service rate of a full replica, req/s
        cap = mu_c * dt  # requests one replica can finish in a step

        # 1. fluid backlog: Lindley q_t = max(0, q_{t-1} + a_t - cap_t), with rejection above max_queue
        q0 = self.queue
        if cfg.max_queue is None and a.shape[0] == 1:
            q_end = np.maximum(q0 + (a - cap), 0.0)
            admitted = a
            dropped = np.zeros_like(a)
        elif cfg.max_queue is None:
            S = np.cumsum(a - cap, axis=0)
            # q_t = max(q0 + S_t, max_{j<=t} (S_t - S_j)) = S_t - min(-q0, min_{j<=t} S_j)
            q_end = S - np.minimum(-q0, np.minimum.accumulate(S, axis=0))
            admitted = a
            dropped = np.zeros_like(a)
        else:
            T = a.shape[0]
            capb = np.broadcast_to(cap, a.shape)
            q_end = np.empty_like(a)
            admitted = np.empty_like(a)
            q = q0.copy()
            for t in range(T):
                adm = np.clip(cfg.max_queue + capb[t] - q, 0.0, a[t])  # keeps the end-of-step queue <= max
                admitted[t] = adm
                q = np.maximum(q + adm - capb[t], 0.0)
                q_end[t] = q
            dropped = a - admitted
        q_start = np.concatenate([q0[None, :], q_end[:-1]])
        served = q_start + admitted - q_end

        # integral of the backlog over each step: q is linear in t until it hits 0
        slope = admitted - cap  # change over a whole step if the queue never empties
        with np.errstate(divide="ignore", invalid="ignore"):
            empties = q_start + slope < 0
            tau = np.where(empties, q_start / -slope, 1.0)  # fraction of the step until empty
        backlog_int = np.where(empties, q_start * tau * 0.5, (q_start + q_end) * 0.5) * dt  # request-seconds

        # 2. stationary queueing at the smoothed rate
        rate = _ewma(admitted / dt, self.rate, self._alpha)
        rho = np.minimum(rate / mu_c, RHO_MAX)
        x = rho * (self._grid_n / RHO_MAX)
        i = np.minimum(x.astype(np.int64), self._grid_n - 1)
        w = x - i
        g = self._erlang_grid
        ec = g[i] * (1.0 - w) + g[i + 1] * w  # Erlang C, linear interpolation on the grid
        gap = mu_c * (1.0 - rho)  # c*mu - lambda, 1/s
        w_stat = ec / gap * self._k  # mean stationary wait, s

        queue_s = np.maximum(backlog_int, admitted * w_stat)
        mean_wait = np.maximum(w_stat, backlog_int / dt / mu_c)
        if self.slo_target_us is not None:
            target = self.slo_target_us / 1e6
            p_stat = np.minimum(1.0, ec * np.exp(-gap / self._k * target))
            # exact fraction of the step in which the fluid wait q(t) / (c mu) exceeds the target
            h = target * mu_c
            with np.errstate(divide="ignore", invalid="ignore"):
                f_cross = np.clip((h - q_start) / slope, 0.0, 1.0)
            frac = np.where(slope > 0, 1.0 - f_cross, np.where(slope < 0, f_cross, q_start > h))
            viol = admitted * (frac + (1.0 - frac) * p_stat)
        else:
            viol = np.zeros_like(a)

        busy = np.minimum(1.0, served / cap)
        running = busy * c
        kv = np.minimum(1.0, running * tok / cfg.kv_capacity_tokens)
        compute_s = served * s
        execs = served / np.clip(running / cfg.n_instances, 1.0, cfg.max_batch_size)
        pending = np.maximum(backlog_int / dt, rate * w_stat)

        # carry state
        self.queue = q_end[-1].copy()
        self.rate = rate[-1].copy()
        self.svc = np.broadcast_to(s, a.shape)[-1].copy()
        self.tokens = np.broadcast_to(tok, a.shape)[-1].copy()
        cnt = self.counters
        served_sum = served.sum(axis=0)
        queue_us = queue_s * 1e6
        compute_us = np.broadcast_to(compute_s * 1e6, a.shape)
        cnt["success"] += served_sum
        cnt["inference_count"] += served_sum
        cnt["exec_count"] += execs.sum(axis=0)
        cnt["queue_us"] += queue_us.sum(axis=0)
        cnt["compute_infer_us"] += compute_us.sum(axis=0)
        cnt["request_us"] += queue_us.sum(axis=0) + compute_us.sum(axis=0)
        cnt["failure_rejected"] += dropped.sum(axis=0)
        return {
            "arrived": a, "served": served, "queued": q_end, "dropped": dropped, "queue_time_us": queue_us,
            "compute_us": compute_us, "request_us": queue_us + compute_us, "busy": busy, "pending": pending,
            "running": running, "kv_usage": np.broadcast_to(kv, a.shape), "slo_violations": viol,
            "executions": execs, "mean_queue_time_us": mean_wait * 1e6,
        }


def _ffill(x: FloatArray, first: FloatArray) -> FloatArray:
    """Forward-fill NaNs down axis 0, starting from ``first`` (shape [R])."""
    full = np.vstack([first[None, :], x])
    idx = np.where(np.isnan(full), 0, np.arange(full.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    out: FloatArray = np.take_along_axis(full, idx, axis=0)[1:]
    return out


def _ewma(x: FloatArray, y0: FloatArray, alpha: float) -> FloatArray:
    """``y_t = alpha x_t + (1 - alpha) y_{t-1}`` down axis 0 (chunks of <= 64 rows keep it stable)."""
    if alpha >= 1.0:
        return x.copy()
    if x.shape[0] == 1:
        one: FloatArray = alpha * x + (1.0 - alpha) * y0[None, :]
        return one
    T = x.shape[0]
    beta = 1.0 - alpha
    pw = beta ** np.arange(1, T + 1)[:, None]  # beta^t
    acc = np.cumsum(alpha * x / pw, axis=0)
    out: FloatArray = pw * (y0[None, :] + acc)
    return out


def split_evenly(total: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """Spread integer arrivals ``total[T]`` over ``n`` replicas as evenly as possible -> ``[T, n]``.

    The remainder goes to the lowest rows in turn, rotating per step (round robin).
    """
    tot = np.asarray(total, dtype=np.int64).reshape(-1)
    if n <= 0:
        return np.zeros((tot.shape[0], 0), dtype=np.int64)
    base = tot // n
    rem = tot % n
    out = np.repeat(base[:, None], n, axis=1)
    offset = np.arange(tot.shape[0])[:, None] % n
    pos = (np.arange(n)[None, :] - offset) % n
    out += (pos < rem[:, None]).astype(np.int64)
    return out
