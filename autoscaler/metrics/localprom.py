"""A real Prometheus on backfilled data, for tests, benchmarks and demos.

Writes OpenMetrics text, turns it into TSDB blocks with ``promtool tsdb create-blocks-from
openmetrics`` and serves them with ``prometheus`` on a free loopback port. Queries then run at pinned
times inside the backfilled range. Recording rules given here are loaded (and checked by
Prometheus) but only evaluate from "now" on, never over backfilled history.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class OpenMetricsWriter:
    """Collects series and writes them as one OpenMetrics file (families kept contiguous)."""

    def __init__(self) -> None:
        self._families: dict[str, list[str]] = {}

    def add(self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]) -> None:
        """Add one series: `points` are (unix seconds, value), in increasing time."""
        body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
        head = f"{name}{{{body}}}" if body else name
        lines = self._families.setdefault(name, [])
        lines.extend(f"{head} {_number(v)} {t:.3f}" for t, v in points)

    def add_triton(self, labels: Mapping[str, str], times: Sequence[float], served: Sequence[float],
                   service_us: float, queue_us: float) -> None:
        """Triton's request counters of one model on one pod: ``served`` requests by each of ``times`` (cumulative,
        none failed), each computed for ``service_us`` after waiting ``queue_us``, nothing pending."""
        self.add("nv_inference_request_success", labels, zip(times, served, strict=True))
        self.add("nv_inference_request_failure", labels, [(t, 0.0) for t in times])
        self.add("nv_inference_compute_infer_duration_us", labels,
                 [(t, n * service_us) for t, n in zip(times, served, strict=True)])
        self.add("nv_inference_queue_duration_us", labels, [(t, n * queue_us) for t, n in zip(times, served, strict=True)])
        self.add("nv_inference_pending_request_count", labels, [(t, 0.0) for t in times])

    def write(self, path: Path) -> None:
        """Write the file, ending with ``# EOF``."""
        with open(path, "w", encoding="utf-8") as fh:
            for name, lines in self._families.items():
                fh.write(f"# TYPE {name} unknown\n")
                fh.write("\n".join(lines))
                fh.write("\n")
            fh.write("# EOF\n")


def backfill(openmetrics: Path, tsdb_dir: Path, promtool: str = "promtool") -> None:
    """Create TSDB blocks in `tsdb_dir` from an OpenMetrics file."""
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics),
                           str(tsdb_dir)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def free_port() -> int:
    """A loopback port free right now (another process may still take it: `start` retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalPrometheus:
    """``prometheus`` serving `tsdb_dir` on 127.0.0.1; a context manager."""

    def __init__(self, tsdb_dir: Path, rule_files: Sequence[Path] = (), binary: str = "prometheus",
                 extra_args: Sequence[str] = ()) -> None:
        self.tsdb_dir = tsdb_dir
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.binary = shutil.which(binary) or binary
        self.extra_args = list(extra_args)
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tsdb_dir.parent / f"{tsdb_dir.name}.prometheus.log"

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0, attempts: int = 3) -> str:
        """Start and wait until ``/-/ready``; returns the base URL."""
        config = self.tsdb_dir.parent / f"{self.tsdb_dir.name}.prometheus.yml"
        rules = "".join(f"  - {p}\n" for p in self.rule_files)
        rule_block = f"rule_files:\n{rules}" if rules else ""
        config.write_text("global:\n  evaluation_interval: 15s\n" + rule_block)
        last = ""
        for _ in range(attempts):
            port = free_port()
            with open(self._log, "wb") as log:
                self._proc = subprocess.Popen(
                    [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.tsdb_dir}",
                     f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y",
                     *self.extra_args],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            if self._wait_ready(url, timeout_s):
                self.url = url
                return url
            self.stop()
            last = self._log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"prometheus did not become ready: {last}")

    def _wait_ready(self, url: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate this Prometheus (only the process started here) and wait for it."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None


def rule_expressions(path: Path) -> dict[str, str]:
    """``record name -> expr`` of a Prometheus rule file (to query a rule's text at a pinned time)."""
    import yaml  # local: only tests and tools need it

    doc = yaml.safe_load(path.read_text())
    out: dict[str, str] = {}
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "record" in rule:
                out[str(rule["record"])] = str(rule["expr"])
    return out


__all__ = ["LocalPrometheus", "OpenMetricsWriter", "backfill", "free_port", "rule_expressions"]
