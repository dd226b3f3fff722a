"""Each metric kind against the real Prometheus: right per-pod values for a batch, typed failures."""

from __future__ import annotations

import math

import pytest
from metrics_testdata import OLD_NIM_POD, T0, TRITON_POD, VLLM_POD, WEB_POD

from autoscaler.metrics import (
    CpuUtilization,
    CustomPromQL,
    Empty,
    GpuUtilization,
    KvCacheUsage,
    LeaseTarget,
    MultiSeries,
    NotFinite,
    NoTraffic,
    Ok,
    Outcome,
    PodTarget,
    PrometheusClient,
    QueryError,
    QueueTime,
    Stale,
    default_registry,
    fetch,
    fetch_all,
)

pytestmark = pytest.mark.prometheus

LEASE_A = LeaseTarget.of("team-a", ["llm-a-0", "llm-a-1", "llm-a-9"])
LEASE_B = LeaseTarget("team-b", pod_regex="llm-b-[0-9]+")
LEASES = [LEASE_A, LEASE_B]
A0, A1, A9 = (PodTarget("team-a", p) for p in ("llm-a-0", "llm-a-1", "llm-a-9"))
B0, B1 = PodTarget("team-b", "llm-b-0"), PodTarget("team-b", "llm-b-1")
LEASE_C = LeaseTarget.of("team-c", [VLLM_POD, TRITON_POD])
C0, C1 = PodTarget("team-c", VLLM_POD), PodTarget("team-c", TRITON_POD)
DECOYS = {PodTarget("team-b", "llm-a-1"), PodTarget("team-b", "llm-b-x"), PodTarget("team-a", "noise-0")}


def ok(value: float) -> Ok:
    """An Ok compared approximately."""
    return Ok(pytest.approx(value))


def assert_outcomes(actual: dict[PodTarget, Outcome], expected: dict[PodTarget, Outcome]) -> None:
    """Compare outcomes, with NaN values equal to NaN."""
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        if isinstance(want, NotFinite) and isinstance(got, NotFinite) and math.isnan(want.value):
            assert math.isnan(got.value), key
        else:
            assert got == want, key


async def test_cpu_returns_cores_per_container_and_excludes_cgroup_series(client: PrometheusClient) -> None:
    """CPU: sums real containers only (no pod-level or sandbox cgroup), stale pods are flagged."""
    result = await fetch(client, CpuUtilization(), LEASES, at=T0)
    assert result.error is None
    a0 = result.for_pod(A0)
    assert isinstance(a0, Ok)
    assert a0.value == pytest.approx(1.75)
    assert dict(a0.containers or {}) == pytest.approx({"triton": 1.5, "envoy": 0.25})
    assert result.for_pod(A1) == Ok(pytest.approx(0.5), {"triton": pytest.approx(0.5)})
    assert result.for_pod(B0) == Ok(pytest.approx(2.0), {"triton": pytest.approx(2.0)})
    b1 = result.for_pod(B1)
    assert isinstance(b1, Stale) and b1.age_s == pytest.approx(240.0)
    assert result.for_pod(A9) == Empty()
    assert not DECOYS & set(result.outcomes)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param(GpuUtilization(), {A0: ok(70), A1: ok(50), A9: Empty(), B0: ok(40)}, id="dcgm-both-styles"),
        pytest.param(GpuUtilization(label_style="pod"), {A0: ok(70), A1: ok(50), A9: Empty()}, id="dcgm-pod-style"),
        pytest.param(GpuUtilization(label_style="exported"), {A0: Empty(), A1: ok(90), A9: Empty(), B0: ok(40)},
                     id="dcgm-exported-style"),
        pytest.param(GpuUtilization(aggregation="max", label_style="pod"), {A0: ok(80), A1: ok(50), A9: Empty()},
                     id="dcgm-max-over-gpus"),
        pytest.param(GpuUtilization(source="triton"), {A0: ok(33), A1: Empty(), A9: Empty()},
                     id="triton-ratio-to-percent"),
    ],
)
async def test_gpu_utilization_label_styles(client: PrometheusClient, kind: GpuUtilization,
                                            expected: dict[PodTarget, Outcome]) -> None:
    """GPU: both DCGM label styles, no double counting when a pod shows in both, multi-GPU average."""
    result = await fetch(client, kind, LEASES, at=T0)
    outcomes = dict(result.outcomes)
    stale = outcomes.pop(B1, None)
    if kind.source == "dcgm" and kind.label_style != "pod":
        assert isinstance(stale, Stale) and stale.age_s == pytest.approx(180.0) and stale.value == 70
    assert_outcomes(outcomes, expected)


