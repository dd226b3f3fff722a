"""The demo's live view: a rich table per lease on a terminal, plain lines otherwise.

Per lease: mode, replicas ready/desired (and the bounds), each metric against its target, the load,
and the last reason; a progress bar over the run. Without a terminal (CI, pipes) it prints a status
line per lease every few seconds plus every set-up step and scale event, so logs read as a story.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from autoscaler.demo.runner import LeaseState, View, metric_value
from autoscaler.demo.scenario import Plan

UNITS = {"us": "µs", "percent": "%", "%": "%", "cores": "cores"}


def metric_text(m: dict[str, Any]) -> str:
    """``queueTime 12.3 ms / 50 ms`` style text for one metric of a lease."""
    name, value, target, unit = m.get("name", "?"), metric_value(m), m.get("target"), m.get("unit", "")
    if unit == "us":
        v = "—" if value is None else f"{value / 1000:.1f}"
        return f"{name} {v}/{(target or 0) / 1000:g} ms"
    v = "—" if value is None else f"{value:.0f}"
    return f"{name} {v}/{target:g}{UNITS.get(unit, unit)}"


def replicas_text(s: LeaseState) -> str:
    desired = "—" if s.desired is None else str(s.desired)
    return f"{s.ready}/{desired}"


class LiveView(View):
    """Rich live table when ``console`` is a terminal, else plain lines every ``plain_every_s`` seconds."""

    def __init__(self, stream: IO[str] | None = None, *, force_plain: bool = False, plain_every_s: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream)
        self.plain = force_plain or not self.console.is_terminal
        self.plain_every_s = plain_every_s
        self._last_plain = -1e9
        self._live: Live | None = None
        self._progress: Progress | None = None
        self._task: Any = None
        self._notes: list[str] = []
        self._plan: Plan | None = None
        self._started = time.monotonic()

    # -- View -----------------------------------------------------------------------------------------

    def start(self, plan: Plan) -> None:
        self._plan = plan
        self._started = time.monotonic()
        head = (f"autoscaler demo: {len(plan.leases)} leases, scenario {plan.scenario}, trace {plan.trace} "
                f"at {plan.speed:g}x, {plan.duration_s:g} s (Ctrl-C stops early and still writes the report)")
        if self.plain:
            self._print(head)
            return
        self.console.print(head)
        self._progress = Progress(TextColumn("run"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                                  TimeElapsedColumn(), console=self.console)
        self._task = self._progress.add_task("run", total=plan.duration_s)
        self._live = Live(self._render([]), console=self.console, refresh_per_second=4, transient=False)
        self._live.start()

    def note(self, message: str) -> None:
        stamp = f"[{time.monotonic() - self._started:6.1f}s] {message}"
        if self.plain:
            self._print(stamp)
            return
        self._notes = [*self._notes, stamp][-6:]

    def update(self, t: float, states: list[LeaseState]) -> None:
        if self.plain:
            if t - self._last_plain >= self.plain_every_s:
                self._last_plain = t
                for s in states:
                    self._print(self.plain_line(t, s))
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=min(t, self._plan.duration_s if self._plan else t))
        if self._live is not None:
            self._live.update(self._render(states))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            for n in self._notes[-3:]:
                self.console.print(n)

    # -- rendering ------------------------------------------------------------------------------------

    @staticmethod
    def plain_line(t: float, s: LeaseState) -> str:
        metrics = ", ".join(metric_text(m) for m in s.metrics) or "—"
        return (f"t={t:5.1f}s {s.name:<17} {s.mode:<8} ready/desired {replicas_text(s):>5} "
                f"[{s.min_replicas}..{s.max_replicas}] load {s.rate:5.1f} req/s  {metrics}  {s.reason}")

    def _render(self, states: list[LeaseState]) -> Group:
        table = Table(expand=True, title="leases (namespace demo)", title_justify="left")
        table.add_column("lease", no_wrap=True)
        table.add_column("mode")
        table.add_column("ready/desired", justify="right")
        table.add_column("bounds", justify="right")
        table.add_column("load req/s", justify="right")
        table.add_column("metric / target")
        table.add_column("last reason", overflow="fold")
        for s in states:
            style = {"shadow": "cyan", "invalid": "red"}.get(s.mode, "green")
            reason = s.reason if s.mode != "invalid" else s.message
            table.add_row(s.name, Text(s.mode, style=style), replicas_text(s), f"{s.min_replicas}..{s.max_replicas}",
                          f"{s.rate:.1f}", "\n".join(metric_text(m) for m in s.metrics) or "—", reason)
        parts: list[Any] = [table]
        if self._progress is not None:
            parts.append(self._progress)
        parts.extend(Text(n, style="dim") for n in self._notes)
        return Group(*parts)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
