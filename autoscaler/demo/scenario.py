"""What the demo runs: eight leases that each show one side of the controller, the policy, and their load.

The load of every lease is planned up front, one value per wall-clock second, and written as a trace
CSV (1 s buckets) that the sandbox's load driver replays as is. Two scenarios:

* ``step`` (default): a real trace's texture (its second-to-second burstiness, time-compressed by
  ``speed``) times a clear step envelope: low for the first 20 % of the run, high until 55 %, low
  again. Any ``--duration`` therefore shows a scale-up and a scale-down, and the biggest step, which
  the reaction time is measured from, is where the envelope rises.
* ``trace``: the trace's own shape, time-compressed so that it (or its first day) fills the run,
  scaled so its peak asks for about the lease's maximum. The diurnal ServeGen trace tells a day in
  a few minutes.

Time compression applies to the load only: pod start-up, the scrape interval and the controller's
windows stay real seconds, so the demo policy uses short windows (see :data:`DEMO_POLICY`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler import ANNOTATION_PREFIX
from autoscaler.sandbox.load import load_trace

FloatArray = npt.NDArray[np.float64]
P = ANNOTATION_PREFIX
NAMESPACE = "demo"
SCENARIOS = ("step", "trace")
DEFAULT_TRACE = "azure_conv_2023_1s"
DEFAULT_SPEED = 10.0
SLO_QUEUE_TIME_US = 50_000.0
"""The demo's service-level objective: a request waits at most 50 ms in the queue."""

# The cluster policy of the demo: TMS-shaped, every metric allowed, windows short enough for minutes.
DEMO_POLICY = """\
# Cluster policy used by `autoscaler demo` (written into the report directory for reference).
autoscaling:
  enable: true
  replicas:
    default: {minimum: 1, maximum: 5}
    limits: {maximum: 8, minimum: {lowerBound: 0, upperBound: 2}}
  metrics:
    queueTime:      {allowed: true, enabled: true,  threshold: {default: 50000, minimum: 1000, maximum: 0}}
    gpuUtilization: {allowed: true, enabled: true,  threshold: {default: 70, minimum: 50, maximum: 100}}
    cpuUtilization: {allowed: true, enabled: false, threshold: {default: 40, minimum: 20, maximum: 100}}
    kvCacheUsage:   {allowed: true, enabled: false, threshold: {default: 50, minimum: 10, maximum: 100}}
  prometheus: {queueTimeRecordingRule: false, rateWindowSeconds: 3, maxSampleAgeSeconds: 20}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 6}
  loopIntervalSeconds: 1
  fallback: {failureThreshold: 3, action: hold}
  # Scale to zero (a lease with min-replicas 0): its requests go through the activator, which holds them while
  # no pod is Ready and counts them; woken by that count, zero replicas after 8 s without any.
  scaleToZero:
    wakeQuery: >-
      sum(rate(autoscaler_activator_requests_total{namespace="{{namespace}}",deployment="{{name}}"}[3s]))
      or vector(0)
    idleSeconds: 8
  # The predictive algorithm (shipped default) for leases that ask for it, its windows compressed like the
  # load (10x) and as short as the HPA's here: 3 s rate and backlog-growth windows (30 s of traffic), 10 s
  # burst envelope, 6 s scale-down window.
  predictive: {rateWindowSeconds: 3, growthWindowSeconds: 3, burstWindowSeconds: 10, trendWindowSeconds: 30,
               lagSeconds: 3, scaleDownWindowSeconds: 6, startupSeconds: 2, violationTarget: 0.03}
"""


