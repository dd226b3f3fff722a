"""The demo's live view renders a lease table on a terminal and plain lines otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from autoscaler.demo.live import LiveView
from autoscaler.demo.runner import LeaseState
from autoscaler.demo.scenario import make_plan

STATES = [
    LeaseState("triton-resnet", "enforce", "story", desired=3, ready=2, min_replicas=1, max_replicas=6,
               metrics=[{"name": "queueTime", "value": 12000.0, "target": 50000, "unit": "us"},
                        {"name": "cpuUtilization", "value": 0.4, "utilization": 41, "target": 40, "unit": "%"}],
               reason="DesiredWithinRange"),
    LeaseState("triton-typo", "invalid", "story", message="max-replicas='ten': must be a whole number >= 1"),
]


def test_terminal_view_shows_replicas_metric_vs_target_and_reason() -> None:
    """On a terminal: a table with ready/desired, each metric against its target (CPU as percent), and reasons."""
    buf = io.StringIO()
    view = LiveView(buf)
    view.plain = False
    view.console = Console(file=buf, force_terminal=True, width=160)
    view.start(make_plan("step", 30, 10, None))
    view.update(5.0, STATES)
    view.stop()
    out = buf.getvalue()
    assert "2/3" in out and "queueTime 12.0/50 ms" in out and "cpuUtilization 41/40%" in out
    assert "DesiredWithinRange" in out and "max-replicas='ten'" in out


def test_plain_view_prints_one_line_per_lease() -> None:
    """Without a terminal: a status line per lease, and notes as they come."""
    buf = io.StringIO()
    view = LiveView(buf)
    assert view.plain
    view.start(make_plan("step", 30, 10, None))
    view.note("demo/triton-resnet: scaled 1 -> 3")
    view.update(0.0, STATES)
    lines = buf.getvalue().splitlines()
    assert any("scaled 1 -> 3" in x for x in lines)
    assert any(x.startswith("t=  0.0s triton-resnet") and "2/3" in x for x in lines)
