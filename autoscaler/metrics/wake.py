"""Scale to zero's wake values: one PromQL query per lease that may be at zero replicas, read as one number.

A lease at zero has no pods to measure, so its demand is read in front of them (the policy's
``scaleToZero.wakeQuery``, rendered per lease: an ingress's or a gateway's request rate). Anything but one finite
value is no value, with the reason, never a 0: the decision (``autoscaler.policy.idle``) must not take a broken
query for idleness.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable, Mapping
from typing import NamedTuple, TypeVar

from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.results import InstantVector, QueryError

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


async def read_wakes(client: PrometheusClient, queries: Mapping[K, str], at: float | None = None) -> dict[K, Wake]:
    """Every lease's wake value (keyed as ``queries``), the queries sent at once."""
    keys = list(queries)
    answers = await asyncio.gather(*(client.query(queries[k], at=at) for k in keys))
    return {k: wake_value(a) for k, a in zip(keys, answers, strict=True)}


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


__all__ = ["IDLE_HISTORY_STEPS", "IdleHistory", "Wake", "idle_history", "read_wakes", "wake_value"]