@dataclass(frozen=True)
class DemoLease:
    """One Deployment of the demo and the load it gets (requests per second, before the texture)."""

    name: str
    kind: str
    story: str
    annotations: dict[str, str]
    serving: dict[str, Any]
    base_rate: float
    peak_rate: float
    expected_mode: str  # enforce | shadow | invalid
    cpu: str = "1"
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{NAMESPACE}/{self.name}"

    @property
    def via_activator(self) -> bool:
        """A lease that scales to zero gets its requests through the activator (held while it has no Ready pod)."""
        return self.annotations.get(P + "min-replicas") == "0"

    def deployment(self) -> dict[str, Any]:
        """Scenario fields for :meth:`SandboxCluster.create_deployment`."""
        return {"namespace": NAMESPACE, "replicas": 1, "kind": self.kind, "serving": self.serving,
                "annotations": {P + "enabled": "true", **self.annotations},
                "container": {"name": self.kind, "cpu": self.cpu, "gpus": 1}}


TRITON = {"concurrency": 2, "serviceTimeMs": 100}  # 20 requests/s per ready pod
NIM = {"concurrency": 8, "serviceTimeMs": 400}  # 20 requests/s per pod; KV cache 80 % when all slots run

LEASES: tuple[DemoLease, ...] = (
    DemoLease("triton-resnet", "triton", "Triton scaled on queue time and GPU utilisation",
              {P + "metrics": "queueTime,gpuUtilization", P + "max-replicas": "6"}, TRITON, 8.0, 60.0,
              "enforce", seed=1),
    DemoLease("triton-predictive", "triton",
              "the same traffic, sized by the predictive algorithm (request rate x service time, ahead of start-up)",
              {P + "metrics": "queueTime,gpuUtilization", P + "algorithm": "predictive", P + "slots-per-replica": "2",
               P + "max-replicas": "6"}, TRITON, 8.0, 60.0, "enforce", seed=1),
    DemoLease("triton-cpu", "triton", "Triton scaled on CPU utilisation (cAdvisor)",
              {P + "metrics": "cpuUtilization", P + "max-replicas": "5"}, TRITON, 6.0, 40.0, "enforce", seed=2),
    DemoLease("nim-llm", "nim", "NIM-style LLM scaled on KV-cache usage",
              {P + "metrics": "kvCacheUsage", P + "max-replicas": "5"}, NIM, 5.0, 45.0, "enforce", seed=3),
    DemoLease("nim-predictive", "nim",
              "the same NIM traffic, sized by the predictive algorithm from vLLM's request counters",
              {P + "metrics": "queueTime,kvCacheUsage", P + "algorithm": "predictive", P + "max-replicas": "5"}, NIM,
              5.0, 45.0, "enforce", seed=3),
    DemoLease("triton-zero", "triton",
              "scale to zero: no GPU while no request comes; the activator holds what comes at zero and wakes it",
              {P + "metrics": "queueTime,gpuUtilization", P + "min-replicas": "0", P + "max-replicas": "6",
               P + "wake-target": "10"}, TRITON,
              0.0, 30.0, "enforce", seed=6),
    DemoLease("triton-shadow", "triton", "shadow mode: decides and reports, never patches",
              {P + "metrics": "queueTime,gpuUtilization", P + "mode": "shadow", P + "max-replicas": "6"}, TRITON,
              8.0, 60.0, "shadow", seed=4),
    DemoLease("triton-typo", "triton", "bad annotation (max-replicas: ten): Warning Event, left alone",
              {P + "max-replicas": "ten"}, TRITON, 4.0, 15.0, "invalid", seed=5),
)


@dataclass
class Plan:
    """The demo's load plan: requests per second for every wall-clock second, per lease."""

    scenario: str
    trace: str
    duration_s: float
    speed: float
    leases: tuple[DemoLease, ...]
    rates: dict[str, FloatArray] = field(default_factory=dict)
    step_at_s: float = 0.0
    """Where the largest load step starts (seconds into the run)."""


