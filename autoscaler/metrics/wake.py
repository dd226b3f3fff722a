"""Scale to zero's wake values: one PromQL expression per lease that may be at zero replicas, read as one number.

A lease at zero has no pods to measure, so its demand is read in front of them (the policy's
``scaleToZero.wakeQuery``, rendered per lease: an ingress's or a gateway's request rate). Anything but one finite
value is no value, with the reason, never a 0: the decision (``autoscaler.policy.idle``) must not take a broken
query for idleness. A hundred leases' expressions go to Prometheus as one query (:func:`read_wakes`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.results import InstantVector, QueryError, Sample

K = TypeVar("K", bound=Hashable)


class Wake(NamedTuple):
    """A lease's wake value, or None and why (``failed``: the query itself failed, not its answer)."""

    value: float | None
    why: str = ""
    failed: bool = False


def wake_value(answer: InstantVector | QueryError) -> Wake:
    """One finite value from the answer, else None with why: the query failed, found no series, several, or a value
    that is not a number."""
    if isinstance(answer, QueryError):
        return Wake(None, f"the query failed: {answer.message}", failed=True)
    if len(answer.samples) != 1:
        return Wake(None, f"the query returned {len(answer.samples)} series, not one: aggregate them (sum(...))"
                    if answer.samples else "the query found no series (`or vector(0)` answers 0 for a service that "
                                           "has had no requests)")
    value = answer.samples[0].value
    if not math.isfinite(value):
        return Wake(None, f"the query returned {value}")
    return Wake(value)


WAKE_CHUNK = 100
"""Leases whose wake queries are merged into one PromQL query (:func:`read_wakes`)."""
WAKE_LABEL = "autoscaler_wake"
"""The label each lease's answer is tagged with in a merged query."""


def merged_query(queries: Sequence[str]) -> str:
    """One PromQL query answering all ``queries``: each answer tagged with its index (``WAKE_LABEL``), the tagged
    answers joined with ``or`` (their label sets differ by the tag, so none hides another)."""
    return " or ".join(f'label_replace(({q}), "{WAKE_LABEL}", "{i}", "", "")' for i, q in enumerate(queries))


def split_answer(answer: InstantVector, n: int) -> list[InstantVector]:
    """A merged query's answer (:func:`merged_query`) as the ``n`` answers of its queries, tags removed."""
    parts: list[list[Sample]] = [[] for _ in range(n)]
    for s in answer.samples:
        i = s.labels.get(WAKE_LABEL, "")
        if i.isdigit() and int(i) < n:
            parts[int(i)].append(Sample({k: v for k, v in s.labels.items() if k != WAKE_LABEL}, s.timestamp, s.value))
    return [InstantVector(tuple(p), answer.eval_time, answer.latency_s, answer.attempts, answer.warnings)
            for p in parts]


async def read_wakes(client: PrometheusClient, queries: Mapping[K, str], at: float | None = None,
                     chunk: int = WAKE_CHUNK) -> dict[K, Wake]:
    """Every lease's wake value (keyed as ``queries``): ``chunk`` leases' queries merged into one
    (:func:`merged_query`), the merged queries sent at once. A merged query that fails (one lease's query is not
    valid PromQL, answers a scalar, or the whole is too slow) is asked again one query per lease, so each lease
    gets its own answer or error, as if never merged."""
    keys = list(queries)
    groups = [keys[i:i + chunk] for i in range(0, len(keys), max(1, chunk))]
    merged = [len(g) > 1 for g in groups]
    answers = await asyncio.gather(*(client.query(merged_query([queries[k] for k in g]) if m else queries[g[0]],
                                                  at=at) for g, m in zip(groups, merged, strict=True)))
    out: dict[K, Wake] = {}
    for g, m, answer in zip(groups, merged, answers, strict=True):
        if not m:
            out[g[0]] = wake_value(answer)
        elif isinstance(answer, QueryError):
            alone = await asyncio.gather(*(client.query(queries[k], at=at) for k in g))
            out.update({k: wake_value(a) for k, a in zip(g, alone, strict=True)})
        else:
            out.update({k: wake_value(a) for k, a in zip(g, split_answer(answer, len(g)), strict=True)})
    return out


IDLE_HISTORY_STEPS = 2000
"""The most steps of a wake query's history read back (:func:`idle_history`): 15-s steps over the last ~8 h."""


class IdleHistory(NamedTuple):
    """How long a lease has been idle, from its wake query's history over the last idle period, or its last
    :data:`IDLE_HISTORY_STEPS` steps (a restarted controller's read): two PromQL queries and how to read them."""

    coverage: str
    """``count_over_time`` of the query at the read span's steps: how many of them it answered."""
    since: str
    """Seconds since the last step whose value was over the threshold (no series: none in the span)."""
    steps: int
    span_s: int
    """Seconds read back: the idle period, or its last :data:`IDLE_HISTORY_STEPS` steps when longer."""

    def covered(self, answer: InstantVector) -> bool:
        """The query answered at nine steps in ten or more: the history is there to be read."""
        return any(s.value >= 0.9 * self.steps for s in answer.samples)

    def idle_for(self, answer: InstantVector) -> float:
        """Seconds without demand by :attr:`since`'s answer: the whole span when no step had demand (a lease idle
        through the last ~8 h of a longer period waits the rest of it)."""
        since = [s.value for s in answer.samples if math.isfinite(s.value)]
        return max(0.0, min(since)) if since else float(self.span_s)


def idle_history(wake_query: str, idle_s: float, threshold: float) -> IdleHistory:
    """The queries of a lease's idle history: its wake query at a step of ``idle_s / 60`` (1-15 s), as a controller
    would have read it, over the last ``idle_s`` or, when longer, the last :data:`IDLE_HISTORY_STEPS` steps."""
    period = max(1, math.ceil(idle_s))
    step = max(1, min(15, period // 60))
    span = min(period, IDLE_HISTORY_STEPS * step)
    q, window = f"({wake_query})", f"[{span}s:{step}s]"
    return IdleHistory(f"count_over_time({q}{window})",
                       f"time() - max_over_time(timestamp({q} > {threshold!r}){window})", span // step, span)


__all__ = ["IDLE_HISTORY_STEPS", "WAKE_CHUNK", "WAKE_LABEL", "IdleHistory", "Wake", "idle_history", "merged_query",
           "read_wakes", "split_answer", "wake_value"]
