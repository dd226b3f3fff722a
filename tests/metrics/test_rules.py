"""The shipped queue-time recording rule: valid, unit-tested by promtool, and equal to the raw query."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from metrics_testdata import OLD_NIM_POD, RULES, T0, TRITON_POD, VLLM_POD, WEB_POD

from autoscaler.metrics import InstantVector, LeaseTarget, Ok, PodTarget, PrometheusClient, QueueTime, fetch
from autoscaler.metrics.kinds.queue_time import RECORDED_QUEUE_TIME, RECORDED_REQUEST_RATE, recording_exprs
from autoscaler.metrics.localprom import rule_expressions

pytestmark = pytest.mark.prometheus
HERE = Path(__file__).resolve().parent


def test_promtool_checks_the_rule_file() -> None:
    """`promtool check rules` accepts the file and finds both rules."""
    proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules` on queue_time_rules_test.yaml (gpu_uuid split, zero traffic) passes."""
    proc = subprocess.run(["promtool", "test", "rules", "queue_time_rules_test.yaml"], cwd=HERE,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rule_names_match_the_builder() -> None:
    """The builder's default recorded names are the ones the rule file records."""
    assert set(rule_expressions(RULES)) == {RECORDED_QUEUE_TIME, RECORDED_REQUEST_RATE}


def test_rule_file_is_the_builders_rule() -> None:
    """The rule file records what the per-lease PrometheusRule and the raw source compute (both servers), spelt
    out for people: the same expressions but for layout and the empty matchers."""
    def normal(expr: str) -> str:
        return "".join(expr.replace("{}", "").split())

    rate, queue = recording_exprs("")
    exprs = rule_expressions(RULES)
    assert normal(exprs[RECORDED_REQUEST_RATE]) == normal(rate)
    assert normal(exprs[RECORDED_QUEUE_TIME]) == normal(queue)


async def test_rule_expression_equals_raw_builder_at_pinned_time(client: PrometheusClient) -> None:
    """The rule's own expression, evaluated on the backfilled counters, gives the raw builder's values."""
    expr = rule_expressions(RULES)[RECORDED_QUEUE_TIME]
    answer = await client.query(expr, at=T0)
    assert isinstance(answer, InstantVector)
    by_pod = {PodTarget(s.labels["namespace"], s.labels["pod"]): s.value for s in answer.samples}
    assert by_pod[PodTarget("team-a", "llm-a-0")] == pytest.approx(600.0)
    assert by_pod[PodTarget("team-b", "llm-b-0")] == pytest.approx(2000.0)
    assert math.isnan(by_pod[PodTarget("team-a", "llm-a-1")])  # no traffic: NaN, not a silent 0
    assert by_pod[PodTarget("team-c", VLLM_POD)] == pytest.approx(50_000.0)  # vLLM's histogram
    assert by_pod[PodTarget("team-d", OLD_NIM_POD)] == pytest.approx(500_000.0)  # NIM's gauge, Little's law
    assert PodTarget("team-d", WEB_POD) not in by_pod  # not NIM (no num_request_max)
    raw = await fetch(client, QueueTime(source="raw"), [LeaseTarget.of("team-a", ["llm-a-0"]),
                                                        LeaseTarget.of("team-b", ["llm-b-0"]),
                                                        LeaseTarget.of("team-c", [VLLM_POD, TRITON_POD]),
                                                        LeaseTarget.of("team-d", [OLD_NIM_POD])], at=T0)
    for pod, outcome in raw.outcomes.items():
        assert outcome == Ok(pytest.approx(by_pod[pod]))
