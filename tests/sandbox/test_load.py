"""Load generation: traces, synthetic profiles, deterministic schedules, live open and closed loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from autoscaler.sandbox.load import (
    ArrivalSchedule,
    LoadDriver,
    LoadSpec,
    LoadStats,
    Profile,
    Trace,
    load_trace,
    packaged_traces,
    rebucket,
    step_counts,
    trace_step_counts,
)
from autoscaler.sandbox.pods import SimPod
from autoscaler.serving import ServingConfig


def test_packaged_traces_load() -> None:
    """The three shared traces ship with the package and parse with their bucket width and totals."""
    assert set(packaged_traces()) >= {"azure_code_2023_1s", "azure_conv_2023_1s", "servegen_mlarge_days07-13_600s"}
    code = load_trace("azure_code_2023_1s")
    assert code.bucket_s == 1 and code.requests.sum() == 8819 and len(code.requests) == 3437
    assert code.prompt_tokens is not None and code.output_tokens is not None
    conv = load_trace("azure_conv_2023_1s.csv")
    assert conv.requests.sum() == 19366
    sg = load_trace("servegen_mlarge_days07-13_600s")
    assert sg.bucket_s == 600 and len(sg.requests) == 1008 and sg.prompt_tokens is None
    with pytest.raises(FileNotFoundError, match="packaged"):
        load_trace("no-such-trace")


def test_trace_schedule_keeps_counts_and_compresses_time() -> None:
    """At 10x, each trace second becomes 0.1 wall seconds with the same number of arrivals."""
    tr = load_trace("azure_conv_2023_1s")
    s = ArrivalSchedule(trace=tr, time_compression=10, seed=1)
    assert s.duration_s == pytest.approx(tr.duration_s / 10)
    counts = step_counts(s, 0.1)
    assert np.array_equal(counts, tr.requests)
    arr = s.window(0, 1.0)
    assert np.all(np.diff(arr.times) >= 0)
    assert np.nanmean(arr.prompt_tokens) > 100  # per-request tokens from the bucket sums


def test_schedule_deterministic_and_window_independent() -> None:
    """Same seed, same arrivals, however the time line is cut into windows."""
    prof = Profile.from_dict({"type": "sine", "mean": 30, "amplitude": 20, "periodS": 10})
    a = ArrivalSchedule(profile=prof, seed=5, duration_s=20)
    b = ArrivalSchedule(profile=prof, seed=5, duration_s=20)
    whole = a.window(0, 20).times
    parts = np.concatenate([b.window(t, t + 0.37).times for t in np.arange(0, 20, 0.37)])
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, ArrivalSchedule(profile=prof, seed=6, duration_s=20).window(0, 20).times)


@pytest.mark.parametrize(
    ("profile", "t", "rate"),
    [
        ({"type": "constant", "rate": 7}, [0, 100], [7, 7]),
        ({"type": "step", "base": 5, "peak": 60, "atS": 30, "untilS": 90}, [0, 30, 89, 90], [5, 60, 60, 5]),
        ({"type": "ramp", "from": 0, "to": 100, "durationS": 100}, [0, 50, 200], [0, 50, 100]),
        ({"type": "sine", "mean": 10, "amplitude": 20, "periodS": 40}, [0, 10, 30], [10, 30, 0]),
        ({"type": "bursts", "base": 1, "burstRate": 50, "everyS": 60, "burstS": 5}, [0, 4, 5, 61], [50, 50, 1, 50]),
    ],
    ids=["constant", "step", "ramp", "sine-clipped-at-zero", "bursts"],
)
def test_profile_rates(profile: dict[str, object], t: list[float], rate: list[float]) -> None:
    """Each synthetic profile has the documented rate function."""
    assert Profile.from_dict(profile).rate(t) == pytest.approx(rate)


def test_profile_by_name_and_loop() -> None:
    """A profile may be named alone; loop repeats it (a step every atS + untilS seconds)."""
    step = Profile.from_dict("step")
    assert step.kind == "step" and step.params["peak"] > step.params["base"]
    prof = Profile.from_dict({"type": "step", "base": 0, "peak": 100, "atS": 1, "untilS": 2})
    assert prof.period_s == 3
    s = ArrivalSchedule(profile=prof, loop=True, duration_s=9, seed=1)
    counts = step_counts(s, 1.0)
    assert counts[[0, 2, 3, 5, 6, 8]].sum() == 0 and min(counts[[1, 4, 7]]) > 50


def test_profile_arrivals_match_rate_with_scaling() -> None:
    """Poisson arrivals of a constant profile average rate x rateScale x timeCompression."""
    s = ArrivalSchedule(profile=Profile.from_dict({"type": "constant", "rate": 20}), rate_scale=1.5,
                        time_compression=2, duration_s=200, seed=3)
    assert len(s.window(0, 200)) / 200 == pytest.approx(60, rel=0.05)


def test_trace_step_counts_splits_coarse_buckets() -> None:
    """A 600 s bucket becomes 600 one-second steps with the same total, spread uniformly."""
    sg = load_trace("servegen_mlarge_days07-13_600s")
    steps = trace_step_counts(sg, 1.0, rate_scale=0.1, seed=2)
    assert steps.shape == (1008 * 600,)
    per_bucket = steps.reshape(1008, 600).sum(1)
    assert np.all(np.abs(per_bucket - sg.requests * 0.1) <= 1)
    assert steps[:600].std() < 3 * np.sqrt(steps[:600].mean())  # Poisson-like, not a burst


def _write(path: Path, head: str, rows: list[str]) -> Path:
    path.write_text(head + "\n" + "\n".join(rows) + "\n")
    return path


def test_sub_second_buckets_are_summed_into_steps(tmp_path: Path) -> None:
    """A 100 ms trace (timestamps in milliseconds, binned finely) replays as the per-second sums."""
    counts = np.random.default_rng(1).poisson(0.7, 600)
    tr = load_trace(_write(tmp_path / "ms.csv", "# bucket_seconds=0.1\nt_seconds,requests",
                           [f"{i / 10:.1f},{c}" for i, c in enumerate(counts)]))
    assert tr.bucket_s == 0.1
    steps = trace_step_counts(tr, 1.0, seed=3)
    assert np.array_equal(steps, counts.reshape(60, 10).sum(1))


def test_buckets_of_a_fraction_of_steps_keep_totals_and_tokens_per_request() -> None:
    """2.5 s buckets spread evenly over 1 s: the total, and the tokens per request, are kept."""
    tr = Trace("x", 2.5, np.array([10.0, 0.0, 5.0]), prompt_tokens=np.array([1000.0, 0.0, 500.0]))
    one = rebucket(tr, 1.0)
    assert one.requests.tolist() == pytest.approx([4, 4, 2, 0, 0, 2, 2, 1])
    assert one.prompt_tokens is not None
    assert np.allclose(one.prompt_tokens, 100 * one.requests)  # 100 tokens per request throughout
    assert trace_step_counts(tr, 1.0, seed=0).sum() == pytest.approx(15, abs=2)


def test_trace_columns_by_alias_with_unknown_token_cells(tmp_path: Path) -> None:
    """Token columns are found under their usual aliases, other columns are ignored, empty token cells
    take the trace's mean per request, and the bucket comes from t_seconds when no comment gives it."""
    tr = load_trace(_write(tmp_path / "t.csv", "t_seconds,Requests,date,input_tokens,completion_tokens",
                           ["0,2,2024-05-01 10:00,200,20", "5,4,2024-05-01 10:05,,40", "10,0,2024-05-01 10:10,,"]))
    assert tr.bucket_s == 5 and tr.requests.tolist() == [2, 4, 0]
    assert tr.prompt_tokens is not None and tr.prompt_tokens.tolist() == [200, 400, 0]
    assert tr.output_tokens is not None and tr.output_tokens.tolist() == [20, 40, 0]