@pytest.mark.parametrize("source", ["recorded", "raw"])
async def test_queue_time_per_request_and_no_traffic(client: PrometheusClient, source: str) -> None:
    """Queue time: request-weighted over gpu_uuid splits; 0/0 is NoTraffic, x/0 is NotFinite."""
    result = await fetch(client, QueueTime(source=source), LEASES, at=T0)  # type: ignore[arg-type]
    expected: dict[PodTarget, Outcome] = {A0: ok(600), A1: NoTraffic(0.0), A9: Empty(), B0: ok(2000)}
    if source == "raw":
        expected[B1] = NotFinite(math.inf)
    assert_outcomes(dict(result.outcomes), expected)


@pytest.mark.parametrize("source", ["recorded", "raw"])
async def test_queue_time_of_a_vllm_pod_is_its_histograms_mean(client: PrometheusClient, source: str) -> None:
    """A pod without Triton's counters is read from vLLM's queue-time histogram (summed over its engines, seconds to
    microseconds); a Triton pod of the same lease is read from Triton's counters, in the same query."""
    result = await fetch(client, QueueTime(source=source), [LEASE_C], at=T0)  # type: ignore[arg-type]
    assert_outcomes(dict(result.outcomes), {C0: ok(50_000), C1: ok(300)})


async def test_request_stats_of_triton_and_vllm_pods_in_one_query(client: PrometheusClient) -> None:
    """requestStats reads each pod from the server it runs: a vLLM pod's finished requests (every reason), inference
    and queue time (seconds to microseconds) and waiting requests, summed over its engines; a Triton pod's counters.
    So service time (compute / success_long) and queue time per request come out in the same units for both."""
    from autoscaler.metrics.kinds.request_stats import RequestStats

    result = await fetch(client, RequestStats(), [LEASE_C], at=T0)
    vllm, triton = result.outcomes[C0], result.outcomes[C1]
    assert isinstance(vllm, Ok) and isinstance(triton, Ok), result.outcomes
    assert vllm.value == pytest.approx(5.0) and triton.value == pytest.approx(2.5)  # the aborted ones arrived too
    assert vllm.parts == pytest.approx({"success": 5.0, "success_long": 4.0, "compute_us": 8e6, "queue_us": 2e5,
                                        "pending": 5.0, "slots": 16.0, "batch": 16.0, "vllm": 1.0})  # NIM's slots
    # the batch it runs while requests keep waiting: 6 + 10 running over its two engines
    assert triton.parts == pytest.approx({"success": 2.0, "failure": 0.5, "success_long": 2.0, "compute_us": 2e5,
                                          "queue_us": 600.0, "pending": 1.0})
    # 2 s per request that ran: the requests aborted while waiting do not shorten it
    assert vllm.parts["compute_us"] / vllm.parts["success_long"] / 1e6 == pytest.approx(2.0)


async def test_request_stats_of_an_older_nim_by_littles_law(client: PrometheusClient) -> None:
    """A pod with only NIM's un-prefixed names (an older NIM image): its finished and failed requests, and, without
    time counters, its service and queue time by Little's law from the running and waiting gauges (8 running at
    4 req/s: 2 s a request; 2 waiting: 0.5 s); its slots from num_request_max. Another application's pod with a
    request_success_total but no num_request_max is not read as NIM; queueTime reads the NIM pod the same way."""
    from autoscaler.metrics.kinds.request_stats import TRITON, VLLM, RequestStats

    lease = LeaseTarget.of("team-d", [OLD_NIM_POD, WEB_POD])
    result = await fetch(client, RequestStats(), [lease], at=T0)
    nim, web = result.outcomes[PodTarget("team-d", OLD_NIM_POD)], result.outcomes[PodTarget("team-d", WEB_POD)]
    assert isinstance(nim, Ok) and isinstance(web, Empty), result.outcomes
    assert nim.value == pytest.approx(5.0)
    assert nim.parts == pytest.approx({"success": 4.0, "failure": 1.0, "success_long": 4.0, "compute_us": 8e6,
                                       "queue_us": 2e6, "pending": 2.0, "slots": 16.0, "batch": 8.0, "vllm": 1.0,
                                       "kv_fit": 16.0})  # 8 running in half its KV cache
    assert nim.parts["compute_us"] / nim.parts["success_long"] / 1e6 == pytest.approx(2.0)
    queue = await fetch(client, QueueTime(source="raw"), [lease], at=T0)
    assert queue.outcomes[PodTarget("team-d", OLD_NIM_POD)] == Ok(pytest.approx(5e5))
    assert isinstance(queue.outcomes[PodTarget("team-d", WEB_POD)], Empty), queue.outcomes
    without = await fetch(client, RequestStats(servers=(TRITON, VLLM)), [lease], at=T0)
    assert isinstance(without.outcomes[PodTarget("team-d", OLD_NIM_POD)], Empty)


