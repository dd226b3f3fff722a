"""Scale to zero's wake values, read from a real Prometheus: many leases' wake queries merged into one PromQL query,
each lease getting the answer it would get alone, and a merged query that fails asked again lease by lease."""

from __future__ import annotations

import pytest

from autoscaler.metrics import ClientSettings, PrometheusClient
from autoscaler.metrics.client import QueryStats
from autoscaler.metrics.wake import merged_query, read_wakes

TWO = 'label_replace(vector(1), "s", "a", "", "") or label_replace(vector(2), "s", "b", "", "")'
MERGEABLE = {"rate": "sum(vector(2.5))", "zero": "vector(0)", "labelled": 'label_replace(vector(7), "svc", "x", "", "")',
             "none": "vector(1) > 2", "two": TWO, "nan": "vector(0) / 0"}
BREAKING = {"scalar": "scalar(vector(4))", "typo": "sum(rate(x[1m]"}


@pytest.mark.prometheus
async def test_merged_wake_queries_answer_each_lease_as_alone(prometheus_url: str) -> None:
    """Six leases in one query: a value, zero, a labelled series, none, two series, NaN; each the same value (or
    the same reason for none) as its query alone. A scalar answer and a typo fail the merged query: the chunk is
    asked again one by one, so the scalar still reads 4 and only the typo fails."""
    heard: list[QueryStats] = []
    async with PrometheusClient(ClientSettings(url=prometheus_url, timeout_s=10.0), observer=heard.append) as client:
        alone = await read_wakes(client, {**MERGEABLE, **BREAKING}, chunk=1)
        assert len(heard) == len(MERGEABLE) + len(BREAKING)
        heard.clear()
        merged = await read_wakes(client, MERGEABLE)
        assert len(heard) == 1 and heard[0].outcome == "ok" and heard[0].query_chars == len(
            merged_query(list(MERGEABLE.values())))
        assert merged == {k: alone[k] for k in MERGEABLE}
        assert [merged[k].value for k in ("rate", "zero", "labelled")] == [2.5, 0.0, 7.0]
        assert "no series" in merged["none"].why and "2 series" in merged["two"].why and "nan" in merged["nan"].why
        heard.clear()
        mixed = await read_wakes(client, {**MERGEABLE, **BREAKING})
        assert heard[0].outcome == "prometheus" and len(heard) == 1 + len(MERGEABLE) + len(BREAKING)
        assert mixed == alone
        assert mixed["scalar"].value == 4.0 and mixed["typo"].failed and "rate" in mixed and mixed["rate"].value == 2.5
        heard.clear()
        chunked = await read_wakes(client, MERGEABLE, chunk=4)  # two merged queries: four leases, then two
        assert len(heard) == 2 and chunked == merged
