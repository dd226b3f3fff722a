"""PromQL text safety: escaping round-trips through the real parser and lease data cannot inject."""

from __future__ import annotations

import pytest
from metrics_testdata import T0

from autoscaler.metrics import (
    CustomPromQL,
    Empty,
    InstantVector,
    KvCacheUsage,
    LeaseTarget,
    Ok,
    PodTarget,
    PrometheusClient,
    default_registry,
    fetch,
    quote,
    regex_quote,
    selector,
)
from autoscaler.metrics.promql import duration, parse_duration

NASTY = [
    'a"b',
    "back\\slash",
    "new\nline\r\ttab",
    '"} or vector(1) or up{x="',
    "\\\" or vector(1) #",
    "ctrl\x01\x7f",
    "ünïcode-名前",
    "`raw`'single'",
]


@pytest.mark.prometheus
@pytest.mark.parametrize("value", NASTY)
async def test_quote_round_trips_through_prometheus(client: PrometheusClient, value: str) -> None:
    """Any string quoted by `quote` reaches Prometheus as exactly that string."""
    answer = await client.query(f'label_replace(vector(1), "x", {quote(value)}, "", "")', at=T0)
    assert isinstance(answer, InstantVector)
    assert answer.samples[0].labels == {"x": value}


@pytest.mark.prometheus
@pytest.mark.parametrize("value", ["a.b", "x+y*z?", "(g)|[c]{2}^$", "back\\slash", "llm-a-0"])
async def test_regex_quote_matches_only_itself(client: PrometheusClient, value: str) -> None:
    """A regex-quoted name matches itself and nothing else in Prometheus's RE2."""
    for subject, matches in [(value, True), ("Z" + value, False), (value + "Z", False)]:
        tagged = f'label_replace(vector(1), "x", {quote(subject)}, "", "")'
        query = f'label_replace({tagged}, "m", "yes", "x", {quote(regex_quote(value))})'
        answer = await client.query(query, at=T0)
        assert isinstance(answer, InstantVector)
        assert (answer.samples[0].labels.get("m") == "yes") is matches, subject


@pytest.mark.prometheus
@pytest.mark.parametrize(
    "lease",
    [
        pytest.param(LeaseTarget.of('team-a"} or vector(1) or up{x="', ["llm-a-0"]), id="namespace-breakout"),
        pytest.param(LeaseTarget.of("team-a", ['llm-a-0"}) or vector(1) #']), id="pod-breakout"),
        pytest.param(LeaseTarget.of("team-a", ["llm-a-0\n) or vector(1"]), id="pod-newline"),
        pytest.param(LeaseTarget.of("team-a", [".*"]), id="pod-regex-wildcard-as-name"),
        pytest.param(LeaseTarget("team-a", pod_regex='x"} or vector(1) or up{a="'), id="regex-breakout"),
    ],
)
async def test_lease_values_cannot_inject_promql(client: PrometheusClient, lease: LeaseTarget) -> None:
    """Hostile namespaces, pod names and regexes yield a valid query selecting nothing extra."""
    for kind in [KvCacheUsage(), *(default_registry().create(n) for n in default_registry()),
                 CustomPromQL(name="c", template="sum by (namespace, pod) (app_inflight_requests{ {{selector}} })")]:
        result = await fetch(client, kind, [lease], at=T0)
        assert result.error is None, (kind.name, result.error)
        assert result.unkeyed_series == 0, kind.name  # no vector(1) sneaked in
        assert all(isinstance(o, Empty) for o in result.outcomes.values()), (kind.name, result.outcomes)


@pytest.mark.prometheus
async def test_same_pod_name_in_another_namespace_is_not_returned(client: PrometheusClient) -> None:
    """The batched cross-product selector is filtered back to the exact (namespace, pod) pairs."""
    leases = [LeaseTarget.of("team-a", ["llm-a-1"]), LeaseTarget.of("team-b", ["llm-b-0"])]
    result = await fetch(client, KvCacheUsage(), leases, at=T0)
    assert set(result.outcomes) == {PodTarget("team-a", "llm-a-1"), PodTarget("team-b", "llm-b-0")}
    assert result.for_pod(PodTarget("team-a", "llm-a-1")) == Ok(pytest.approx(25))


