"""`autoscaler tune`: one knob of `default` swept over a trace, each value a faithful run, the recommendation the
cheapest within the budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.config import load_policy
from autoscaler.replay.policies import ReplaySettings
from autoscaler.replay.run import replay
from autoscaler.replay.workload import DEFAULT_SERVING

REPO = Path(__file__).resolve().parents[2]
SHIPPED = load_policy(REPO / "config" / "policy.yaml")
KNOB = "predictive.violationTarget"


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """Twenty minutes: quiet, a step up, quiet again."""
    rng = np.random.default_rng(5)
    rows = "\n".join(f"{i},{n}" for i, n in enumerate(rng.poisson(np.repeat([3.0, 12.0, 4.0], 400))))
    path = tmp_path / "t.csv"
    path.write_text(f"# bucket_seconds=1\nt_seconds,requests\n{rows}\n")
    return path


def _figures(s: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in s.items() if k != "wallSeconds"}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_variant_is_the_run_of_default_with_its_option(trace: Path, jobs: int) -> None:
    """A variant (a sweep's value) gives the figures a replay of `default` with that --policy-option gives, in this
    process or in worker processes."""
    settings = ReplaySettings(serving=DEFAULT_SERVING, startup_s=30.0, max_replicas=12)
    plain = replay(trace, ["default"], settings, SHIPPED, peak_replicas=6, options={KNOB: 0.2}, jobs=1)
    both = replay(trace, ["hpa"], settings, SHIPPED, peak_replicas=6, jobs=jobs,
                  variants={"loose": {KNOB: 0.2}, "tight": {KNOB: 0.005}})
    assert list(both.summaries) == ["hpa", "loose", "tight"]
    assert _figures(both.summaries["loose"]) == _figures(plain.summaries["default"])
    assert _figures(both.summaries["tight"]) != _figures(both.summaries["loose"])


def test_tune_sweeps_the_knob_and_recommends_the_cheapest_value_within_the_budget(
        trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each value (and the cluster policy's own) is a row; a tighter violation target buys fewer violations with
    more GPU-seconds; the recommendation is the cheapest row within --max-violations."""
    base = ["tune", "--trace", str(trace), "--peak-replicas", "6", "--startup-seconds", "30",
            "--values", "0.3,0.005", "--baselines", "hpa,oracle"]
    png = tmp_path / "sweep.png"
    assert main([*base, "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert [r["value"] for r in rows] == [0.005, 0.04, 0.3] and [r["current"] for r in rows] == [False, True, False]
    assert set(out["baselines"]) == {"hpa", "oracle"} and png.stat().st_size > 0
    tight, loose = rows[0], rows[-1]
    assert tight["sloViolationFraction"] < loose["sloViolationFraction"]
    assert tight["gpuSeconds"] > loose["gpuSeconds"]
    # a budget between the two: the cheapest row within it, whichever that is
    budget = (tight["sloViolationFraction"] + loose["sloViolationFraction"]) / 2
    assert main([*base, "--json", "--max-violations", f"{budget}"]) == 0
    out = json.loads(capsys.readouterr().out)
    within = [r for r in out["rows"] if r["sloViolationFraction"] <= budget]
    assert out["recommended"] == min(within, key=lambda r: r["gpuSeconds"])["value"]
    # none within an impossible budget: no recommendation, and the sentence says so
    assert main([*base, "--json", "--max-violations", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recommended"] is None and "no value keeps" in out["reason"]
    # the table says it in words and gives the ConfigMap lines
    assert main([*base, "--max-violations", f"{budget}"]) == 0
    text = capsys.readouterr().out
    assert "(current)" in text and "violationTarget:" in text.split("in the cluster policy ConfigMap:")[1]


@pytest.mark.parametrize(("extra", "message"), [
    (["--knob", "predictive.noSuchKnob", "--values", "1"], "have no 'noSuchKnob'"),
    (["--knob", "kpa.targetUtilization", "--values", "0.5"], "expected predictive.KEY"),
    (["--knob", "predictive.burstWindowSeconds"], "--values is needed"),
    (["--values", "0.02,1.5"], "violationTarget=1.5 is not a valid value"),
    (["--values", "0.02,many"], "'many' is not a number"),
    (["--baselines", "hpa,default"], "--baselines"),
])
def test_tune_rejects_bad_input_before_any_run(trace: Path, extra: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A knob the policy does not have, a value its validation rejects, a missing --values: exit 2, say which."""
    assert main(["tune", "--trace", str(trace), *extra]) == 2
    assert message in capsys.readouterr().err


def test_tune_needs_the_predictive_algorithm(trace: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """With algorithm: hpa the predictive knobs do not reach `default`: exit 2 instead of a flat sweep."""
    cfg = tmp_path / "hpa.yaml"
    cfg.write_text("autoscaling:\n  enable: true\n  algorithm: hpa\n")
    assert main(["tune", "--trace", str(trace), "--config", str(cfg)]) == 2
    assert "algorithm is 'hpa'" in capsys.readouterr().err