def test_a_trace_without_times_is_one_bucket_a_row(tmp_path: Path) -> None:
    """Only `requests` is required: without `t_seconds` or a bucket comment, each row is one second."""
    tr = load_trace(_write(tmp_path / "t.csv", "requests", ["3", "0", "5"]))
    assert tr.bucket_s == 1 and tr.requests.tolist() == [3, 0, 5] and tr.prompt_tokens is None


def test_rows_go_to_the_bucket_their_time_says(tmp_path: Path) -> None:
    """A file that leaves out its empty buckets keeps its real time axis (counted from its first row): otherwise a
    sparse trace would replay 4x too fast. Times that would merge rows (unsorted, or a row index under a 600 s
    bucket) leave the file's order, as before."""
    tr = load_trace(_write(tmp_path / "t.csv", "t_seconds,requests,prompt_tokens",
                           ["1000,5,50", "1003,9,90", "1009,3,30"]))
    assert tr.bucket_s == 3 and tr.requests.tolist() == [5, 9, 0, 3]
    assert tr.prompt_tokens is not None and tr.prompt_tokens.tolist() == [50, 90, 0, 30]
    dense = load_trace(_write(tmp_path / "d.csv", "# bucket_seconds=1\nt_seconds,requests", ["0,2", "1,0", "2,7"]))
    assert dense.requests.tolist() == [2, 0, 7]
    index = load_trace(_write(tmp_path / "i.csv", "# bucket_seconds=600\nt_seconds,requests", ["0,2", "1,4", "2,7"]))
    assert index.requests.tolist() == [2, 4, 7]


