"""Suite-wide: what a test leaves open is collected at its own end, and listed, instead of failing a later test.

Warnings are errors in this suite (pyproject.toml), so a socket some test forgot to close raised its
ResourceWarning in whichever later test happened to run a full garbage collection: the controller's
`tune_gc` does, so `tests/deploy/test_promobjects.py` failed now and then for another test's leak. Each test
now ends with a collection whose ResourceWarnings are recorded with the test's id and printed in the
summary ("resources left open"), where they can be fixed.

A test still running (teardown included) after ``HANG_REPORT_S`` gets its asyncio tasks' stacks and every thread's
stack printed to the real stderr: a hang in an idle event loop shows no Python frame of its own (the loop waits in
`epoll` with no timer left), and the tasks' stacks say what each one waits for.
"""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Iterator

import pytest

from tests.hangs import HANG_REPORT_S, report_hang

_LEFT_OPEN: list[str] = []


@pytest.fixture(autouse=True)
def _report_a_hang(request: pytest.FixtureRequest) -> Iterator[None]:
    # autouse and set up first, so torn down last: a hang in another fixture's teardown is covered too
    timer = threading.Timer(HANG_REPORT_S, report_hang, args=(request.node.nodeid, request.config))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture(autouse=True)
def _collect_what_the_test_left_open(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    _LEFT_OPEN.extend(f"{request.node.nodeid}: {w.message}" for w in caught if issubclass(w.category, ResourceWarning))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LEFT_OPEN:
        terminalreporter.section("resources left open (collected at the end of the test that opened them)")
        for line in _LEFT_OPEN:
            terminalreporter.write_line(line)