async def test_a_batch_is_read_only_while_requests_keep_waiting(client: PrometheusClient) -> None:
    """requestStats' ``batch`` part (what the controller learns a vLLM lease's slots from) is a pod's running
    requests only while some waited at every scrape of the window: a pod whose requests waited at the last scrape
    only (one scheduler step) has none; and the history query finds the saturated pod's batch."""
    from autoscaler.metrics import InstantVector
    from autoscaler.metrics.kinds.request_stats import TRITON, RequestStats

    kind = RequestStats()
    result = await fetch(client, kind, LEASES, at=T0)
    (a0,) = [o for t, o in result.outcomes.items() if t.pod == "llm-a-0"]
    assert isinstance(a0, Ok) and a0.parts is not None and a0.parts["pending"] == 1.0, a0
    assert "batch" not in a0.parts, a0.parts
    history = await client.query(kind.batch_history("team-c", "chat", 300.0), at=T0)
    assert isinstance(history, InstantVector), history
    assert [(s.labels["pod"], s.value) for s in history.samples] == [(VLLM_POD, 16.0)]
    assert RequestStats(servers=(TRITON,)).batch_history("team-c", "chat", 300.0) == ""  # Triton runs no batch gauge


async def test_a_kv_fit_is_what_a_pods_kv_cache_holds_at_its_requests_sizes(client: PrometheusClient) -> None:
    """requestStats' ``kv_fit`` part (the slots a vLLM lease is sized on before any pod is saturated) is a pod's mean
    running requests over its mean KV-cache usage (vLLM's current or old name, NIM's un-prefixed one: the older NIM
    test above), only while a tenth or more of the cache is in use: 1 running in a quarter of the cache fits 4; a pod
    with a twentieth in use extrapolates nothing; a pod without a running gauge (Triton) has none."""
    from autoscaler.metrics.kinds.request_stats import RequestStats

    result = await fetch(client, RequestStats(), [*LEASES, LEASE_C], at=T0)
    fits = {t.pod: o.parts.get("kv_fit") for t, o in result.outcomes.items() if isinstance(o, Ok) and o.parts}
    assert fits["llm-a-1"] == pytest.approx(4.0) and fits["llm-a-0"] == pytest.approx(6.0), fits  # 3 in a half
    assert fits[VLLM_POD] is None and fits[TRITON_POD] is None and fits["llm-b-0"] is None, fits


async def test_request_histories_count_every_pod_of_a_deployment_whatever_its_server(
        client: PrometheusClient) -> None:
    """The predictive policy's history queries (load and rate per bucket, for a lease met for the first time) add
    up a Deployment's pods each read from its own server: a Deployment with a vLLM pod and a Triton pod counts both
    (8 + 0.2 busy slots; 5 + 2.5 req/s)."""
    from autoscaler.metrics import InstantVector
    from autoscaler.metrics.kinds.request_stats import RequestStats

    kind = RequestStats()
    load = await client.query(kind.load_history("team-c", "chat", 300.0, 60.0), at=T0, matrix=True)
    rate = await client.query(kind.rate_history("team-c", "chat", 300.0, 60.0), at=T0, matrix=True)
    assert isinstance(load, InstantVector) and isinstance(rate, InstantVector), (load, rate)
    assert len(load.samples) == len(rate.samples) == 5
    assert [s.value for s in load.samples] == pytest.approx([8.2] * 5)
    assert [s.value for s in rate.samples] == pytest.approx([7.5] * 5)


async def test_kv_cache_fallback_names_in_percent(client: PrometheusClient) -> None:
    """KV cache: new vLLM name first, then old vLLM, then NIM; fraction becomes percent; NaN flagged."""
    result = await fetch(client, KvCacheUsage(), LEASES, at=T0)
    assert_outcomes(dict(result.outcomes), {A0: ok(50), A1: ok(25), A9: Empty(), B0: ok(40),
                                            B1: NotFinite(math.nan)})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("sum by (namespace, pod) (app_inflight_requests{ {{selector}} })",
                     {A0: ok(7), A1: ok(5), A9: Empty()}, id="grouped"),
        pytest.param("app_inflight_requests{ {{namespace}}, {{pods}} }",
                     {A0: MultiSeries(2), A1: ok(5), A9: Empty()}, id="ungrouped-is-multi-series"),
        pytest.param('sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container="triton", '
                     "{{selector}}}[{{window}}]))",
                     {A0: ok(1.5), A1: ok(0.5), A9: Empty()}, id="window-placeholder"),
    ],
)
async def test_custom_template(client: PrometheusClient, template: str,
                               expected: dict[PodTarget, Outcome]) -> None:
    """Custom: placeholders become escaped matchers; several series for one pod are MultiSeries."""
    result = await fetch(client, CustomPromQL(name="inflight", template=template), [LEASE_A], at=T0)
    assert_outcomes(dict(result.outcomes), expected)


