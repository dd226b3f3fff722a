"""Async client for the Prometheus instant-query API, built to fail loudly and quickly.

The controller runs a handful of batched queries per loop, so one slow or dead Prometheus must
cost a bounded time (one deadline covers all retries), must never turn into a 0, and must be
visible (each query's latency and outcome go to an optional observer, e.g. a histogram on the
controller's own /metrics). Secrets never reach logs or reprs: the bearer token stays in a
private attribute and is re-read from its file when the file changes (projected service-account
tokens rotate).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pydantic_core import from_json

from autoscaler.metrics.results import ErrorKind, InstantVector, QueryError, Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientSettings:
    """How to reach Prometheus. Durations are seconds."""

    url: str
    """Base URL, e.g. ``http://prometheus.monitoring:9090`` (a path prefix is kept)."""
    timeout_s: float = 5.0
    """Deadline for one query including every retry and backoff sleep."""
    retries: int = 2
    """Extra attempts after the first, on connection errors, 5xx and 429 only."""
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    post_threshold_chars: int = 4000
    """Queries whose form-encoded parameters exceed this many characters are sent by POST."""
    bearer_token_file: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Extra request headers (values hidden from repr: they may hold credentials)."""
    max_connections: int = 16

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"need 0 <= backoff_initial_s <= backoff_max_s, got {self.backoff_initial_s}, "
                f"{self.backoff_max_s}")


@dataclass(frozen=True)
class QueryStats:
    """What the observer hears after every query (not every attempt)."""

    latency_s: float
    attempts: int
    method: str
    outcome: str
    """"ok" or the `QueryError.kind`."""
    query_chars: int


Observer = Callable[[QueryStats], None]


class _Retryable(Exception):
    def __init__(self, error: QueryError, retry_after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after_s = retry_after_s


class _TokenFile:
    """A bearer token re-read whenever its file's identity, size or mtime changes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""

    def __repr__(self) -> str:
        return f"_TokenFile(path={self._path!r})"

    def get(self) -> str:
        st = os.stat(self._path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            with open(self._path, encoding="utf-8") as fh:
                self._token = fh.read().strip()
            self._stamp = stamp
        return self._token


def _ssl_context(settings: ClientSettings) -> ssl.SSLContext | bool:
    if settings.insecure_skip_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if settings.ca_file:
        return ssl.create_default_context(cafile=settings.ca_file)
    return True


class PrometheusClient:
    """Instant queries against one Prometheus. Use as ``async with PrometheusClient(...) as c``.

    One aiohttp session is shared by all queries; it is created on first use inside the running loop.
    """

    def __init__(self, settings: ClientSettings, *, observer: Observer | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._observer = observer
        self._session = session
        self._owns_session = session is None
        self._token = _TokenFile(settings.bearer_token_file) if settings.bearer_token_file else None
        self._endpoint = settings.url.rstrip("/") + "/api/v1/query"
        self._ssl = _ssl_context(settings)

    def __repr__(self) -> str:
        return f"PrometheusClient(url={self.settings.url!r})"

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def query(self, promql: str, *, at: float | None = None,
                    matrix: bool = False) -> InstantVector | QueryError:
        """Evaluate `promql` at Unix time `at` (server's now if None). Never raises for I/O problems.

        A range-vector expression (``expr[6h:15s]``) answers a matrix, an error unless ``matrix``: then its points
        come back as samples, each with its own timestamp (the series' labels repeated)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.settings.timeout_s
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        method = "POST" if len(urlencode(params)) > self.settings.post_threshold_chars else "GET"
        attempt = 0
        result: InstantVector | QueryError
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    result = await self._attempt(method, params, remaining, at, matrix)
                break
            except TimeoutError:
                result = QueryError(f"no answer within the {self.settings.timeout_s:g} s deadline",
                                    "timeout", attempts=attempt)
                break
            except _Retryable as exc:
                result = exc.error
                delay = min(self.settings.backoff_max_s,
                            self.settings.backoff_initial_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if exc.retry_after_s is not None:
                    delay = max(delay, min(exc.retry_after_s, self.settings.backoff_max_s))
                if attempt > self.settings.retries or loop.time() + delay >= deadline:
                    break
                log.debug("prometheus query attempt %d failed (%s), retrying in %.3f s",
                          attempt, exc.error.kind, delay)
                await asyncio.sleep(delay)
        latency = loop.time() - start
        if isinstance(result, QueryError):
            result = QueryError(result.message, result.kind, result.status, attempt, latency)
            log.debug("prometheus query failed after %d attempt(s): %s", attempt, result.message)
        else:
            result = InstantVector(result.samples, result.eval_time, latency, attempt, result.warnings)
        self._observe(QueryStats(latency, attempt, method,
                                 "ok" if isinstance(result, InstantVector) else result.kind, len(promql)))
        return result

    def _observe(self, stats: QueryStats) -> None:
        if self._observer is None:
            return
        try:
            self._observer(stats)
        except Exception:  # an observer bug must not break the loop
            log.exception("query observer failed")

    def _headers(self) -> dict[str, str]:
        headers = dict(self.settings.headers)
        headers.setdefault("Accept", "application/json")
        if self._token is not None:
            headers["Authorization"] = "Bearer " + self._token.get()
        return headers

    async def _attempt(self, method: str, params: dict[str, str], remaining: float,
                       at: float | None, matrix: bool = False) -> InstantVector | QueryError:
        session = self._get_session()
        params = {**params, "timeout": f"{max(remaining, 0.001):.3f}"}
        try:
            headers = self._headers()
        except OSError as exc:
            return QueryError(f"cannot read bearer token file: {exc.strerror or exc}", "connection")
        try:
            if method == "POST":
                ctx = session.post(self._endpoint, data=params, headers=headers)
            else:
                ctx = session.get(self._endpoint, params=params, headers=headers)
            async with ctx as resp:
                body = await resp.read()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientResponseError as exc:
            raise _Retryable(QueryError(f"bad HTTP response: {exc.message}", "bad_response")) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Retryable(QueryError(f"cannot reach Prometheus: {type(exc).__name__}: {exc}",
                                        "connection")) from None
        return _parse(status, body, retry_after, at, matrix)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _parse(status: int, body: bytes, retry_after: float | None,
           at: float | None, matrix: bool = False) -> InstantVector | QueryError:
    retryable = status >= 500 or status == 429
    try:
        doc: Any = from_json(body)  # pydantic-core's parser: ~25 % faster than json.loads on a 4 MB answer
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        snippet = body[:200].decode("utf-8", "replace")
        err = QueryError(f"HTTP {status}, body is not a JSON object: {snippet!r}",
                         "http" if status != 200 else "bad_response", status)
        if retryable:
            raise _Retryable(err, retry_after)
        return err
    if doc.get("status") != "success" or status != 200:
        kind: ErrorKind = "prometheus" if doc.get("status") == "error" else "http"
        message = f"HTTP {status}: {doc.get('errorType', 'error')}: {doc.get('error', 'no message')}"
        err = QueryError(message, kind, status)
        if retryable:
            raise _Retryable(err, retry_after)
        return err
    try:
        return _vector(doc["data"], at, tuple(str(w) for w in doc.get("warnings") or ()), matrix)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return QueryError(f"malformed success body: {type(exc).__name__}: {exc}", "bad_response", status)


def _vector(data: Any, at: float | None, warnings: tuple[str, ...],
            matrix: bool = False) -> InstantVector | QueryError:
    kind = data["resultType"]
    if kind == "vector":
        samples = tuple(  # labels are JSON strings already: no per-sample copy (10k+ series)
            Sample(item["metric"], float(item["value"][0]), float(item["value"][1])) for item in data["result"]
        )
    elif kind == "scalar":
        ts, val = data["result"]
        samples = (Sample({}, float(ts), float(val)),)
    elif kind == "matrix" and matrix:  # a range-vector expression (a subquery): one sample per point, in order
        samples = tuple(Sample(item["metric"], float(ts), float(val))
                        for item in data["result"] for ts, val in item["values"])
    else:
        return QueryError(f"expected an instant vector, got resultType {kind!r}", "bad_response", 200)
    eval_time = at if at is not None else (samples[0].timestamp if samples else time.time())
    return InstantVector(samples, eval_time, 0.0, 1, warnings)
