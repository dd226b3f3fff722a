"""What a hung test waits for: its pending asyncio tasks' stacks and every thread's stack (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import sys
from typing import TextIO

import pytest

HANG_REPORT_S = 300.0
"""Seconds after which a test still running (teardown included) is reported; the slowest test takes ~55 s
(`pytest --durations=8`, 2026-11-24: the demo test)."""


def report_hang(nodeid: str, out: TextIO | None = None, config: pytest.Config | None = None) -> None:
    """Print the pending asyncio tasks' stacks and every thread's stack: what a hung test waits for.

    Without ``out``, to the real stderr: pytest's capture, which holds file descriptors 1 and 2 while a test runs
    (and prints what it caught only once the test ends), is set aside for the report."""
    if out is not None:
        _write_report(nodeid, out)
        return
    capman = config.pluginmanager.getplugin("capturemanager") if config is not None else None
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        _write_report(nodeid, sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def _write_report(nodeid: str, out: TextIO) -> None:
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out.write(f"\n=== {nodeid} still running after {HANG_REPORT_S:.0f} s; {len(tasks)} pending asyncio tasks ===\n")
    for task in tasks:
        task.print_stack(file=out)
    out.flush()