@pytest.mark.parametrize(
    ("rows", "match"),
    [(["0,3", "1,-1"], r"t\.csv:3: requests must be a number >= 0, got '-1'"),
     (["0,3", "1,"], r"t\.csv:3: requests must be .* got ''"),
     (["0,nan"], r"t\.csv:2: requests"),
     (["0,x"], r"t\.csv:2: requests"),
     ([], r"t\.csv: no rows after the header")])
def test_bad_request_counts_name_the_line(tmp_path: Path, rows: list[str], match: str) -> None:
    """A request count that is missing, negative or not a number is an error naming the file and line; a header
    without rows is an error too (it used to reach the oracle and fail there with an IndexError)."""
    with pytest.raises(ValueError, match=match):
        load_trace(_write(tmp_path / "t.csv", "t_seconds,requests", rows))


@pytest.mark.parametrize(
    ("block", "match"),
    [({}, "exactly one"), ({"trace": "x", "profile": {"type": "constant"}}, "exactly one"),
     ({"profile": {"type": "square"}}, "unknown profile"), ({"trace": "x", "routing": "random"}, "routing"),
     ({"trace": "x", "speed": 2}, "unknown load keys")],
    ids=["empty", "both", "bad-profile", "bad-routing", "unknown-key"],
)
def test_load_spec_errors(block: dict[str, object], match: str) -> None:
    """Invalid load blocks are rejected with a message naming the problem."""
    with pytest.raises(ValueError, match=match):
        LoadSpec.from_dict(block)


def test_load_spec_fields() -> None:
    """camelCase keys map onto the spec; closedLoop selects the closed-loop mode."""
    spec = LoadSpec.from_dict({"trace": "azure_code_2023_1s", "timeCompression": 10, "rateScale": 2,
                               "routing": "round-robin", "seed": 4})
    assert (spec.trace, spec.time_compression, spec.rate_scale, spec.routing, spec.seed) == (
        "azure_code_2023_1s", 10, 2, "round-robin", 4)
    closed = LoadSpec.from_dict({"closedLoop": {"clients": 3, "thinkTimeMs": 5}})
    assert closed.clients == 3 and closed.think_time_s == pytest.approx(0.005) and closed.schedule() is None


