"""The suite's hang report names what each pending task waits for."""

from __future__ import annotations

import asyncio
import io
import threading

from tests.hangs import write_report


async def _wait_for_a_deletion_that_never_comes(event: asyncio.Event) -> None:
    await event.wait()


async def test_a_hang_report_shows_each_pending_task_and_what_it_awaits() -> None:
    never = asyncio.Event()
    task = asyncio.create_task(_wait_for_a_deletion_that_never_comes(never), name="kubelet-default-pod-a")
    await asyncio.sleep(0)  # the task now waits on the event
    out = io.StringIO()
    reporter = threading.Thread(target=write_report, args=("tests/x.py::test_y", out))  # as the timer's thread does
    reporter.start()
    await asyncio.to_thread(reporter.join)
    text = out.getvalue()
    task.cancel()
    assert "tests/x.py::test_y still running after 300 s" in text
    assert "kubelet-default-pod-a" in text and "_wait_for_a_deletion_that_never_comes" in text
    assert "await event.wait()" in text
