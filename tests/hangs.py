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


def report_hang(nodeid: str, config: pytest.Config) -> None:
    """Write :func:`write_report` and every thread's stack to the real stderr (the timer's callback).

    pytest's capture, which holds file descriptors 1 and 2 while a test runs (and prints what it caught only once
    the test ends), is set aside for it."""
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        write_report(nodeid, sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def write_report(nodeid: str, out: TextIO) -> None:
    """The pending asyncio tasks' stacks: what a hung test waits for."""
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out.write(f"\n=== {nodeid} still running after {HANG_REPORT_S:.0f} s; {len(tasks)} pending asyncio tasks ===\n")
    for task in tasks:
        task.print_stack(file=out)
    out.flush()
