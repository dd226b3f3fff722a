"""The root supervisor's shutdown order: the control loop finishes its tick before anything is cancelled."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

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


async def test_a_tick_longer_than_the_drain_time_is_cancelled() -> None:
    stop, events = asyncio.Event(), []
    task = asyncio.ensure_future(supervise({"loop": _until_cancelled("loop", events),
                                            "watch": _until_cancelled("watch", events)}, stop, drain_s=0.1))
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2.0)
    assert sorted(events) == ["loop cancelled", "watch cancelled"]


def test_sigterm_before_the_caches_sync_stops_at_once_and_cleanly(tmp_path: Path) -> None:
    """`autoscaler run` against an API server that is not there yet: SIGTERM stops it without waiting out the
    loop's drain time (there is no tick to finish) and without a stray traceback."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler.cli", "run", "--kubeconfig", str(kubeconfig), "--no-leader-election",
         "--listen", "127.0.0.1:0", "--prometheus-url", "http://127.0.0.1:1", "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while "serving" not in lines[-1] and lines[-1]:
            lines.append(proc.stdout.readline())
        time.sleep(0.5)  # the caches are retrying their first list
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == 0, out[-2000:]
    assert elapsed < 4.0, f"took {elapsed:.1f}s: waited for a tick that never started"
    assert "stopped" in out and "Traceback" not in out and "never retrieved" not in out, out[-2000:]
