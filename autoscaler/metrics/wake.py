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


__all__ = ["Wake", "read_wakes", "wake_value"]
