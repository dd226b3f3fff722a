"""The Prometheus client against tiny local servers: retries, deadlines, POST, auth, error envelopes."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from autoscaler.metrics import ClientSettings, InstantVector, PrometheusClient, QueryError, QueryStats
from autoscaler.metrics.localprom import free_port

SUCCESS = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"namespace": "ns", "pod": "p"}, "value": [1700000000.5, "4.25"]},
    {"metric": {}, "value": [1700000000.5, "NaN"]},
    {"metric": {"pod": "q"}, "value": [1700000000.5, "+Inf"]},
]}}


@dataclass
class Reply:
    """One scripted answer of the fake server."""

    status: int = 200
    body: Any = field(default_factory=lambda: SUCCESS)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    """One request the fake server received."""

    method: str
    headers: dict[str, str]
    params: dict[str, str]


class FakePrometheus:
    """Answers /api/v1/query from a script (the last reply repeats) and records requests."""

    def __init__(self) -> None:
        self.script: list[Reply] = [Reply()]
        self.seen: list[Seen] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(request.query) if request.method == "GET" else {k: str(v) for k, v in
                                                                       (await request.post()).items()}
        self.seen.append(Seen(request.method, dict(request.headers), params))
        reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        return web.Response(status=reply.status, text=body, headers=reply.headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakePrometheus]:
    """A fake Prometheus on a free loopback port."""
    server = FakePrometheus()
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def settings(url: str, **kw: Any) -> ClientSettings:
    """Fast-retry settings for tests."""
    return ClientSettings(url=url, **{"backoff_initial_s": 0.01, "backoff_max_s": 0.02, **kw})


async def test_parses_vector_with_special_values(fake: FakePrometheus) -> None:
    """Values are parsed from strings, NaN and +Inf included; labels and eval time kept."""
    async with PrometheusClient(settings(fake.url)) as c:
        answer = await c.query("up")
    assert isinstance(answer, InstantVector)
    assert answer.eval_time == 1700000000.5
    assert answer.samples[0].labels == {"namespace": "ns", "pod": "p"} and answer.samples[0].value == 4.25
    assert answer.samples[1].value != answer.samples[1].value  # NaN
    assert answer.samples[2].value == float("inf")
    assert fake.seen[0].method == "GET" and fake.seen[0].params["query"] == "up"
    assert "timeout" in fake.seen[0].params


async def test_time_parameter_is_sent(fake: FakePrometheus) -> None:
    """`at` pins the evaluation time."""
    async with PrometheusClient(settings(fake.url)) as c:
        await c.query("up", at=1700000123.25)
    assert fake.seen[0].params["time"] == "1700000123.250"


async def test_long_query_switches_to_post(fake: FakePrometheus) -> None:
    """Queries over the threshold go as form-encoded POST; short ones as GET."""
    long_query = "up{pod=~\"" + "|".join(f"pod-{i}" for i in range(500)) + "\"}"
    async with PrometheusClient(settings(fake.url, post_threshold_chars=1000)) as c:
        assert isinstance(await c.query("up"), InstantVector)
        assert isinstance(await c.query(long_query), InstantVector)
    assert [s.method for s in fake.seen] == ["GET", "POST"]
    assert fake.seen[1].params["query"] == long_query


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_retries_5xx_and_429_then_succeeds(fake: FakePrometheus, status: int) -> None:
    """Transient server errors are retried with backoff; the observer sees one query, 3 attempts."""
    fake.script = [Reply(status, {"status": "error", "errorType": "internal", "error": "boom"}),
                   Reply(status, "<html>bad gateway</html>", {"Retry-After": "0"}), Reply()]
    stats: list[QueryStats] = []
    async with PrometheusClient(settings(fake.url, retries=2), observer=stats.append) as c:
        answer = await c.query("up")
    assert isinstance(answer, InstantVector) and answer.attempts == 3
    assert len(fake.seen) == 3
    assert [(s.attempts, s.outcome) for s in stats] == [(3, "ok")]


async def test_gives_up_after_retries(fake: FakePrometheus) -> None:
    """A persistent 503 becomes one QueryError after 1 + retries attempts."""
    fake.script = [Reply(503, {"status": "error", "errorType": "timeout", "error": "query timed out"})]
    async with PrometheusClient(settings(fake.url, retries=2)) as c:
        answer = await c.query("up")
    assert isinstance(answer, QueryError)
    assert (answer.kind, answer.status, answer.attempts) == ("prometheus", 503, 3)
    assert "query timed out" in answer.message
    assert len(fake.seen) == 3


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        pytest.param(Reply(400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
                     "prometheus", id="bad-query"),
        pytest.param(Reply(422, {"status": "error", "errorType": "execution", "error": "many-to-many"}),
                     "prometheus", id="execution"),
        pytest.param(Reply(403, "forbidden by proxy"), "http", id="proxy-4xx-not-json"),
        pytest.param(Reply(200, "not json at all"), "bad_response", id="non-json-200"),
        pytest.param(Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
                     "bad_response", id="matrix-instead-of-vector"),
        pytest.param(Reply(200, {"status": "success", "data": {"resultType": "vector",
                                                               "result": [{"metric": {}}]}}),
                     "bad_response", id="sample-without-value"),
    ],
)
async def test_client_errors_are_not_retried(fake: FakePrometheus, reply: Reply, kind: str) -> None:
    """4xx and malformed bodies fail at once with a typed QueryError (a retry cannot fix them)."""
    fake.script = [reply]
    async with PrometheusClient(settings(fake.url, retries=3)) as c:
        answer = await c.query("up")
    assert isinstance(answer, QueryError) and answer.kind == kind and answer.attempts == 1
    assert len(fake.seen) == 1


async def test_scalar_answer_is_one_unlabelled_sample(fake: FakePrometheus) -> None:
    """A scalar result is accepted as a single sample without labels."""
    fake.script = [Reply(body={"status": "success", "data": {"resultType": "scalar", "result": [5.0, "2"]}})]
    async with PrometheusClient(settings(fake.url)) as c:
        answer = await c.query("scalar(up)")
    assert isinstance(answer, InstantVector) and answer.samples[0].labels == {} and answer.samples[0].value == 2


async def test_a_matrix_answer_is_its_points_when_asked_for(fake: FakePrometheus) -> None:
    """With ``matrix=True`` a range-vector answer (a subquery) comes back as one sample per point, in order; without
    it the same answer is a bad response (above)."""
    fake.script = [Reply(body={"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"pod": "a"}, "values": [[10.0, "1"], [25.0, "2.5"]]},
        {"metric": {"pod": "b"}, "values": [[10.0, "NaN"]]}]}})]
    async with PrometheusClient(settings(fake.url)) as c:
        answer = await c.query("x[30s:15s]", at=30.0, matrix=True)
    assert isinstance(answer, InstantVector)
    assert [(s.labels["pod"], s.timestamp) for s in answer.samples] == [("a", 10.0), ("a", 25.0), ("b", 10.0)]
    assert answer.samples[1].value == 2.5 and math.isnan(answer.samples[2].value)


async def test_slow_server_hits_the_deadline(fake: FakePrometheus) -> None:
    """A server slower than timeout_s yields a timeout QueryError at about the deadline."""
    fake.script = [Reply(delay_s=5.0)]
    stats: list[QueryStats] = []
    started = time.monotonic()
    async with PrometheusClient(settings(fake.url, timeout_s=0.3), observer=stats.append) as c:
        answer = await c.query("up")
    elapsed = time.monotonic() - started
    assert isinstance(answer, QueryError) and answer.kind == "timeout"
    assert 0.25 <= elapsed < 2.0
    assert stats[0].outcome == "timeout"


async def test_connection_refused_fails_fast() -> None:
    """Prometheus down: a connection QueryError after the retries, well under the deadline."""
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    async with PrometheusClient(settings(url, retries=2, timeout_s=10.0)) as c:
        answer = await c.query("up")
    assert isinstance(answer, QueryError) and answer.kind == "connection" and answer.attempts == 3
    assert time.monotonic() - started < 2.0


async def test_bearer_token_reread_on_change_and_never_logged(
        fake: FakePrometheus, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The token file is re-read when it changes; the token appears in no log line or repr."""
    token = tmp_path / "token"
    token.write_text("first-secret\n")
    caplog.set_level(logging.DEBUG, logger="autoscaler.metrics")
    client = PrometheusClient(settings(fake.url, bearer_token_file=str(token),
                                       headers={"X-Scope-OrgID": "tenant-1"}))
    async with client as c:
        await c.query("up")
        token.write_text("second-secret-longer\n")
        await c.query("up")
        fake.script = [Reply(500, "oops")]
        await c.query("up")
    assert fake.seen[0].headers["Authorization"] == "Bearer first-secret"
    assert fake.seen[1].headers["Authorization"] == "Bearer second-secret-longer"
    assert fake.seen[0].headers["X-Scope-OrgID"] == "tenant-1"
    assert "secret" not in caplog.text and caplog.records  # the failures were logged, without it
    assert "secret" not in repr(client) + repr(client.settings) and "tenant-1" not in repr(client.settings)


async def test_missing_token_file_is_a_query_error(fake: FakePrometheus, tmp_path: Path) -> None:
    """An unreadable token file fails the query (no unauthenticated request is sent)."""
    async with PrometheusClient(settings(fake.url, bearer_token_file=str(tmp_path / "absent"))) as c:
        answer = await c.query("up")
    assert isinstance(answer, QueryError) and "token" in answer.message
    assert fake.seen == []


def test_settings_reject_nonsense() -> None:
    """Invalid client settings are refused with the offending value."""
    with pytest.raises(ValueError, match="timeout_s"):
        ClientSettings(url="http://x", timeout_s=0)
    with pytest.raises(ValueError, match="retries"):
        ClientSettings(url="http://x", retries=-1)


async def test_tls_options_build_a_client(tmp_path: Path) -> None:
    """insecure_skip_verify and a missing CA file are handled at construction time."""
    PrometheusClient(ClientSettings(url="https://x", insecure_skip_verify=True))
    with pytest.raises(OSError):
        PrometheusClient(ClientSettings(url="https://x", ca_file=str(tmp_path / "missing-ca.pem")))
