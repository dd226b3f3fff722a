"""The replay's workload: a trace rescaled to a cluster size, as arrivals per 1 s step.

Why rescale: the shared traces come from services of very different sizes (2.6 to 182 req/s on
average), so "20 % fewer GPU-seconds" only compares across traces if each trace is brought to the same
scale. ``--peak-replicas N`` multiplies the trace's rate so that its peak needs exactly N replicas at the
target queue time (:func:`replica_capacity_rps`). The peak is the largest 60 s average rate (the
largest bucket rate for buckets of 60 s or more): a 1 s spike is what queues absorb, a minute is what
replicas are for.

Arrivals come from :func:`autoscaler.sandbox.load.trace_step_counts` (the sandbox's schedule): 600 s
buckets are spread uniformly inside each bucket (Poisson given the bucket's count), fractional scaled
counts are rounded at random, all from one seed. Buckets that are not a whole number of seconds (100 ms, 2.5 s)
are first spread evenly over 1 s buckets (:func:`autoscaler.sandbox.load.rebucket`). Token columns, when present, give each step the mean
prompt and output tokens per request of its bucket, which the serving model turns into a service time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from autoscaler.sandbox.load import Trace, is_whole_steps, load_trace, rebucket, trace_step_counts
from autoscaler.serving import RHO_MAX, ServingConfig, erlang_c

FloatArray = npt.NDArray[np.float64]

DEFAULT_SERVING = ServingConfig(concurrency=8, base_ms=30.0, prefill_ms_per_token=0.05, decode_ms_per_token=1.5,
                                default_prompt_tokens=512.0, default_output_tokens=128.0)
"""An LLM replica with continuous batching (8 slots): 30 ms + 0.05 ms per prompt token + 1.5 ms per
output token per request, i.e. ~0.17 s for the code trace's requests, ~0.40 s for the conversation
trace's and 0.25 s for a request without token counts (512 + 128)."""


@dataclass(frozen=True)
class Workload:
    """Arrivals per 1 s step, the per-step mean tokens per request (NaN = unknown) and the scaling used."""

    name: str
    counts: FloatArray
    prompt_per_request: FloatArray | None
    output_per_request: FloatArray | None
    rate_scale: float
    peak_rate_rps: float
    """Peak (60 s average) rate after scaling."""
    replica_capacity_rps: float
    """Rate one replica sustains at the target queue time (mean service time of the trace)."""
    mean_service_s: float
    bucket_s: float

    @property
    def steps(self) -> int:
        return int(self.counts.shape[0])


def mean_wait_s(cfg: ServingConfig, rate_rps: float, service_s: float) -> float:
    """Stationary mean queue time of one replica (the serving model's Allen-Cunneen term), seconds."""
    mu_c = cfg.slots / service_s
    rho = rate_rps / mu_c
    if rho >= RHO_MAX:
        return math.inf
    k = (cfg.arrival_cv2 + cfg.service_time_cv**2) / 2.0
    return float(erlang_c(cfg.slots, rho)) / (mu_c * (1.0 - rho)) * k


def replica_capacity_rps(cfg: ServingConfig, service_s: float, target_queue_time_us: float) -> float:
    """Largest arrival rate at which one replica's mean queue time stays at or under the target."""
    target = target_queue_time_us / 1e6
    lo, hi = 0.0, cfg.slots / service_s * RHO_MAX
    for _ in range(60):
        mid = (lo + hi) / 2
        if mean_wait_s(cfg, mid, service_s) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def peak_rate(trace: Trace) -> float:
    """Largest 60 s average arrival rate of the trace (the largest bucket rate for wide buckets)."""
    req = trace.requests
    if trace.bucket_s >= 60 or len(req) == 0:
        return float(req.max() / trace.bucket_s) if len(req) else 0.0
    w = max(1, round(60.0 / trace.bucket_s))
    if len(req) <= w:
        return float(req.sum() / (len(req) * trace.bucket_s))
    c = np.concatenate([[0.0], np.cumsum(req)])
    return float((c[w:] - c[:-w]).max() / (w * trace.bucket_s))


def trace_mean_service_s(trace: Trace, cfg: ServingConfig) -> float:
    """Request-weighted mean service time over the trace (token columns when present)."""
    n = float(trace.requests.sum())
    if not cfg.uses_tokens or n <= 0:
        return cfg.service_seconds()
    p = float(trace.prompt_tokens.sum()) / n if trace.prompt_tokens is not None else cfg.default_prompt_tokens
    o = float(trace.output_tokens.sum()) / n if trace.output_tokens is not None else cfg.default_output_tokens
    return cfg.service_seconds(p, o)


def build_workload(trace_file: str | Path, serving: ServingConfig, *, peak_replicas: float | None = 20,
                   target_queue_time_us: float = 10000.0, seed: int = 0,
                   duration_s: float | None = None) -> Workload:
    """Load a trace and turn it into per-second arrivals scaled to ``peak_replicas`` (None: unscaled)."""
    trace = load_trace(trace_file)
    if duration_s is not None:
        n = max(1, math.ceil(duration_s / trace.bucket_s))
        trace = Trace(trace.name, trace.bucket_s, trace.requests[:n],
                      None if trace.prompt_tokens is None else trace.prompt_tokens[:n],
                      None if trace.output_tokens is None else trace.output_tokens[:n], trace.comments)
    if not is_whole_steps(trace.bucket_s, 1.0):
        trace = rebucket(trace, 1.0)
    svc = trace_mean_service_s(trace, serving)
    cap = replica_capacity_rps(serving, svc, target_queue_time_us)
    peak = peak_rate(trace)
    scale = 1.0 if peak_replicas is None or peak <= 0 else peak_replicas * cap / peak
    counts = trace_step_counts(trace, 1.0, rate_scale=scale, seed=seed)
    per = round(trace.bucket_s)
    denom = np.where(trace.requests > 0, trace.requests, 1.0)  # rebucketed counts may be fractional
    prompt = None if trace.prompt_tokens is None else np.repeat(trace.prompt_tokens / denom, per)
    output = None if trace.output_tokens is None else np.repeat(trace.output_tokens / denom, per)
    return Workload(trace.name, counts, prompt, output, scale, peak * scale, cap, svc, trace.bucket_s)