async def test_bad_custom_query_is_a_query_error_for_every_pod(client: PrometheusClient) -> None:
    """A query Prometheus rejects gives QueryError for each pod, after one attempt (4xx is not retried)."""
    kind = CustomPromQL(name="broken", template="sum by (namespace, pod) (rate(x{ {{selector}} }))")
    result = await fetch(client, kind, [LEASE_A], at=T0)
    assert isinstance(result.error, QueryError)
    assert result.error.kind == "prometheus" and result.error.status == 400 and result.error.attempts == 1
    assert isinstance(result.for_pod(A0), QueryError)
    assert all(isinstance(o, QueryError) for o in result.for_lease(LEASE_A).values())


async def test_one_query_per_kind_for_many_leases(prometheus_url: str) -> None:
    """fetch_all issues exactly one query per kind, whatever the number of leases."""
    from autoscaler.metrics import ClientSettings, QueryStats

    seen: list[QueryStats] = []
    leases = [LeaseTarget.of("team-a", [f"llm-a-{i}"]) for i in range(50)] + [LEASE_B]
    registry = default_registry()
    kinds = [registry.create(name) for name in registry]
    async with PrometheusClient(ClientSettings(url=prometheus_url), observer=seen.append) as c:
        results = await fetch_all(c, [(k, leases) for k in kinds], at=T0)
    assert len(seen) == len(kinds) == 5  # cpu, gpu, queue time, KV cache, request statistics
    assert all(s.outcome == "ok" and s.latency_s > 0 for s in seen)
    assert results["kvCacheUsage"].for_pod(A0) == ok(50)
    assert results["kvCacheUsage"].for_lease(LEASE_B)[B0] == ok(40)


async def test_for_lease_lists_regex_matches_and_named_pods(client: PrometheusClient) -> None:
    """for_lease: every named pod (Empty when absent), and the answered pods matching a regex."""
    result = await fetch(client, KvCacheUsage(), LEASES, at=T0)
    assert set(result.for_lease(LEASE_A)) == {A0, A1, A9}
    assert set(result.for_lease(LEASE_B)) == {B0, B1}


async def test_empty_batch_sends_no_query(client: PrometheusClient) -> None:
    """No lease uses a kind: no query at all."""
    result = await fetch(client, KvCacheUsage(), [], at=T0)
    assert result.query == "" and result.outcomes == {} and result.error is None


def test_request_stats_interpretation() -> None:
    """requestStats sums success + failure as the rate, keeps the parts, and is Empty without counters."""
    from autoscaler.metrics.kinds.base import PodSeries
    from autoscaler.metrics.kinds.request_stats import RequestStats
    from autoscaler.metrics.results import Empty, Ok, Sample

    def s(v: float) -> tuple[Sample, ...]:
        return (Sample({}, 0.0, v),)

    k = RequestStats()
    out = k.interpret(PodSeries((), {"success": s(9.0), "failure": s(1.0), "compute_us": s(5e5),
                                     "success_long": s(10.0)}), 0.0)
    assert isinstance(out, Ok) and out.value == 10.0 and out.parts is not None and out.parts["compute_us"] == 5e5
    assert isinstance(k.interpret(PodSeries((), {"pending": s(3.0)}), 0.0), Empty)
    query = k.build([LeaseTarget.of("ns", ["p"])])
    # nine parts, each Triton's or else vLLM's or else NIM's: vLLM has no failure counter, Triton no slot, running or
    # KV gauge, and vLLM's and NIM's slot gauge is one (num_request_max); vLLM's KV gauge has two names
    assert query.count(" or ") == 8 + 6 + 7 + 1 and 'autoscaler_part", "pending"' in query


def test_a_value_too_large_for_a_quantity_is_not_finite() -> None:
    """Prometheus can answer 1e305 (a broken exporter, a counter reset gone wrong); as milli-units it overflows
    64 bits (and Python's int conversion), so it is NotFinite like NaN and Inf, and never reaches the core."""
    from autoscaler.metrics.kinds.base import PodSeries, single_value
    from autoscaler.metrics.results import NotFinite, Ok, Sample

    def one(v: float) -> PodSeries:
        return PodSeries((Sample({}, 0.0, v),))

    assert single_value(one(1.8e305), 0.0, None) == NotFinite(1.8e305)
    assert single_value(one(-1e16), 0.0, None) == NotFinite(-1e16)
    assert single_value(one(9e15), 0.0, None) == Ok(9e15)
