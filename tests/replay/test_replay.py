"""Replay: conservation, steady state, the HPA core's decisions, the oracle bound, the CLI contract."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.commands.decide import decide_document
from autoscaler.commands.replay import ProgressBars
from autoscaler.config import ClusterPolicy, load_policy
from autoscaler.replay import policies as policies_pkg
from autoscaler.replay.oracle import cheapest_within, run_oracle
from autoscaler.replay.policies import PolicyContext, ReplaySettings, make_policy, register_algorithm
from autoscaler.replay.policies.hpa import HpaPolicy, snapshot_to_json
from autoscaler.replay.promql import extrapolated_rate
from autoscaler.replay.report import criteria, criteria_table, frontier_sentence, summarize
from autoscaler.replay.run import replay
from autoscaler.replay.sim import PolicyRun, simulate
from autoscaler.replay.workload import DEFAULT_SERVING, Workload, build_workload, replica_capacity_rps

REPO = Path(__file__).resolve().parents[2]
SHIPPED = load_policy(REPO / "config" / "policy.yaml")
SETTINGS = ReplaySettings(serving=DEFAULT_SERVING, startup_s=60.0, max_replicas=16)


def workload(counts: np.ndarray, name: str = "synthetic") -> Workload:
    svc = DEFAULT_SERVING.service_seconds()
    cap = replica_capacity_rps(DEFAULT_SERVING, svc, 10000.0)
    return Workload(name, counts.astype(np.float64), None, None, 1.0, float(counts.max()), cap, svc, 1.0)


def poisson(rates: np.ndarray, seed: int = 1) -> np.ndarray:
    out: np.ndarray = np.random.default_rng(seed).poisson(rates).astype(np.float64)
    return out


@pytest.mark.parametrize("policy", ["hpa", "hpa-gpu", "keda", "kpa", "default", "default+zero"])
def test_requests_are_conserved(policy: str) -> None:
    """Every arrival is served, still queued at the end, or dropped: nothing appears or vanishes."""
    rates = np.concatenate([np.full(300, 20.0), np.full(300, 150.0), np.full(300, 5.0), np.full(300, 90.0)])
    w = workload(poisson(rates))
    run = simulate(w, make_policy(policy, PolicyContext(SETTINGS, SHIPPED)), SETTINGS)
    assert run.arrived.sum() == pytest.approx(run.served.sum() + run.queued_end + run.dropped.sum(), rel=1e-9)
    assert run.gpu_seconds >= run.ready_replicas.sum() - 1e-6


def test_requests_that_find_no_pod_are_dropped_once_when_a_woken_pod_starts_inside_a_block() -> None:
    """Scale to zero with a 5-s start-up: a woken pod becomes Ready inside the simulator's 64-s block, which is cut
    there and run again; the arrivals before the cut, with no pod to take them, are dropped once, not twice."""
    rates = np.zeros(3600)
    rates[300:900] = rates[2700:3300] = 100.0
    w = workload(poisson(rates))
    s = replace(SETTINGS, startup_s=5.0)
    run = simulate(w, make_policy("default+zero", PolicyContext(s, SHIPPED, {"zero.idleSeconds": 300})), s)
    assert run.dropped.sum() > 0
    assert run.arrived.sum() == pytest.approx(run.served.sum() + run.queued_end + run.dropped.sum(), rel=1e-9)
    assert (run.dropped <= run.arrived + 1e-9).all()


def test_constant_load_with_enough_replicas_keeps_the_queue_empty() -> None:
    """A constant 40 req/s on 6 replicas (~80 req/s of capacity at the target) never queues."""
    w = workload(np.full(900, 40.0))
    s = ReplaySettings(serving=DEFAULT_SERVING, min_replicas=6, max_replicas=6, initial_replicas=6)
    run = simulate(w, make_policy("hpa", PolicyContext(s)), s)
    assert run.queued_end == pytest.approx(0.0, abs=1e-9)
    assert run.dropped.sum() == 0
    assert run.served.sum() == pytest.approx(run.arrived.sum())
    assert summarize(run)["sloViolationFraction"] < 1e-3
    assert run.scale_events == 0


def test_hpa_decisions_equal_autoscaler_decide() -> None:
    """Each replayed hpa decision equals `autoscaler decide` on the same snapshot and state."""
    rates = np.concatenate([np.full(200, 30.0), np.linspace(30, 200, 400), np.full(400, 20.0)])
    w = workload(poisson(rates, seed=3))
    policy = make_policy("hpa", PolicyContext(SETTINGS))
    assert isinstance(policy, HpaPolicy)
    policy.record = []
    run = simulate(w, policy, SETTINGS)
    assert run.scale_events >= 2  # the trace makes it scale both ways
    assert len(policy.record) == len(w.counts) // 15
    for snap, state, decision in policy.record:
        out = decide_document(json.loads(json.dumps(snapshot_to_json(snap, state))))
        assert out["desiredReplicas"] == decision.desired_replicas, snap.now
        assert out["reason"] == decision.reason
        assert out["state"]["scaleEvents"] == [{"timestamp": e.timestamp, "change": e.change}
                                               for e in decision.state.scale_events]


@pytest.mark.parametrize(("trace", "start", "length"), [
    ("azure_conv_2023_1s", 600, 900), ("azure_code_2023_1s", 1200, 900), ("synthetic-steps", 0, 1200),
])
def test_the_oracle_is_never_beaten(trace: str, start: int, length: int) -> None:
    """No policy has both fewer GPU-seconds and no more SLO violations than the oracle."""
    if trace == "synthetic-steps":
        w = workload(poisson(np.repeat([10.0, 120.0, 40.0, 200.0, 15.0], 240), seed=7))
    else:
        full = build_workload(trace, DEFAULT_SERVING, peak_replicas=8, duration_s=start + length)
        w = Workload(trace, full.counts[start:], None if full.prompt_per_request is None else
                     full.prompt_per_request[start:], None if full.output_per_request is None else
                     full.output_per_request[start:], full.rate_scale, full.peak_rate_rps,
                     full.replica_capacity_rps, full.mean_service_s, 1.0)
    oracle = summarize(run_oracle(w, SETTINGS))
    for name in ("hpa", "hpa-gpu", "keda", "kpa", "default"):
        s = summarize(simulate(w, make_policy(name, PolicyContext(SETTINGS, SHIPPED)), SETTINGS))
        beats = (s["gpuSeconds"] < oracle["gpuSeconds"]
                 and s["sloViolationFraction"] <= oracle["sloViolationFraction"])
        assert not beats, (name, s["gpuSeconds"], s["sloViolationFraction"], oracle)


@pytest.mark.parametrize("budget", [0.0, 0.05, 0.2, 0.5])
def test_the_frontier_bound_brackets_the_cheapest_schedule(budget: float) -> None:
    """The cheapest cost within a violation budget, found by trying every schedule of a small problem, lies
    inside the bound's bracket, and the bracket's upper end is a schedule that exists."""
    import itertools

    rng = np.random.default_rng(11)
    T, ns, startup = 6, np.array([1.0, 2.0, 3.0]), 2.0
    need = rng.uniform(0.5, 3.5, T)  # violations fall as replicas pass each step's need
    V = np.maximum(0.0, need[:, None] - ns[None, :]).astype(np.float32) * 10
    total = 100.0
    costs = []
    for path in itertools.product(range(3), repeat=T):
        n = ns[list(path)]
        v = float(V[np.arange(T), list(path)].sum())
        if v <= budget * total:
            costs.append(float(n.sum() + startup * np.maximum(0.0, np.diff(n, prepend=n[0])).sum()))
    bound = cheapest_within(V, ns, startup, total, budget, rel_tol=0.0, max_schedules=40)
    if not costs:
        assert bound.gpu_seconds_upper == float("inf") and bound.verdict(1e9) is False
    else:
        best = min(costs)
        assert bound.gpu_seconds_lower <= best + 1e-6
        assert min(abs(c - bound.gpu_seconds_upper) for c in costs) < 1e-6  # a schedule within the budget
        assert bound.verdict(bound.gpu_seconds_upper) is True
        assert bound.verdict(bound.gpu_seconds_lower - 1.0) is False


def test_the_frontier_bracket_closes_from_an_oracle_kappa_at_its_cap() -> None:
    """Where no fleet meets the oracle's own budget its kappa sits at the cap (2^40), decades above the checks'
    level: within the default 12 schedules its lower end is as tight as 80 schedules make it, its upper end near (it used
    to walk down by 8x a step and stop with no lower bound at all and an upper end 16 % too high on a day of
    per-second bursts)."""
    rng = np.random.default_rng(5)
    T, ns, startup = 400, np.arange(1.0, 11.0), 30.0
    need = rng.gamma(0.5, 6.0, T) + 1.0  # bursts: even 10 replicas leave some steps violating
    V = (np.maximum(0.0, need[:, None] - ns[None, :]) * 10).astype(np.float32)
    total = 1000.0 * T
    budget = float(V[:, -1].sum()) / total * 1.5
    best = cheapest_within(V, ns, startup, total, budget, rel_tol=0.0, max_schedules=80)  # as tight as it gets
    known = (2.0**40, float(V[:, -1].sum()), float(ns[-1] * T))  # the oracle at the cap: the largest fleet
    bound = cheapest_within(V, ns, startup, total, budget, known=known)
    assert bound.gpu_seconds_lower >= 0.98 * best.gpu_seconds_lower > 0
    assert bound.gpu_seconds_upper <= 1.1 * best.gpu_seconds_upper  # was 1.28x


def test_default_resolves_to_the_configured_algorithm() -> None:
    """`default` is whatever the cluster policy's algorithm names; a new algorithm is one registration."""
    seen: list[str] = []
    policies_pkg.policy_names()  # every module registered first: none of them may replace this test's factory later
    saved = dict(policies_pkg._ALGORITHMS)

    @register_algorithm("predictive")
    def make(ctx: PolicyContext) -> HpaPolicy:
        seen.append(ctx.cluster_policy.autoscaling.algorithm)
        return HpaPolicy("p", 5.0, {"queueTime": 10000.0}, SHIPPED.autoscaling.behavior.to_behavior(), 1, 4)

    cp = ClusterPolicy.model_validate({"autoscaling": {"algorithm": "predictive"}})
    try:
        policy = make_policy("default", PolicyContext(SETTINGS, cp))
    finally:
        policies_pkg._ALGORITHMS.clear()
        policies_pkg._ALGORITHMS.update(saved)
    assert policy.name == "default" and seen == ["predictive"]
    assert make_policy("default", PolicyContext(SETTINGS, SHIPPED)).interval_s == SHIPPED.autoscaling.loop_interval_s


