"""``autoscaler demo`` end to end in a subprocess: sandbox, real Prometheus, controller, load, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from autoscaler.demo.scenario import LEASES, largest_step, make_plan


def test_demo_scales_up_under_load_then_down_and_writes_the_report(tmp_path: Path) -> None:
    """A short run scales the enforced leases up on the step and back down, within bounds, and writes every file."""
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "autoscaler.cli", "demo", "--duration", "45", "--json", "--report-dir", str(report)],
        capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["reportDir"] == str(report)
    leases = summary["leases"]
    assert set(leases) == {f"demo/{x.name}" for x in LEASES}
    for key, s in leases.items():
        assert set(s) == {"mode", "minReplicas", "maxReplicas", "scaleUps", "scaleDowns", "peakReplicas",
                          "lowestReplicas", "sloViolationFraction", "gpuSeconds", "reactionSeconds"}, key
        assert s["minReplicas"] <= s["lowestReplicas"] <= s["peakReplicas"] <= s["maxReplicas"], key
        assert 0.0 <= s["sloViolationFraction"] <= 1.0 and s["gpuSeconds"] > 0, key
    for key in ("demo/triton-resnet", "demo/triton-predictive", "demo/triton-cpu", "demo/nim-llm",
                "demo/nim-predictive"):
        s = leases[key]
        assert s["mode"] == "enforce" and s["scaleUps"] >= 1 and s["scaleDowns"] >= 1, (key, s)
        assert s["peakReplicas"] >= 3 and s["lowestReplicas"] == 1, (key, s)
        assert s["reactionSeconds"] is not None and 0 <= s["reactionSeconds"] <= 15, (key, s)
    zero = leases["demo/triton-zero"]  # no request after the step: zero replicas 8 s after the last one
    assert zero["minReplicas"] == 0 and zero["lowestReplicas"] == 0 and zero["peakReplicas"] >= 2, zero
    shadow = leases["demo/triton-shadow"]
    assert shadow["mode"] == "shadow" and shadow["peakReplicas"] >= 3  # recommended, never applied
    typo = leases["demo/triton-typo"]
    assert typo["mode"] == "invalid" and typo["scaleUps"] == 0 and typo["reactionSeconds"] is None
    for name in ["summary.md", "summary.html", "summary.json", "samples.csv", "load.csv", "policy.yaml",
                 *(f"{x.name}.png" for x in LEASES)]:
        assert (report / name).stat().st_size > 0, name
    assert (report / "triton-resnet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report / "summary.md").read_text()
    assert "max-replicas='ten'" in md and "reaction" in md
    # the zero lease's requests went through the activator: those sent at zero were held, and none was lost
    through = re.search(r"Through the activator: ([0-9,]+) requests, ([0-9,]+) of them held while no pod was Ready "
                        r"\(([0-9.]+) s on average.*?; every one answered by a pod", md)
    assert through, md[md.index("## demo/triton-zero"):]
    # they waited for the wake and a 1-s start-up; the later ones only for part of it, so the mean is under that
    assert int(through[2].replace(",", "")) > 0 and float(through[3]) > 0.1
    shadow_rows = [r for r in (report / "samples.csv").read_text().splitlines() if ",triton-shadow," in r]
    assert shadow_rows and all(",shadow,1," in r for r in shadow_rows)  # its Deployment was never scaled
    pid = int(re.search(r"Prometheus \(pid (\d+)\)", proc.stderr).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists(), "Prometheus outlived the demo"


def test_step_plan_has_a_clear_step_up_and_down() -> None:
    """The step scenario rises at 20 % of the run and falls at 55 %, whatever the duration."""
    plan = make_plan("step", 60, 10, None)
    r = plan.rates["triton-resnet"]
    assert r.size == 60 and plan.step_at_s == 12
    assert r[15:30].mean() > 4 * r[:10].mean() and r[40:].mean() < r[15:30].mean() / 4


def test_largest_step_finds_the_rise() -> None:
    """The largest rise of the 5 s mean is found at the step, not at noise."""
    rates = np.concatenate([np.full(30, 5.0), np.full(30, 50.0), np.full(20, 5.0)])
    assert largest_step(rates) == 30.0


def test_trace_scenario_fits_a_day_into_the_run() -> None:
    """The trace scenario time-compresses the diurnal trace so its first day fills the run."""
    plan = make_plan("trace", 120, None, "servegen_mlarge_days07-13_600s")
    assert plan.speed == 86_400 / 120
    r = plan.rates["triton-resnet"]
    assert r.max() > 2 * r.min()
