"""What a hung test waits for: its pending asyncio tasks' stacks and every thread's stack (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import sys
from typing import TextIO

HANG_REPORT_S = 300.0
"""Seconds after which a test still running (teardown included) is reported; the slowest test takes ~55 s
(`pytest --durations=8`, 2026-11-24: the demo test)."""


def report_hang(nodeid: str, out: TextIO | None = None) -> None:
    """Print the pending asyncio tasks' stacks and every thread's stack: what a hung test waits for."""
    out = out or sys.__stderr__
    assert out is not None
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out.write(f"\n=== {nodeid} still running after {HANG_REPORT_S:.0f} s; {len(tasks)} pending asyncio tasks ===\n")
    for task in tasks:
        task.print_stack(file=out)
    out.flush()
    if out is sys.__stderr__:
        faulthandler.dump_traceback(file=out, all_threads=True)