@pytest.mark.parametrize(("times", "values", "end", "expected"), [
    ([15, 30, 45, 60], [10, 20, 30, 40], 60, 40 / 60),  # aligned: extrapolate 15 s to the start
    ([5, 20, 35, 50], [0, 15, 30, 45], 60, 45 * (45 + 0 + 10) / 45 / 60),  # from zero: no extrapolation back
    ([50, 58], [3, 5], 60, 2 * (8 + 4 + 2) / 8 / 60),  # far from the start: half an interval
    ([59], [7], 60, float("nan")),  # one sample: no result
], ids=["aligned", "counter-starts-in-window", "two-samples", "one-sample"])
def test_rate_extrapolates_like_prometheus(times: list[float], values: list[float], end: float,
                                           expected: float) -> None:
    """rate() over 1 m follows Prometheus's extrapolatedRate, including the cap at the counter's zero."""
    got = extrapolated_rate(np.array([times], float), np.array([values], float), end, 60.0)[0]
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_cli_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`autoscaler replay --json` prints the contract's fields for every policy and nothing else."""
    trace = tmp_path / "t.csv"
    rng = np.random.default_rng(5)
    rows = "\n".join(f"{i},{n}" for i, n in enumerate(rng.poisson(np.repeat([3.0, 12.0, 4.0], 200))))
    trace.write_text(f"# bucket_seconds=1\nt_seconds,requests\n{rows}\n")
    png = tmp_path / "p.png"
    rc = main(["replay", "--trace", str(trace), "--policies", "hpa,keda,kpa,default,oracle", "--peak-replicas", "6",
               "--startup-seconds", "30", "--json", "--plot", str(png)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["trace"] == "t" and png.stat().st_size < 200_000
    assert set(out["policies"]) == {"hpa", "keda", "kpa", "default", "oracle"}
    for fig in out["policies"].values():
        assert 0.0 <= fig["sloViolationFraction"] <= 1.0
        assert fig["gpuSeconds"] > 0 and fig["p99QueueTimeUs"] >= 0
        assert isinstance(fig["scaleEvents"], int) and 1 <= fig["peakReplicas"] <= 12
    # whether any schedule could meet issue 8's checks together: said only where `default` misses one
    assert ("checksFrontier" in out) == any(ok is False for _n, ok, _f in criteria(out["policies"]))


def test_a_missed_check_says_whether_any_schedule_could_meet_them(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """When `default` misses a check (here made careless on purpose), the replay says whether the oracle's exact
    DP finds a schedule that meets every check, with the cost bracket; one that meets them all says nothing."""
    trace = tmp_path / "t.csv"
    rng = np.random.default_rng(5)
    rows = "\n".join(f"{i},{n}" for i, n in enumerate(rng.poisson(np.repeat([3.0, 12.0, 4.0], 200))))
    trace.write_text(f"# bucket_seconds=1\nt_seconds,requests\n{rows}\n")
    args = ["replay", "--trace", str(trace), "--peak-replicas", "6", "--startup-seconds", "30", "--json"]
    assert main([*args, "--policy-option", "predictive.violationTarget=0.9"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any(ok is False for _n, ok, _f in criteria(out["policies"]))
    frontier = out["checksFrontier"]
    target = min(0.5 * out["policies"]["hpa"]["sloViolationFraction"], out["policies"]["keda"]["sloViolationFraction"],
                 out["policies"]["kpa"]["sloViolationFraction"])
    assert frontier["violationFraction"] == pytest.approx(target)
    lo, up, limit = (frontier[k] for k in ("cheapestGpuSecondsLower", "cheapestGpuSecondsUpper", "gpuSecondsLimit"))
    assert lo <= up and frontier["feasible"] == (True if up <= limit else False if lo > limit else None)
    assert main([*args[:-1], "--policy-option", "predictive.violationTarget=0.9"]) == 0
    assert "The cheapest schedule there" in capsys.readouterr().out


def test_a_100ms_trace_replays_as_its_per_second_sums(tmp_path: Path) -> None:
    """A trace binned at 100 ms gives the same workload (arrivals, tokens per request) as its 1 s sums."""
    rng = np.random.default_rng(2)
    n = rng.poisson(np.repeat([0.3, 1.5, 0.5], 1000))
    fine = tmp_path / "fine.csv"
    fine.write_text("# bucket_seconds=0.1\nt_seconds,requests,prompt_tokens,output_tokens\n" + "".join(
        f"{i / 10:.1f},{k},{k * 900},{k * 90}\n" for i, k in enumerate(n)))
    s = n.reshape(-1, 10).sum(1)
    coarse = tmp_path / "coarse.csv"
    coarse.write_text("# bucket_seconds=1\nt_seconds,requests,prompt_tokens,output_tokens\n" + "".join(
        f"{i},{k},{k * 900},{k * 90}\n" for i, k in enumerate(s)))
    a, b = build_workload(fine, DEFAULT_SERVING), build_workload(coarse, DEFAULT_SERVING)
    assert a.steps == b.steps == 300 and np.array_equal(a.counts, b.counts)
    assert a.prompt_per_request is not None and b.prompt_per_request is not None
    assert np.allclose(a.prompt_per_request, b.prompt_per_request)
    assert a.mean_service_s == pytest.approx(b.mean_service_s) == pytest.approx(0.03 + 0.045 + 0.135)


def test_cli_rejects_unknown_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown policy name exits 2 with the list of known ones."""
    assert main(["replay", "--trace", "azure_conv_2023_1s", "--policies", "nope"]) == 2
    assert "known" in capsys.readouterr().err


def test_scale_to_zero_trades_idle_gpu_seconds_for_the_requests_that_wake_it() -> None:
    """`NAME+zero` runs the controller's scale-to-zero core over the gateway's request rate: zero replicas only
    after a whole idle period without arrivals, GPU-seconds saved in the gap, the requests that come while at zero
    or while the woken pod starts dropped (violations); sized from the demand with a wake target, fewer of them."""
    rates = np.zeros(3600)
    rates[300:900] = rates[2700:3300] = 100.0
    w = workload(poisson(rates))
    settings = SETTINGS  # 60-s start-up, 15-s scrapes, 60-s rate window

    def run(name: str, **opts: float) -> tuple[dict[str, float], np.ndarray, float]:
        r = simulate(w, make_policy(name, PolicyContext(settings, SHIPPED, {f"zero.{k}": v for k, v in opts.items()})),
                     settings)
        return summarize(r), r.spec_replicas, float(r.dropped.sum())

    floor, floor_spec, floor_dropped = run("default")
    zero, spec, dropped = run("default+zero", idleSeconds=300)
    sized, _, _ = run("default+zero", idleSeconds=300, wakeTargetPerReplica=w.replica_capacity_rps)
    stz = SHIPPED.autoscaling.scale_to_zero.model_copy(update={"wake_target": "auto"})
    auto_policy = SHIPPED.model_copy(update={"autoscaling": SHIPPED.autoscaling.model_copy(
        update={"scale_to_zero": stz})})
    r = simulate(w, make_policy("default+zero", PolicyContext(settings, auto_policy, {"zero.idleSeconds": 300})),
                 settings)
    auto, auto_spec = summarize(r), r.spec_replicas
    assert floor_spec.min() == 1 and floor_dropped == 0
    assert spec[:300].max() == 0  # idle from the start: zero at once (the first minute needs no replica)
    at_zero = np.flatnonzero(spec[900:2700] == 0)
    assert at_zero.size and at_zero[0] >= 300, "zero replicas before a whole idle period after the last arrival"
    assert spec[2700 + 120:3300].min() >= 1  # woken by the second burst
    idle = int((spec == 0).sum())  # seconds at zero, where the floored policy pays for one replica
    assert idle > 1000 and zero["gpuSeconds"] < floor["gpuSeconds"] - 0.5 * idle
    assert dropped > 0 and zero["sloViolationFraction"] > floor["sloViolationFraction"]  # the cold starts' price
    assert sized["sloViolationFraction"] < zero["sloViolationFraction"]  # woken to the burst's fleet at once
    # auto: the first wake knows no service time (one replica, as `zero`); the second is sized as the predictive
    # policy sizes the gateway's rate, from the service time it measured in the first burst
    woken = [t for t in range(1, auto_spec.size) if auto_spec[t - 1] == 0 < auto_spec[t]]
    assert len(woken) == 2 and auto_spec[woken[0]] == 1 and auto_spec[woken[1]] > 1, woken
    assert auto["sloViolationFraction"] < zero["sloViolationFraction"]


def test_an_activator_in_front_holds_what_comes_at_zero_for_the_woken_pods() -> None:
    """`zero.holdSeconds`: the requests that find no Ready pod are held (late, so violations) and the woken pods
    serve them, none dropped while they wait less than the hold; past it they are dropped (the activator's 504)."""
    rates = np.zeros(3600)
    rates[300:900] = rates[2700:3300] = 100.0
    w = workload(poisson(rates))  # a 60-s start-up: ~6,000 requests come while the lease wakes each time

    def run(hold: float, startup: float = 60.0) -> PolicyRun:
        s = replace(SETTINGS, startup_s=startup)
        return simulate(w, make_policy("default+zero", PolicyContext(
            s, SHIPPED, {"zero.idleSeconds": 300, "zero.holdSeconds": hold})), s)

    for r in (dropping := run(0), held := run(300), short := run(30, startup=120)):
        assert r.arrived.sum() == pytest.approx(r.served.sum() + r.queued_end + r.dropped.sum(), rel=1e-9)
    assert dropping.dropped.sum() > 5000 and held.dropped.sum() == 0  # every one served, none lost
    # held at zero and while the first pod starts: every one a violation, as a dropped one is
    assert held.violations[300:355].sum() == held.arrived[300:355].sum() == dropping.dropped[300:355].sum()
    # the held backlog reaches the woken pods at once: more violations after the wake than dropping them, not fewer
    assert summarize(held)["sloViolationFraction"] > summarize(dropping)["sloViolationFraction"]
    assert summarize(held)["p99QueueTimeUs"] > summarize(dropping)["p99QueueTimeUs"]  # the wait is their queue time
    assert 0 < short.dropped.sum() < run(0, startup=120).dropped.sum()  # held 30 s of a 120-s start-up: most lost


def test_cli_replays_scale_to_zero_beside_the_policy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`--policies default,default+zero` with `zero.*` options; a bad option or `oracle+zero` exits 2."""
    trace = _trace(tmp_path, np.concatenate([np.full(200, 10.0), np.zeros(900), np.full(200, 10.0)]))
    rc = main(["replay", "--trace", str(trace), "--policies", "default,default+zero", "--peak-replicas", "4",
               "--startup-seconds", "30", "--policy-option", "zero.idleSeconds=120", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(out["policies"]) == {"default", "default+zero"}
    assert out["policies"]["default+zero"]["gpuSeconds"] < out["policies"]["default"]["gpuSeconds"]
    assert main(["replay", "--trace", str(trace), "--policies", "default+zero", "--policy-option",
                 "zero.idle=1"]) == 2
    assert "zero.idleSeconds" in capsys.readouterr().err
    assert main(["replay", "--trace", str(trace), "--policies", "default+zero", "--policy-option",
                 "zero.holdSeconds=-1"]) == 2
    assert "zero.holdSeconds must be >= 0" in capsys.readouterr().err
    assert main(["replay", "--trace", str(trace), "--policies", "oracle+zero"]) == 2
    assert "NAME+zero" in capsys.readouterr().err
    assert main(["replay", "--trace", str(trace), "--policies", "default+zero", "--policy-option",
                 "zero.wakeTargetPerReplica=auto", "--peak-replicas", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policies"]["default+zero"]["gpuSeconds"] > 0
    assert main(["replay", "--trace", str(trace), "--policies", "hpa+zero", "--policy-option",
                 "zero.wakeTargetPerReplica=auto"]) == 2
    assert "predictive" in capsys.readouterr().err


def test_criteria_name_each_failed_check() -> None:
    """The issue-8 checks compare `default` with each baseline; a missing baseline is unknown, not passed."""
    def s(v: float, g: float) -> dict[str, float]:
        return {"sloViolationFraction": v, "gpuSeconds": g}

    summaries = {"hpa": s(0.4, 100.0), "kpa": s(0.3, 50.0), "oracle": s(0.05, 70.0), "default": s(0.1, 90.0)}
    got = {name: ok for name, ok, _fig in criteria(summaries)}
    assert got == {"violations <= 0.5 x hpa": True, "GPU-s <= hpa": True, "GPU-s <= 1.25 x oracle": False,
                   "no worse than keda (both)": None, "no worse than kpa (both)": False}
    assert "**no**" in criteria_table(criteria(summaries))
    assert criteria({"hpa": s(0.4, 100.0)}) == []


def _trace(tmp_path: Path, rates: np.ndarray, seed: int = 3) -> Path:
    path = tmp_path / "t.csv"
    rows = "\n".join(f"{i},{n:g}" for i, n in enumerate(poisson(rates, seed)))
    path.write_text(f"# bucket_seconds=1\nt_seconds,requests\n{rows}\n")
    return path


def test_policies_replayed_in_worker_processes_give_the_same_figures(tmp_path: Path) -> None:
    """`jobs=2` (what a long trace gets) replays each policy in a worker and the oracle and the checks' frontier
    here: the same schedules, summaries and frontier as one after another; progress reaches the caller for each."""
    trace = _trace(tmp_path, np.concatenate([np.full(400, 15.0), np.full(400, 120.0), np.full(400, 30.0)]))
    names = ["hpa", "keda", "kpa", "default", "oracle"]
    seen: list[tuple[str, float]] = []
    results = [replay(trace, names, SETTINGS, SHIPPED, peak_replicas=6, jobs=jobs, frontier_always=True,
                      progress=lambda n, f: seen.append((n, f))) for jobs in (1, 2)]
    one, two = results
    assert list(two.runs) == names
    assert one.frontier is not None and one.frontier == two.frontier  # bounded while the workers ran
    for n in names:
        assert np.array_equal(one.runs[n].spec_replicas, two.runs[n].spec_replicas), n
        strip = {k: v for k, v in one.summaries[n].items() if k != "wallSeconds"}
        assert strip == {k: v for k, v in two.summaries[n].items() if k != "wallSeconds"}, n
    assert {n for n, f in seen if f >= 1.0} >= {*names, "frontier"}


@pytest.mark.parametrize(("how", "match"), [("raise", "boom at decision"),
                                             ("die", r"'boom': its worker process died \(exit code 3\)")])
def test_a_policy_failing_in_a_worker_fails_the_replay(tmp_path: Path, how: str, match: str) -> None:
    """A policy's exception in a worker process is raised to the caller, and a worker that dies without a word
    (killed, out of memory) is an error naming the policy: neither hangs the replay."""
    parent = os.getpid()

    class Boom:
        name, interval_s = "boom", 5.0

        def decide(self, view: object) -> int:
            if how == "die" and os.getpid() != parent:
                os._exit(3)
            raise RuntimeError("boom at decision")

    policies_pkg._load()
    saved = dict(policies_pkg._POLICIES)
    policies_pkg._POLICIES["boom"] = lambda ctx: Boom()  # inherited by the forked workers
    try:
        with pytest.raises(RuntimeError, match=match):
            replay(_trace(tmp_path, np.full(300, 20.0)), ["hpa", "boom"], SETTINGS, SHIPPED, peak_replicas=4, jobs=2)
    finally:
        policies_pkg._POLICIES.clear()
        policies_pkg._POLICIES.update(saved)


def test_progress_line_shows_every_running_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """With policies running at once the bar is one line naming each; it ends with a newline when all are done."""
    bars = ProgressBars()
    bars("hpa", 0.25)
    bars("default", 0.5)
    line = capsys.readouterr().err.split("\r")[-1]
    assert "hpa  25%" in line and "default  50%" in line and not line.endswith("\n")
    bars("hpa", 1.0)
    bars("default", 1.0)
    assert capsys.readouterr().err.endswith("\n")


def test_the_frontier_sentence_quotes_the_end_of_the_bracket_that_decides() -> None:
    """A schedule known to meet the limit is quoted by its cost (the bracket's upper end, even when its lower end
    has not closed in); an infeasible limit by the lower bound every schedule pays."""
    base = {"violationFraction": 0.05, "gpuSecondsLimit": 100.0}
    yes = frontier_sentence({**base, "cheapestGpuSecondsLower": 0.0, "cheapestGpuSecondsUpper": 80.0,
                             "feasible": True})
    no = frontier_sentence({**base, "cheapestGpuSecondsLower": 115.0, "cheapestGpuSecondsUpper": 116.0,
                            "feasible": False})
    assert "(0.80x the limit): some schedule meets them all" in yes
    assert "(1.15x the limit): no policy can meet them all" in no
