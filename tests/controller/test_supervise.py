"""The root supervisor's shutdown order: the control loop finishes its tick before anything is cancelled."""
from __future__ import annotations

import asyncio

from autoscaler.controller import supervise


async def _until_cancelled(name: str, events: list[str]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        events.append(f"{name} cancelled")
        raise


async def test_stop_lets_the_loop_finish_its_tick_then_cancels_the_rest() -> None:
    """A stop (SIGTERM) in the middle of a tick: the tick's write and its Event both happen, and only then are
    the watches and the leader election cancelled (an Event lost after its scale is a write nobody can explain)."""
    stop, mid_tick, events = asyncio.Event(), asyncio.Event(), []

    async def loop() -> None:
        while not stop.is_set():
            events.append("scale written")
            mid_tick.set()
            await asyncio.sleep(0.2)
            events.append("event written")

    task = asyncio.ensure_future(supervise({"loop": loop(), "watch": _until_cancelled("watch", events),
                                            "leader": _until_cancelled("leader", events)}, stop))
    await mid_tick.wait()
    stop.set()
    await task
    assert events[:2] == ["scale written", "event written"]
    assert sorted(events[2:]) == ["leader cancelled", "watch cancelled"]


async def test_a_tick_longer_than_the_grace_is_cancelled() -> None:
    stop, events = asyncio.Event(), []
    task = asyncio.ensure_future(supervise({"loop": _until_cancelled("loop", events),
                                            "watch": _until_cancelled("watch", events)}, stop, grace_s=0.1))
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2.0)
    assert sorted(events) == ["loop cancelled", "watch cancelled"]
