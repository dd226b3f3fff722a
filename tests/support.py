"""Helpers shared by the live test areas (controller, faults)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.1) -> float:
    """Poll ``cond`` until true; return the seconds it took; fail with ``what`` after the timeout."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        await asyncio.sleep(step_s)
    return time.monotonic() - t0