def test_selector_shapes() -> None:
    """One namespace and one pod use equality; batches use sorted escaped alternations."""
    assert selector([LeaseTarget.of("ns", ["p"])]).both == 'namespace="ns", pod="p"'
    sel = selector([LeaseTarget.of("b", ["p.2", "p1"]), LeaseTarget("a", pod_regex="q-[0-9]+")])
    assert sel.namespace == 'namespace=~"a|b"'
    assert sel.pods == 'pod=~"p\\\\.2|p1|(?:q-[0-9]+)"'
    assert selector([LeaseTarget("ns")]).pods == 'pod=~"$^"'  # a lease with no pods matches nothing
    exported = selector([LeaseTarget.of("ns", ["p"])], "exported_namespace", "exported_pod")
    assert exported.both == 'exported_namespace="ns", exported_pod="p"'


def test_lease_target_validation() -> None:
    """A lease needs a namespace, and names or a valid regex, not both."""
    with pytest.raises(ValueError, match="namespace"):
        LeaseTarget.of("", ["p"])
    with pytest.raises(ValueError, match="not both"):
        LeaseTarget("ns", frozenset({"p"}), "p.*")
    with pytest.raises(ValueError, match="not a valid regex"):
        LeaseTarget("ns", pod_regex="(unclosed")


def test_custom_template_validation() -> None:
    """Templates must scope pods and use known placeholders only; filled text is not re-expanded."""
    with pytest.raises(ValueError, match="must scope pods"):
        CustomPromQL(name="x", template="sum(up)")
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{\{podz\}\}"):
        CustomPromQL(name="x", template="up{ {{podz}} }")
    query = CustomPromQL(name="x", template="up{ {{pods}} }").build([LeaseTarget.of("ns", ["{{window}}"])])
    assert query == 'up{ pod="{{window}}" }'


def test_registry_creates_known_kinds_and_names_bad_options() -> None:
    """The registry builds kinds from options and rejects unknown names or options precisely."""
    registry = default_registry()
    assert sorted(registry) == ["cpuUtilization", "gpuUtilization", "kvCacheUsage", "queueTime", "requestStats"]
    # raw: queue time, its denominator and the request rate, each from Triton's counters or vLLM's histogram or
    # NIM's finished requests (its queue time from a gauge: no rate)
    assert registry.create("queueTime", {"source": "raw"}).build([LeaseTarget.of("n", ["p"])]).count("rate(") == 8
    assert "vllm" not in registry.create("queueTime", {"source": "raw", "vllm_histogram": ""}).build(
        [LeaseTarget.of("n", ["p"])])
    assert "num_requests_waiting" not in registry.create("queueTime", {"source": "raw", "nim_waiting": ""}).build(
        [LeaseTarget.of("n", ["p"])])
    with pytest.raises(ValueError, match="unknown metric kind 'nope'"):
        registry.create("nope")
    with pytest.raises(ValueError, match=r"bad options .*colour"):
        registry.create("gpuUtilization", {"colour": "red"})
    with pytest.raises(ValueError, match="label_style"):
        registry.create("gpuUtilization", {"label_style": "weird"})
    with pytest.raises(ValueError, match="already registered"):
        registry.register("queueTime", lambda: KvCacheUsage())


@pytest.mark.prometheus
async def test_large_batch_selects_by_namespace_and_still_returns_only_leased_pods(
        client: PrometheusClient) -> None:
    """Above POD_NAMES_LIMIT names the query matches pod!="" and the client drops unleased pods."""
    names = ["llm-a-0", *(f"gone-{i}" for i in range(600))]
    result = await fetch(client, KvCacheUsage(), [LeaseTarget.of("team-a", names)], at=T0)
    assert 'pod!=""' in result.query and "gone-1" not in result.query
    assert result.for_pod(PodTarget("team-a", "llm-a-0")) == Ok(pytest.approx(50))
    assert PodTarget("team-a", "llm-a-1") not in result.outcomes  # answered by Prometheus, not leased
    assert result.for_pod(PodTarget("team-a", "gone-7")) == Empty()
    assert len(result.outcomes) == len(names)


def test_prometheus_durations_parse_as_targets_report_them() -> None:
    """A scrape interval as /api/v1/targets gives it: Prometheus's duration syntax, in seconds; the inverse of the
    window literals the queries use."""
    assert [parse_duration(t) for t in ("15s", "1m", "1m30s", "500ms", "1h", "")] == [15, 60, 90, 0.5, 3600, None]
    assert parse_duration("15") is None and parse_duration("15 s") is None
    assert parse_duration(duration(2.5)) == 2.5
