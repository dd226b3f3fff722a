"""Run the real Prometheus (``/usr/bin/prometheus``) for the sandbox.

Writes a config with file-based service discovery (one JSON file per job, rewritten atomically as
pods come and go, so targets appear and vanish as they would under a PodMonitor), the recording rules
found in ``config/`` plus any given, and starts Prometheus on a loopback port with a temporary TSDB.

Jobs and target labels (what the Prometheus Operator would give):

* pods: ``namespace``, ``pod``, ``container``, ``endpoint="metrics"``, ``job="<ns>/<podmonitor>"``,
  ``instance`` (address) and the pod's labels (as ``podTargetLabels`` would copy them), scraped with
  ``honor_labels: false``; the metrics path per target (``/metrics`` or NIM's ``/v1/metrics``).
* dcgm-exporter (per node): its own pod's ``namespace``/``pod``/``container``, ``honor_labels: false``,
  so the GPU user's labels arrive as ``exported_*``.
* kubelet cAdvisor (per node): ``honor_labels: true``, ``metrics_path="/metrics/cadvisor"``, ``node``.

Timing: a target file change reaches the scrape manager within about 5 s (Prometheus's discovery
manager sends updates at most every 5 s), so a new pod's first scrape and a deleted pod's removal
lag its event by up to ~5 s plus one scrape interval. A target that goes away gets stale markers,
so its series stop answering queries at once instead of lingering for the 5 min lookback.

Prometheus is stopped with SIGTERM (then SIGKILL) by :meth:`PrometheusServer.stop`, at interpreter
exit, and, on Linux, by the kernel when the parent dies (``PR_SET_PDEATHSIG``), so no orphan is left.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from autoscaler.metrics.localprom import free_port

DEFAULT_BINARY = "/usr/bin/prometheus"
MISSING_HELP = ("Prometheus is not installed ({path} not found): run scripts/setup.sh "
                "or `apt-get install prometheus` (as root)")

JOB_PODS = "pods"
JOB_DCGM = "dcgm-exporter"
JOB_KUBELET = "kubelet"
JOB_GATEWAY = "gateway"


class PrometheusError(RuntimeError):
    """Prometheus could not be started or failed."""


def repo_config_dir() -> Path:
    """``config/`` of the source checkout this package runs from (may not exist when installed)."""
    return Path(__file__).resolve().parents[2] / "config"


def default_rule_files(config_dir: Path | None = None) -> list[Path]:
    """``config/*.rules.yaml`` and ``config/rules/*.yaml`` (plus ``*.yml``), sorted, if present."""
    d = config_dir or repo_config_dir()
    found: list[Path] = []
    for pattern in ("*.rules.yaml", "*.rules.yml", "rules/*.yaml", "rules/*.yml"):
        found.extend(sorted(d.glob(pattern)))
    pkg = Path(__file__).resolve().parents[1] / "data" / "rules"
    for pattern in ("*.yaml", "*.yml"):
        found.extend(sorted(pkg.glob(pattern)))
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def rule_groups_from(doc: Any, source: str) -> list[dict[str, Any]]:
    """Prometheus rule groups from a rules file *or* a PrometheusRule object (``spec.groups``)."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise PrometheusError(f"{source}: expected a mapping with 'groups' or a PrometheusRule, got {type(doc).__name__}")
    if doc.get("kind") == "PrometheusRule" or ("spec" in doc and "groups" not in doc):
        doc = doc.get("spec") or {}
    groups = doc.get("groups", [])
    if not isinstance(groups, list):
        raise PrometheusError(f"{source}: 'groups' must be a list")
    return groups



def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class PrometheusServer:
    """A real Prometheus process scraping file-SD targets. Use ``async with`` or start()/stop()."""

    def __init__(self, *, port: int = 0, workdir: Path | None = None, scrape_interval_s: float = 1.0,
                 rule_files: Sequence[Path] | None = None, binary: str | None = None,
                 evaluation_interval_s: float | None = None, retention: str = "1d") -> None:
        self.binary = binary or os.environ.get("AUTOSCALER_PROMETHEUS", DEFAULT_BINARY)
        self.requested_port = port
        self.port = 0
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s or scrape_interval_s
        self.retention = retention
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="sandbox-prometheus-"))
        self.rule_files = list(default_rule_files() if rule_files is None else rule_files)
        self.proc: subprocess.Popen[bytes] | None = None
        self._targets: dict[str, dict[str, dict[str, Any]]] = {JOB_PODS: {}, JOB_DCGM: {}, JOB_KUBELET: {}, JOB_GATEWAY: {}}
        self._extra_rules: dict[str, list[dict[str, Any]]] = {}
        self._log: Any = None

    # -- files -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sd_dir(self) -> Path:
        return self.workdir / "targets"

    @property
    def rules_dir(self) -> Path:
        return self.workdir / "rules"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        interval = _duration(self.scrape_interval_s)
        timeout = _duration(min(self.scrape_interval_s, 10.0))

        def job(name: str, honor: bool, path: str = "/metrics") -> dict[str, Any]:
            return {
                "job_name": name,
                "honor_labels": honor,
                "scrape_interval": interval,
                "scrape_timeout": timeout,
                "metrics_path": path,
                "file_sd_configs": [{"files": [str(self.sd_dir / f"{name}.json")], "refresh_interval": "5s"}],
            }

        return {
            "global": {"scrape_interval": interval, "scrape_timeout": timeout,
                       "evaluation_interval": _duration(self.evaluation_interval_s)},
            "rule_files": [str(self.rules_dir / "*.yaml")],
            "scrape_configs": [job(JOB_PODS, False), job(JOB_DCGM, False),
                               job(JOB_KUBELET, True, "/metrics/cadvisor"), job(JOB_GATEWAY, True)],
        }

    def _write_atomic(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def write_config(self) -> None:
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        for old in self.rules_dir.glob("*.yaml"):
            old.unlink()
        for i, src in enumerate(self.rule_files):
            groups = rule_groups_from(yaml.safe_load(Path(src).read_text()), str(src))
            self._write_atomic(self.rules_dir / f"{i:02d}-{Path(src).stem}.yaml",
                               yaml.safe_dump({"groups": groups}, sort_keys=False))
        for name, groups in self._extra_rules.items():
            self._write_atomic(self.rules_dir / f"zz-{name}.yaml", yaml.safe_dump({"groups": groups}, sort_keys=False))
        for job in self._targets:
            self._write_targets(job)
        self._write_atomic(self.workdir / "prometheus.yml", yaml.safe_dump(self.config(), sort_keys=False))

    def _write_targets(self, job: str) -> None:
        groups = [{"targets": [addr], "labels": labels} for addr, labels in sorted(self._targets[job].items())]
        self._write_atomic(self.sd_dir / f"{job}.json", json.dumps(groups, indent=1))

    # -- targets -----------------------------------------------------------------------------------

    def set_target(self, job: str, address: str, labels: Mapping[str, str]) -> None:
        """Add or replace a target (``address`` = host:port); takes effect at the next SD refresh."""
        self._targets[job][address] = dict(labels)
        if self.sd_dir.exists():
            self._write_targets(job)

    def remove_target(self, job: str, address: str) -> None:
        if self._targets[job].pop(address, None) is not None and self.sd_dir.exists():
            self._write_targets(job)

    def targets(self, job: str) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._targets[job].items()}

    async def set_rule_groups(self, name: str, groups: Iterable[Mapping[str, Any]] | None) -> None:
        """Install (or with None remove) a named rule file at runtime, e.g. from a PrometheusRule; reloads."""
        if groups is None:
            self._extra_rules.pop(name, None)
            (self.rules_dir / f"zz-{name}.yaml").unlink(missing_ok=True)
        else:
            self._extra_rules[name] = [dict(g) for g in groups]
            self._write_atomic(self.rules_dir / f"zz-{name}.yaml",
                               yaml.safe_dump({"groups": self._extra_rules[name]}, sort_keys=False))
        if self.proc is not None:
            await self.reload()

    # -- process -----------------------------------------------------------------------------------

    async def start(self, timeout_s: float = 30.0) -> None:
        self._prepare()
        attempts = 1 if self.requested_port else 3
        last_err: Exception | None = None
        for _ in range(attempts):
            self.port = self.requested_port or free_port()
            try:
                self._popen()
                await self._wait_ready(timeout_s)
                return
            except PrometheusError as exc:  # e.g. the port was taken in between: try another one
                last_err = exc
                self._kill()
        assert last_err is not None
        raise last_err

    def _prepare(self) -> None:
        if not Path(self.binary).exists() and shutil.which(self.binary) is None:
            raise PrometheusError(MISSING_HELP.format(path=self.binary))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()

    def _popen(self) -> None:
        tsdb = self.workdir / "tsdb"
        shutil.rmtree(tsdb, ignore_errors=True)
        args = [
            self.binary,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        self._log = open(self.log_path, "ab")  # closed in _kill
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir,
            preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,
        )
        atexit.register(self._kill)

    async def _wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise PrometheusError(f"prometheus exited with code {code}: {self._log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.url}/-/ready", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                if loop.time() > deadline:
                    raise PrometheusError(f"prometheus not ready after {timeout_s}s: {self._log_tail()}")
                await asyncio.sleep(0.1)

    def _log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    async def reload(self) -> None:
        async with aiohttp.ClientSession() as session, session.post(f"{self.url}/-/reload") as r:
            if r.status != 200:
                raise PrometheusError(f"reload failed ({r.status}): {await r.text()}")

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self._kill)

    async def stop(self) -> None:
        """SIGTERM, wait (SIGKILL after 10 s); removes the working directory if we created it."""
        if self.proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._kill)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self) -> PrometheusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- queries (for tests and the demo report; the controller has its own client) ----------------

    async def query(self, promql: str, session: aiohttp.ClientSession | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` list (raises on an error envelope)."""
        own = session is None
        s = session or aiohttp.ClientSession()
        try:
            async with s.post(f"{self.url}/api/v1/query", data={"query": promql}) as r:
                body = await r.json()
        finally:
            if own:
                await s.close()
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def active_targets(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/api/v1/targets?state=active") as r:
            body = await r.json()
        out: list[dict[str, Any]] = body["data"]["activeTargets"]
        return out
