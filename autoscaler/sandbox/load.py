"""Load for the sandbox: trace replay or synthetic profiles, open or closed loop.

Two parts:

* **Arrival schedules** (pure, deterministic given a seed, shared with the replay): a trace CSV
  (``t_seconds,requests[,prompt_tokens,output_tokens|rate_rps]``, see ``autoscaler/data/traces/``)
  or a synthetic profile (constant, step, ramp, sine, Poisson bursts), with time compression (10x
  plays 10 trace seconds per wall second, at 10x the rate) and rate scaling. Inside a bucket the
  arrivals are placed uniformly at random, i.e. as a Poisson process given the bucket's count (the
  600 s ServeGen buckets need this). Each bucket draws from its own seeded generator, so any window
  of the schedule can be produced in any order with the same result. :func:`step_counts` bins a
  schedule into fixed steps for the replay.
* **The live driver** (:class:`LoadDriver`): a task that sends each arrival, at its time, to one of
  the ready pods of a deployment (least queue or round robin), or keeps N closed-loop clients busy
  (a client sends, waits for its response, thinks, repeats: genai-perf's fixed concurrency). What it
  did is kept in :class:`LoadStats` (arrivals per second, per-request queue times, SLO counts).

The scenario ``load`` block (camelCase; snake_case accepted)::

    load:
      trace: azure_conv_2023_1s     # packaged name, or a path to a CSV
      timeCompression: 10           # default 1
      rateScale: 0.5                # default 1
      startS: 0                     # where in the trace to start (trace seconds)
      durationS: 300                # stop after this many wall seconds (default: end of the trace)
      loop: false                   # start the trace (or a profile: see Profile.period_s) over at its end
      routing: least-queue          # or round-robin
      seed: 1
    # or a synthetic profile (rates in requests per second, times in seconds):
      profile: {type: constant, rate: 20}
      profile: {type: step, base: 5, peak: 60, atS: 30, untilS: 90}   # or just `profile: step`
      profile: {type: ramp, from: 1, to: 80, durationS: 120}
      profile: {type: sine, mean: 30, amplitude: 20, periodS: 120}
      profile: {type: bursts, base: 5, burstRate: 100, everyS: 60, burstS: 5, jitterS: 10}
      promptTokens: 512             # optional per-request tokens for synthetic load
      outputTokens: 64
    # or closed loop:
      closedLoop: {clients: 8, thinkTimeMs: 0}
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """A dense arrival-count series: ``requests[i]`` arrived in ``[i*B, (i+1)*B)`` seconds."""

    name: str
    bucket_s: float
    requests: FloatArray
    prompt_tokens: FloatArray | None = None
    output_tokens: FloatArray | None = None
    comments: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return float(len(self.requests) * self.bucket_s)

    @property
    def mean_rate(self) -> float:
        return float(self.requests.sum() / max(self.duration_s, 1e-9))

    @property
    def peak_rate(self) -> float:
        return float(self.requests.max() / self.bucket_s) if len(self.requests) else 0.0


def packaged_traces() -> list[str]:
    """Names of the traces shipped in ``autoscaler/data/traces``."""
    root = resources.files("autoscaler") / "data" / "traces"
    return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".csv"))


def trace_path(name: str | Path) -> Path:
    """A path as is, or a packaged trace by name (with or without ``.csv``)."""
    p = Path(name)
    if p.exists():
        return p
    stem = p.name[:-4] if p.name.endswith(".csv") else p.name
    res = resources.files("autoscaler") / "data" / "traces" / f"{stem}.csv"
    if res.is_file():
        return Path(str(res))
    raise FileNotFoundError(f"trace {str(name)!r} not found (packaged: {', '.join(packaged_traces())})")


TOKEN_COLUMNS = {"prompt_tokens": ("prompt_tokens", "input_tokens", "context_tokens"),
                 "output_tokens": ("output_tokens", "generated_tokens", "completion_tokens")}
"""Accepted names of the token columns (case-insensitive), first one wins."""


def load_trace(name: str | Path) -> Trace:
    """Read a trace CSV (comments start with ``#``; ``bucket_seconds=`` is read from them).

    Only ``requests`` (and the token columns, under any name of :data:`TOKEN_COLUMNS`) are read, so
    other columns may hold anything. An empty or NaN token cell is filled with the trace's mean tokens
    per request; a bad ``requests`` cell (empty, negative, not a number) is an error naming its line.
    Without ``bucket_seconds=`` the bucket is the smallest step of ``t_seconds`` (else 1 s). Rows whose
    ``t_seconds`` go strictly up go to the bucket their time says, counted from the first: missing rows are empty
    buckets. Otherwise (unsorted, repeated, or not in seconds) rows are buckets in file order.
    """
    path = trace_path(name)
    comments: list[str] = []
    header: list[str] | None = None
    cells: dict[str, list[float]] = {}
    index: dict[str, int] = {}  # column -> position in a row
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        parts = [c.strip().strip('"') for c in line.split(",")]
        if header is None:
            header = [h.lower() for h in parts]
            if "requests" not in header:
                raise ValueError(f"{path}:{n}: no 'requests' column in the header {header}")
            wanted: dict[str, str] = {c: c for c in ("requests", "t_seconds") if c in header}
            for col, aliases in TOKEN_COLUMNS.items():
                found = next((a for a in aliases if a in header), None)
                if found is not None:
                    wanted[col] = found
            index = {col: header.index(h) for col, h in wanted.items()}
            cells = {col: [] for col in index}
            continue
        for col, i in index.items():
            raw = parts[i] if i < len(parts) else ""
            try:
                v = float(raw) if raw else math.nan
            except ValueError:
                v = math.nan
            if col == "requests" and not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{path}:{n}: requests must be a number >= 0, got {raw!r}")
            cells[col].append(v)
    if header is None:
        raise ValueError(f"{path}: no header with a 'requests' column")
    if not cells["requests"]:
        raise ValueError(f"{path}: no rows after the header (a trace needs at least one bucket)")
    requests = np.asarray(cells["requests"], dtype=np.float64)
    times = np.asarray(cells.get("t_seconds", []), dtype=np.float64)
    timed = times.size == requests.size and times.size > 0 and bool(np.isfinite(times).all())
    bucket = None
    for c in comments:
        m = re.search(r"bucket_seconds=([0-9.eE+-]+)", c)
        if m:
            bucket = float(m.group(1))
    if bucket is None:
        steps = np.diff(np.unique(times)) if timed else np.zeros(0)
        bucket = float(steps.min()) if steps.size else 1.0
    if not (bucket > 0 and math.isfinite(bucket)):
        raise ValueError(f"{path}: bucket_seconds must be > 0, got {bucket}")
    tokens = {col: _fill_tokens(np.asarray(cells[col], dtype=np.float64), requests)
              for col in TOKEN_COLUMNS if col in cells}
    if timed:
        # a file that leaves out its empty buckets keeps its real time axis: rows go to the bucket their time says.
        # Only when the times go strictly up bucket by bucket: a dense file (every bucket written, the documented
        # format) is unchanged, and times that would merge rows (not in seconds, or unsorted) keep the file's order
        slot = np.rint((times - times[0]) / bucket).astype(np.int64)
        if not np.array_equal(slot, np.arange(slot.size)) and bool((np.diff(slot) > 0).all()):
            dense = np.zeros(int(slot[-1]) + 1)
            dense[slot] = requests
            requests = dense
            for col, sums in tokens.items():
                if sums is not None:
                    placed = np.zeros(dense.size)
                    placed[slot] = sums
                    tokens[col] = placed
    return Trace(name=path.stem, bucket_s=bucket, requests=requests, prompt_tokens=tokens.get("prompt_tokens"),
                 output_tokens=tokens.get("output_tokens"), comments=tuple(comments))


def _fill_tokens(tokens: FloatArray, requests: FloatArray) -> FloatArray | None:
    """Token sums with unknown (NaN) buckets filled at the known buckets' mean per request (None: none known)."""
    known = np.isfinite(tokens)
    if not known.any() or requests[known].sum() <= 0:
        return None
    per = tokens[known].sum() / requests[known].sum()
    return np.where(known, tokens, per * requests)


def rebucket(trace: Trace, width_s: float) -> Trace:
    """The same arrivals in buckets of ``width_s``: each source bucket spread evenly over its time span.

    Counts and token sums become fractional where a source bucket straddles a new edge (the replay rounds
    counts at random). Used for buckets that are not a whole number of replay steps (e.g. 100 ms or 2.5 s).
    """
    n_src = len(trace.requests)
    edges = np.arange(n_src + 1, dtype=np.float64) * trace.bucket_s
    n = max(1, math.ceil(trace.duration_s / width_s - 1e-9))
    new_edges = np.minimum(np.arange(n + 1, dtype=np.float64) * width_s, edges[-1])

    def spread(v: FloatArray | None) -> FloatArray | None:
        if v is None:
            return None
        cum = np.concatenate([[0.0], np.cumsum(v)])
        out: FloatArray = np.diff(np.interp(new_edges, edges, cum))
        return out

    requests = spread(trace.requests)
    assert requests is not None
    return Trace(trace.name, float(width_s), requests, spread(trace.prompt_tokens), spread(trace.output_tokens),
                 trace.comments)


# --------------------------------------------------------------------------------------------------
# synthetic profiles
# --------------------------------------------------------------------------------------------------


def _get(d: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return default


@dataclass(frozen=True)
class Profile:
    """A rate function (requests/s) of scenario time, vectorised. Build with :meth:`from_dict`."""

    kind: str
    params: Mapping[str, float]

    def rate(self, t: npt.ArrayLike) -> FloatArray:
        t = np.asarray(t, dtype=np.float64)
        p = self.params
        if self.kind == "constant":
            return np.full_like(t, p["rate"])
        if self.kind == "step":
            on = (t >= p["at_s"]) & (t < p["until_s"])
            return np.where(on, p["peak"], p["base"])
        if self.kind == "ramp":
            f = np.clip((t - p["start_s"]) / max(p["duration_s"], 1e-9), 0.0, 1.0)
            return p["from"] + (p["to"] - p["from"]) * f
        if self.kind == "sine":
            return np.maximum(0.0, p["mean"] + p["amplitude"] * np.sin(2 * math.pi * t / p["period_s"]))
        if self.kind == "bursts":
            phase = np.mod(t - p["offset_s"], p["every_s"])
            return np.where((t >= p["offset_s"]) & (phase < p["burst_s"]), p["burst_rate"], p["base"])
        raise ValueError(f"unknown profile type {self.kind!r}")

    @property
    def period_s(self) -> float | None:
        """How long one pass of the profile lasts, for ``loop: true`` (None: it never changes or repeats)."""
        p = self.params
        if self.kind == "step" and math.isfinite(p["until_s"]):
            return p["until_s"] + p["at_s"]  # base, peak, then base again as long as before the step
        if self.kind == "ramp":
            return p["start_s"] + p["duration_s"]
        if self.kind == "sine":
            return p["period_s"]
        if self.kind == "bursts":
            return p["every_s"]
        return None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str) -> Profile:
        """From a mapping with ``type`` and its parameters, or just the type name (defaults)."""
        if isinstance(d, str):
            d = {"type": d}
        kind = str(d.get("type", "constant")).lower()
        if kind == "constant":
            params = {"rate": float(_get(d, "rate", default=10.0))}
        elif kind == "step":
            params = {"base": float(_get(d, "base", default=5.0)), "peak": float(_get(d, "peak", "rate", default=50.0)),
                      "at_s": float(_get(d, "atS", "at_s", "at", default=30.0)),
                      "until_s": float(_get(d, "untilS", "until_s", default=math.inf))}
        elif kind == "ramp":
            params = {"from": float(_get(d, "from", "from_", default=0.0)), "to": float(_get(d, "to", default=10.0)),
                      "start_s": float(_get(d, "startS", "start_s", default=0.0)),
                      "duration_s": float(_get(d, "durationS", "duration_s", default=60.0))}
        elif kind == "sine":
            params = {"mean": float(_get(d, "mean", default=10.0)), "amplitude": float(_get(d, "amplitude", default=5.0)),
                      "period_s": float(_get(d, "periodS", "period_s", default=60.0))}
        elif kind in ("bursts", "burst", "poisson-bursts", "poisson_bursts"):
            kind = "bursts"
            params = {"base": float(_get(d, "base", default=1.0)),
                      "burst_rate": float(_get(d, "burstRate", "burst_rate", "peak", default=50.0)),
                      "every_s": float(_get(d, "everyS", "every_s", "burstEveryS", default=60.0)),
                      "burst_s": float(_get(d, "burstS", "burst_s", "burstDurationS", default=5.0)),
                      "offset_s": float(_get(d, "offsetS", "offset_s", default=0.0))}
        else:
            raise ValueError(f"unknown profile type {kind!r} (constant, step, ramp, sine, bursts)")
        return cls(kind, params)


# --------------------------------------------------------------------------------------------------
# arrival schedules
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrivals:
    """Arrival times (schedule seconds, sorted) with per-request tokens (NaN when unknown)."""

    times: FloatArray
    prompt_tokens: FloatArray
    output_tokens: FloatArray

    def __len__(self) -> int:
        return int(self.times.shape[0])


_EMPTY = Arrivals(np.zeros(0), np.zeros(0), np.zeros(0))


class ArrivalSchedule:
    """Open-loop arrivals in *wall* seconds since the load started (after time compression).

    ``window(t0, t1)`` returns the arrivals in ``[t0, t1)``; deterministic given the seed.
    """

    def __init__(self, *, trace: Trace | None = None, profile: Profile | None = None, time_compression: float = 1.0,
                 rate_scale: float = 1.0, start_s: float = 0.0, duration_s: float | None = None, loop: bool = False,
                 seed: int = 0, prompt_tokens: float | None = None, output_tokens: float | None = None,
                 profile_bucket_s: float = 0.1) -> None:
        if (trace is None) == (profile is None):
            raise ValueError("give exactly one of trace and profile")
        if time_compression <= 0 or rate_scale < 0:
            raise ValueError("timeCompression must be > 0 and rateScale >= 0")
        self.trace = trace
        self.profile = profile
        self.k = float(time_compression)
        self.scale = float(rate_scale)
        self.seed = int(seed)
        self.loop = loop
        self.prompt = prompt_tokens
        self.output = output_tokens
        # bucket width in wall seconds, and the first bucket
        if trace is not None:
            self.bucket_wall = trace.bucket_s / self.k
            self.first_bucket = int(start_s // trace.bucket_s)
            n_left = len(trace.requests) - self.first_bucket
            natural = None if loop else n_left * self.bucket_wall
        else:
            self.bucket_wall = profile_bucket_s
            self.first_bucket = 0
            self.start_s = start_s
            natural = None
        self.duration_s = duration_s if duration_s is not None else natural

    def _bucket(self, i: int) -> Arrivals:
        """Arrivals of wall bucket ``i`` (relative to the schedule start)."""
        if i < 0 or (self.duration_s is not None and i * self.bucket_wall >= self.duration_s):
            return _EMPTY
        rng = np.random.default_rng([self.seed, i])
        lo = i * self.bucket_wall
        if self.trace is not None:
            tr = self.trace
            j = self.first_bucket + i
            if j >= len(tr.requests):
                if not self.loop:
                    return _EMPTY
                j %= len(tr.requests)
            mean = tr.requests[j] * self.scale
            n = math.floor(mean) + int(rng.random() < mean - math.floor(mean))
            cnt = max(tr.requests[j], 1.0)
            p = tr.prompt_tokens[j] / cnt if tr.prompt_tokens is not None else self.prompt
            o = tr.output_tokens[j] / cnt if tr.output_tokens is not None else self.output
        else:
            assert self.profile is not None
            t_mid = self.start_s + (lo + self.bucket_wall / 2) * self.k
            period = self.profile.period_s
            if self.loop and period:
                t_mid %= period
            lam = float(self.profile.rate(t_mid)) * self.scale * self.k * self.bucket_wall
            n = int(rng.poisson(max(lam, 0.0)))
            p, o = self.prompt, self.output
        times = np.sort(lo + rng.random(n) * self.bucket_wall)
        if self.duration_s is not None:
            times = times[times < self.duration_s]
        pa = np.full(times.shape, np.nan if p is None else float(p))
        oa = np.full(times.shape, np.nan if o is None else float(o))
        return Arrivals(times, pa, oa)

    def window(self, t0: float, t1: float) -> Arrivals:
        if t1 <= t0:
            return _EMPTY
        b0 = max(0, math.floor(t0 / self.bucket_wall))
        b1 = math.ceil(t1 / self.bucket_wall)
        parts = [self._bucket(i) for i in range(b0, b1)]
        parts = [p for p in parts if len(p)]
        if not parts:
            return _EMPTY
        times = np.concatenate([p.times for p in parts])
        keep = (times >= t0) & (times < t1)
        return Arrivals(times[keep], np.concatenate([p.prompt_tokens for p in parts])[keep],
                        np.concatenate([p.output_tokens for p in parts])[keep])

    @property
    def finished_at(self) -> float | None:
        return self.duration_s


def step_counts(schedule: ArrivalSchedule, step_s: float = 1.0, duration_s: float | None = None) -> FloatArray:
    """Arrivals per step of ``step_s`` wall seconds (for the replay and for tests)."""
    end = duration_s if duration_s is not None else schedule.duration_s
    if end is None:
        raise ValueError("duration_s is needed for an endless schedule")
    n = math.ceil(end / step_s)
    counts = np.zeros(n)
    chunk = 3600.0
    t = 0.0
    while t < end:
        arr = schedule.window(t, min(end, t + chunk))
        idx = np.minimum((arr.times // step_s).astype(np.int64), n - 1)
        counts += np.bincount(idx, minlength=n)[:n]
        t += chunk
    return counts


def is_whole_steps(bucket_s: float, step_s: float) -> bool:
    """Whether a bucket is a whole number (>= 1) of steps."""
    per = bucket_s / step_s
    return per >= 1 - 1e-9 and abs(per - round(per)) <= 1e-9


def trace_step_counts(trace: Trace, step_s: float = 1.0, rate_scale: float = 1.0, seed: int = 0) -> FloatArray:
    """A trace as arrivals per ``step_s`` (no compression): buckets wider than a step are split at random
    (multinomial, i.e. uniform placement), fractional scaled counts rounded at random. Fast for a week.
    Buckets that are not a whole number of steps (100 ms, 2.5 s) are first :func:`rebucket`-ed to the step."""
    rng = np.random.default_rng(seed)
    if not is_whole_steps(trace.bucket_s, step_s):
        trace = rebucket(trace, step_s)
    mean = trace.requests * rate_scale
    n = np.floor(mean) + (rng.random(mean.shape) < mean - np.floor(mean))
    m = round(trace.bucket_s / step_s)
    if m == 1:
        return n.astype(np.float64)
    out = rng.multinomial(n.astype(np.int64), np.full(m, 1.0 / m))
    return out.reshape(-1).astype(np.float64)


# --------------------------------------------------------------------------------------------------
# load spec
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """The scenario's ``load`` block, parsed."""

    trace: str | None = None
    profile: Profile | None = None
    time_compression: float = 1.0
    rate_scale: float = 1.0
    start_s: float = 0.0
    duration_s: float | None = None
    loop: bool = False
    routing: str = "least-queue"
    seed: int = 0
    prompt_tokens: float | None = None
    output_tokens: float | None = None
    clients: int = 0
    think_time_s: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoadSpec:
        if not isinstance(d, Mapping):
            raise ValueError(f"load must be a mapping, got {type(d).__name__}")
        known = {"trace", "profile", "timeCompression", "time_compression", "rateScale", "rate_scale", "startS",
                 "start_s", "durationS", "duration_s", "loop", "routing", "seed", "promptTokens", "prompt_tokens",
                 "outputTokens", "output_tokens", "closedLoop", "closed_loop", "clients", "thinkTimeMs",
                 "think_time_ms"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown load keys {unknown}")
        closed = _get(d, "closedLoop", "closed_loop", default=None) or {}
        clients = int(_get(closed, "clients", default=_get(d, "clients", default=0)))
        think = float(_get(closed, "thinkTimeMs", "think_time_ms", default=_get(d, "thinkTimeMs", default=0.0))) / 1000
        prof = _get(d, "profile", default=None)
        trace = _get(d, "trace", default=None)
        if clients <= 0 and (prof is None) == (trace is None):
            raise ValueError("load needs exactly one of 'trace', 'profile' or 'closedLoop'")
        routing = str(_get(d, "routing", default="least-queue")).lower()
        if routing not in ("least-queue", "round-robin"):
            raise ValueError(f"routing must be least-queue or round-robin, got {routing!r}")
        dur = _get(d, "durationS", "duration_s", default=None)
        pt = _get(d, "promptTokens", "prompt_tokens", default=None)
        ot = _get(d, "outputTokens", "output_tokens", default=None)
        return cls(
            trace=None if trace is None else str(trace),
            profile=None if prof is None else Profile.from_dict(prof),
            time_compression=float(_get(d, "timeCompression", "time_compression", default=1.0)),
            rate_scale=float(_get(d, "rateScale", "rate_scale", default=1.0)),
            start_s=float(_get(d, "startS", "start_s", default=0.0)),
            duration_s=None if dur is None else float(dur),
            loop=bool(_get(d, "loop", default=False)),
            routing=routing, seed=int(_get(d, "seed", default=0)),
            prompt_tokens=None if pt is None else float(pt), output_tokens=None if ot is None else float(ot),
            clients=max(0, clients), think_time_s=think,
        )

    def schedule(self) -> ArrivalSchedule | None:
        """The open-loop schedule, or None in closed-loop mode."""
        if self.clients > 0 and self.trace is None and self.profile is None:
            return None
        return ArrivalSchedule(
            trace=None if self.trace is None else load_trace(self.trace), profile=self.profile,
            time_compression=self.time_compression, rate_scale=self.rate_scale, start_s=self.start_s,
            duration_s=self.duration_s, loop=self.loop, seed=self.seed, prompt_tokens=self.prompt_tokens,
            output_tokens=self.output_tokens)


# --------------------------------------------------------------------------------------------------
# what the load generator did
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadStats:
    """Per-request record of one deployment's load (wall times from ``time.monotonic``)."""

    started_at: float = 0.0
    arrival_times: array[float] = field(default_factory=lambda: array("d"))
    queue_times: array[float] = field(default_factory=lambda: array("d"))
    """Queue time in seconds; NaN for a request that no pod accepted."""
    latencies: array[float] = field(default_factory=lambda: array("d"))

    max_records: int = 4_000_000
    """The record is a rolling window: past this many requests the oldest half is dropped."""
    sent: int = 0
    """Every request sent, ever (the gateway's counter; the record above is a window)."""
    unrouted: int = 0
    """Every request no pod took, ever (no Ready pod: a gateway's 503)."""

    def record(self, t: float, queue_s: float, latency_s: float) -> None:
        self.sent += 1
        self.unrouted += math.isnan(queue_s)
        if len(self.arrival_times) >= self.max_records:
            half = self.max_records // 2
            del self.arrival_times[:half], self.queue_times[:half], self.latencies[:half]
        self.arrival_times.append(t)
        self.queue_times.append(queue_s)
        self.latencies.append(latency_s)

    def _sel(self, since: float | None, until: float | None) -> npt.NDArray[np.bool_]:
        t = np.frombuffer(self.arrival_times, dtype=np.float64) if len(self.arrival_times) else np.zeros(0)
        m = np.ones(t.shape, dtype=bool)
        if since is not None:
            m &= t >= since
        if until is not None:
            m &= t < until
        return m

    @property
    def requests(self) -> int:
        return len(self.arrival_times)

    @property
    def unserved(self) -> int:
        q = np.frombuffer(self.queue_times, dtype=np.float64) if len(self.queue_times) else np.zeros(0)
        return int(np.isnan(q).sum())

    def slo(self, target_us: float, since: float | None = None, until: float | None = None) -> dict[str, float]:
        """Requests, those served, those over the queue-time target (unserved ones count as violations)."""
        m = self._sel(since, until)
        q = np.frombuffer(self.queue_times, dtype=np.float64)[m] if m.size else np.zeros(0)
        served = ~np.isnan(q)
        over = int((q[served] * 1e6 > target_us).sum()) + int((~served).sum())
        n = int(q.size)
        return {"requests": n, "served": int(served.sum()), "violations": over,
                "violationFraction": over / n if n else 0.0,
                "meanQueueTimeUs": float(q[served].mean() * 1e6) if served.any() else 0.0,
                "p99QueueTimeUs": float(np.quantile(q[served], 0.99) * 1e6) if served.any() else 0.0}

    def rate_series(self, bucket_s: float = 1.0) -> tuple[FloatArray, FloatArray]:
        """(bucket start relative to ``started_at``, arrivals per second) since the load started."""
        if not len(self.arrival_times):
            return np.zeros(0), np.zeros(0)
        t = np.frombuffer(self.arrival_times, dtype=np.float64) - self.started_at
        n = int(t.max() // bucket_s) + 1
        counts = np.bincount(np.maximum(0, (t // bucket_s).astype(np.int64)), minlength=n)
        return np.arange(n, dtype=np.float64) * bucket_s, counts.astype(np.float64) / bucket_s

    def violation_series(self, target_us: float, bucket_s: float = 1.0) -> tuple[FloatArray, FloatArray]:
        """(bucket start, fraction of that bucket's arrivals over the target)."""
        if not len(self.arrival_times):
            return np.zeros(0), np.zeros(0)
        t = np.frombuffer(self.arrival_times, dtype=np.float64) - self.started_at
        q = np.frombuffer(self.queue_times, dtype=np.float64)
        bad = np.isnan(q) | (np.nan_to_num(q, nan=0.0) * 1e6 > target_us)
        idx = np.maximum(0, (t // bucket_s).astype(np.int64))
        n = int(idx.max()) + 1
        tot = np.bincount(idx, minlength=n)
        over = np.bincount(idx, weights=bad.astype(np.float64), minlength=n)
        frac: FloatArray = np.divide(over, tot, out=np.zeros(n), where=tot > 0)
        return np.arange(n, dtype=np.float64) * bucket_s, frac


# --------------------------------------------------------------------------------------------------
# the live driver
# --------------------------------------------------------------------------------------------------


class Target(Protocol):
    """What the driver needs of a pod (``autoscaler.sandbox.pods.SimPod`` is one)."""

    name: str

    def submit(self, at_wall: float | None = None, prompt_tokens: float | None = None,
               output_tokens: float | None = None) -> Any: ...

    @property
    def accepting(self) -> bool: ...


class Router:
    """Chooses a pod for each request: least outstanding work (ties round robin) or plain round robin."""

    def __init__(self, pods: Callable[[], Sequence[Any]], policy: str = "least-queue") -> None:
        self.pods = pods
        self.policy = policy
        self._rr = itertools.count()

    def pick(self, at_wall: float) -> Any | None:
        cands = [p for p in self.pods() if p.accepting]
        if not cands:
            return None
        k = next(self._rr)
        if self.policy == "round-robin":
            return cands[k % len(cands)]
        n = len(cands)
        best = None
        best_load = math.inf
        for j in range(n):
            p = cands[(k + j) % n]
            rep = p.replica
            rep.advance_to(p.to_pod_time(at_wall))
            load = (rep.pending + rep.running) / rep.config.slots
            if load < best_load:
                best, best_load = p, load
        return best


SENT_AT_HEADER = "X-Sandbox-Sent-At"
"""A request the load sends over HTTP carries when it was sent (the data plane's clock): the gateway records it
from then, so that its queue time includes what it waited in front of the gateway (an activator's hold)."""
RECORDED_HEADER = "X-Sandbox-Recorded"
"""On the gateway's answers: the request is in the load's record already (the driver records only the others)."""


class LoadDriver:
    """Plays a :class:`LoadSpec` against the pods a callable returns, on the running event loop; with ``via``, an
    open-loop load is sent as HTTP POSTs to that URL instead (an activator in front of the gateway): a request the
    gateway answers is recorded there, one answered by anything else (a 504 after a hold, a refused connection) is
    recorded here as not served."""

    def __init__(self, spec: LoadSpec, pods: Callable[[], Sequence[Any]], *, stats: LoadStats | None = None,
                 clock: Callable[[], float] = time.monotonic, tick_s: float = 0.02, via: str | None = None) -> None:
        self.spec = spec
        self.router = Router(pods, spec.routing)
        self.clock = clock
        self.tick_s = tick_s
        self.stats = stats or LoadStats()
        self._task: asyncio.Task[None] | None = None
        self.schedule = spec.schedule()
        self.via = via
        if via is not None and self.schedule is None:
            raise ValueError("a closed-loop load cannot be sent over HTTP (via)")
        self._http: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.stats.started_at = self.clock()
        if self.via is not None:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                               timeout=aiohttp.ClientTimeout(total=None))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="load-driver")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait without awaiting the task itself: its CancelledError is expected, but a CancelledError aimed at the
        # caller must reach the caller (suppressing it around `await task` swallowed both)
        await asyncio.wait({task})
        inflight, self._inflight = self._inflight, set()
        for t in inflight:
            t.cancel()
        if inflight:
            await asyncio.wait(inflight)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    async def wait(self) -> None:
        """Until the schedule is played and every request sent over HTTP is answered."""
        if self._task is not None:
            await asyncio.shield(self._task)
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    def _send(self, at: float, prompt: float | None, output: float | None) -> float | None:
        """Route and submit one request; returns its finish time (wall) or None if nobody took it."""
        pod = self.router.pick(at)
        adm = pod.submit(at, prompt, output) if pod is not None else None
        if pod is None or adm is None or not adm.accepted:
            self.stats.record(at, math.nan, math.nan)
            return None
        self.stats.record(at, adm.queue_seconds, adm.latency_seconds)
        finish: float = pod.to_wall(adm.finish)
        return finish

    async def _run(self) -> None:
        if self.schedule is None:
            await self._closed_loop()
        else:
            await self._open_loop(self.schedule)

    async def _open_loop(self, sched: ArrivalSchedule) -> None:
        t0 = self.stats.started_at
        done = 0.0
        end = sched.finished_at
        # over HTTP a request leaves at its own time, so the next tick's arrivals are taken now (each waits for its
        # time): a request sent at the tick after its time would carry up to a tick of delay the pods never caused
        ahead = self.tick_s if self.via is not None else 0.0
        while end is None or done < end:
            await asyncio.sleep(self.tick_s)
            now = self.clock() - t0 + ahead
            arr = sched.window(done, now)
            for t, p, o in zip(arr.times.tolist(), arr.prompt_tokens.tolist(), arr.output_tokens.tolist(), strict=True):
                prompt, output = None if math.isnan(p) else p, None if math.isnan(o) else o
                if self.via is None:
                    self._send(t0 + t, prompt, output)
                else:
                    task = asyncio.create_task(self._post(t0 + t, prompt, output))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
            done = now

    async def _post(self, at: float, prompt: float | None, output: float | None) -> None:
        """One request over HTTP to ``via``, sent at ``at``."""
        assert self._http is not None and self.via is not None
        await asyncio.sleep(max(0.0, at - self.clock()))
        body = {k: v for k, v in (("promptTokens", prompt), ("outputTokens", output)) if v is not None}
        try:
            async with self._http.post(self.via, json=body, headers={SENT_AT_HEADER: f"{at:.6f}"}) as r:
                await r.read()
                if RECORDED_HEADER in r.headers:
                    return
        except aiohttp.ClientError:
            pass
        self.stats.record(at, math.nan, math.nan)

    async def _closed_loop(self) -> None:
        spec = self.spec
        end = None if spec.duration_s is None else self.stats.started_at + spec.duration_s

        async def client(i: int) -> None:
            await asyncio.sleep(0.001 * i)
            while end is None or self.clock() < end:
                now = self.clock()
                finish = self._send(now, spec.prompt_tokens, spec.output_tokens)
                wait = (finish - self.clock()) if finish is not None else 0.1  # no pod: retry shortly
                await asyncio.sleep(max(0.0, wait) + spec.think_time_s)

        await asyncio.gather(*(client(i) for i in range(spec.clients)))

