"""One real Prometheus for the metrics tests (session-scoped), serving `metrics_testdata.dataset()`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from metrics_testdata import RULES, dataset

from autoscaler.metrics import ClientSettings, PrometheusClient
from autoscaler.metrics.localprom import LocalPrometheus, backfill


@pytest.fixture(scope="session")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real Prometheus serving `dataset()` with the queue-time rules loaded."""
    root = tmp_path_factory.mktemp("prom")
    source = root / "data.om"
    dataset().write(source)
    backfill(source, root / "tsdb")
    with LocalPrometheus(root / "tsdb", rule_files=[RULES]) as prom:
        yield prom.url


@pytest.fixture
async def client(prometheus_url: str) -> AsyncIterator[PrometheusClient]:
    """A client of the session Prometheus."""
    async with PrometheusClient(ClientSettings(url=prometheus_url, timeout_s=10.0)) as c:
        yield c