def pods(n: int, **serving: float) -> list[SimPod]:
    cfg = ServingConfig(**serving) if serving else ServingConfig(concurrency=2, service_time_ms=20)  # type: ignore[arg-type]
    out = [SimPod(namespace="ns", name=f"d-{i}", deployment="d", serving=cfg, uid=f"u{i}", seed=i) for i in range(n)]
    for p in out:
        p.ready = True
    return out


async def test_open_loop_spreads_over_ready_pods_only() -> None:
    """Open-loop arrivals go to ready, non-terminating pods only, least-queue spreads them evenly."""
    ps = pods(3)
    ps[2].terminate()
    driver = LoadDriver(LoadSpec.from_dict({"profile": {"type": "constant", "rate": 100}, "durationS": 1.0}),
                        lambda: ps)
    driver.start()
    await asyncio.wait_for(driver.wait(), 5)
    st = driver.stats
    assert 60 < st.requests < 140
    got = [p.replica.counters.success + p.replica.running + p.replica.pending for p in ps]
    assert got[2] == 0 and abs(got[0] - got[1]) <= max(3, 0.2 * st.requests)
    assert st.unserved == 0
    slo = st.slo(10000)
    assert slo["requests"] == st.requests and 0 <= slo["violationFraction"] <= 1


async def test_open_loop_without_pods_counts_unserved() -> None:
    """With no ready pod, requests are recorded as unserved and count as SLO violations."""
    driver = LoadDriver(LoadSpec.from_dict({"profile": {"type": "constant", "rate": 100}, "durationS": 0.3}),
                        lambda: [])
    driver.start()
    await asyncio.wait_for(driver.wait(), 5)
    assert driver.stats.requests > 0 and driver.stats.unserved == driver.stats.requests
    assert driver.stats.slo(10000)["violationFraction"] == 1.0


async def test_closed_loop_keeps_n_requests_in_flight() -> None:
    """N closed-loop clients never have more than N requests outstanding; throughput ~ N / latency."""
    ps = pods(1, concurrency=4, service_time_ms=50)
    driver = LoadDriver(LoadSpec.from_dict({"closedLoop": {"clients": 2}, "durationS": 1.0}), lambda: ps)
    driver.start()
    peak = 0
    for _ in range(20):
        await asyncio.sleep(0.05)
        ps[0].sync()
        peak = max(peak, ps[0].replica.running + ps[0].replica.pending)
    await asyncio.wait_for(driver.wait(), 5)
    assert peak <= 2
    assert 25 <= driver.stats.requests <= 45  # 2 clients x 1 s / 50 ms = 40
    assert driver.stats.slo(1000)["violations"] == 0  # 2 clients never queue on 4 slots


def test_stats_series() -> None:
    """Rate and violation series bucket the per-request record by arrival time."""
    st = LoadStats(started_at=100.0)
    for t, q in [(100.1, 0.0), (100.5, 0.02), (101.2, 0.0), (101.3, float("nan"))]:
        st.record(t, q, q)
    t, rate = st.rate_series(1.0)
    assert t.tolist() == [0, 1] and rate.tolist() == [2, 2]
    _, viol = st.violation_series(10000, 1.0)
    assert viol.tolist() == [0.5, 0.5]
    assert st.slo(10000, since=101.0)["violations"] == 1


def test_stats_record_is_bounded() -> None:
    """The per-request record is a rolling window, so a long-running sandbox does not grow without end."""
    st = LoadStats(max_records=10)
    for i in range(25):
        st.record(float(i), 0.0, 0.0)
    assert 5 <= st.requests <= 10 and st.arrival_times[-1] == 24.0


async def test_stopping_a_driver_keeps_its_callers_own_cancellation() -> None:
    """A caller cancelled while it waits for the driver to stop is cancelled: the driver's end is not its own."""
    driver = LoadDriver(LoadSpec.from_dict({"profile": {"type": "constant", "rate": 100}, "durationS": 60.0}),
                        lambda: [])
    driver.start()
    await asyncio.sleep(0.05)
    stopper = asyncio.create_task(driver.stop())
    await asyncio.sleep(0)  # the stopper has cancelled the driver and waits for it to end
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert driver.done