def texture(trace: str | Path, speed: float, n: int, start_s: float = 0.0) -> FloatArray:
    """The trace's rate over ``n`` wall seconds at ``speed`` trace seconds per wall second (req/s, trace units).

    Loops the trace if it is shorter than ``n * speed`` trace seconds.
    """
    tr = load_trace(trace)
    per_s = np.repeat(tr.requests / tr.bucket_s, max(1, round(tr.bucket_s)))  # requests per trace second
    if per_s.size == 0:
        raise ValueError(f"trace {trace} is empty")
    edges = start_s + np.arange(n + 1, dtype=np.float64) * speed
    cum = np.concatenate([[0.0], np.cumsum(per_s)])
    total = cum[-1]

    def cum_at(t: FloatArray) -> FloatArray:
        laps, rest = np.divmod(t, per_s.size)
        idx = np.floor(rest).astype(np.int64)
        frac = rest - idx
        res: FloatArray = laps * total + cum[idx] + frac * per_s[np.minimum(idx, per_s.size - 1)]
        return res

    out: FloatArray = np.diff(cum_at(edges)) / speed
    return out


def largest_step(rates: FloatArray, window_s: int = 5) -> float:
    """Start of the largest rise of the ``window_s``-second mean rate (seconds into the run)."""
    if rates.size < 2 * window_s + 1:
        return 0.0
    c = np.concatenate([[0.0], np.cumsum(rates)])
    i = np.arange(window_s, rates.size - window_s + 1)
    after = (c[i + window_s] - c[i]) / window_s
    before = (c[i] - c[i - window_s]) / window_s
    return float(i[int(np.argmax(after - before))])


def make_plan(scenario: str = "step", duration_s: float = 180.0, speed: float | None = None,
              trace: str | None = None, leases: tuple[DemoLease, ...] = LEASES) -> Plan:
    """Plan every lease's load for a run of ``duration_s`` wall seconds."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    n = max(10, round(duration_s))
    if scenario == "step":
        trace = trace or DEFAULT_TRACE
        speed = speed or DEFAULT_SPEED
        tex = texture(trace, speed, n)
        tex = tex / max(float(tex.mean()), 1e-9)  # texture around 1
        t = np.arange(n, dtype=np.float64)
        high = (t >= round(0.2 * n)) & (t < round(0.55 * n))
        plan = Plan(scenario, str(trace), float(n), float(speed), leases)
        for lease in leases:
            env = np.where(high, lease.peak_rate, lease.base_rate)
            plan.rates[lease.name] = env * tex
    else:
        trace = trace or "servegen_mlarge_days07-13_600s"
        tr = load_trace(trace)
        span = min(tr.duration_s, 86_400.0)
        speed = speed or max(1.0, span / n)
        tex = texture(trace, speed, n)
        smooth = np.convolve(tex, np.ones(5) / 5, mode="same")
        top = max(float(np.quantile(smooth, 0.98)), 1e-9)
        plan = Plan(scenario, str(trace), float(n), float(speed), leases)
        for lease in leases:
            plan.rates[lease.name] = np.maximum(0.0, tex / top * lease.peak_rate)
    first = leases[0].name
    plan.step_at_s = largest_step(np.convolve(plan.rates[first], np.ones(3) / 3, mode="same")
                                  if scenario == "trace" else plan.rates[first])
    return plan


def write_load(plan: Plan, lease: DemoLease, directory: Path) -> dict[str, Any]:
    """Write the lease's planned load as a 1 s trace CSV; return the data plane's ``load`` block for it."""
    rng = np.random.default_rng(lease.seed)
    counts = rng.poisson(plan.rates[lease.name])
    path = directory / f"load-{lease.name}.csv"
    lines = [f"# demo load for {lease.key}: scenario {plan.scenario}, trace {plan.trace} at {plan.speed:g}x",
             "# bucket_seconds=1", "t_seconds,requests"]
    lines += [f"{i},{int(c)}" for i, c in enumerate(counts)]
    path.write_text("\n".join(lines) + "\n")
    return {"trace": str(path), "timeCompression": 1, "seed": lease.seed}
