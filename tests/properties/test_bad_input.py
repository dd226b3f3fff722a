"""Bad input, generated: annotations, the policy YAML, the ``decide`` JSON, PromQL answers and PromQL
injection attempts. Every one ends in a result or a precise, typed error: never a crash."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler import ANNOTATION_PREFIX
from autoscaler.commands import decide as decide_cmd
from autoscaler.config import PolicyError, load_policy, parse_policy, resolve_lease
from autoscaler.metrics.client import _parse, _Retryable
from autoscaler.metrics.promql import LeaseTarget, quote, regex_quote
from autoscaler.metrics.registry import default_registry
from autoscaler.metrics.results import InstantVector, QueryError
from autoscaler.policy.snapshot_json import SnapshotError

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "autoscaler" / "data" / "policy.yaml")
EXAMPLES = sorted((ROOT / "examples").glob("decide-*.json"))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
keys = st.sampled_from(["enabled", "min-replicas", "max-replicas", "metrics", "mode", "paused", "target-queueTime",
                        "queue-time-target", "scale-down-window", "nonsense"])
nasty = st.text(max_size=30) | st.sampled_from(['"} or vector(1) #', "a\"}", "x\\", "1e309", "-1", "NaN", "", " 3 "])


@FAST
@given(st.dictionaries(keys.map(lambda k: ANNOTATION_PREFIX + k), nasty, max_size=6))
def test_any_annotations_resolve_or_report_issues(ann: dict[str, str]) -> None:
    """Arbitrary annotation values give a lease within the policy limits, or issues naming the key; never raise."""
    res = resolve_lease("ns", "d", ann, POLICY)
    for issue in res.issues:
        assert issue.key and issue.message
    if res.lease is not None:
        assert 0 <= res.lease.min_replicas <= res.lease.max_replicas
        for m in res.lease.metrics:
            assert m.query is None or '"} or vector' not in m.query  # annotations never supply PromQL


def _mutate_policy(base: Any, path: list[str], value: Any) -> Any:
    doc = json.loads(json.dumps(base))
    node = doc
    for k in path[:-1]:
        node = node.setdefault(k, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[path[-1]] = value
    return doc


POLICY_PATHS = [["autoscaling", "replicas", "default", "minimum"], ["autoscaling", "replicas", "limits", "maximum"],
                ["autoscaling", "loopIntervalSeconds"], ["autoscaling", "fallback"], ["autoscaling", "metrics"],
                ["autoscaling", "prometheus", "timeoutSeconds"], ["autoscaling", "behavior"], ["autoscaling"],
                ["extra"]]


@FAST
@given(st.sampled_from(POLICY_PATHS), json_values)
def test_policy_yaml_parses_or_names_the_field(path: list[str], value: Any) -> None:
    """A policy with any value at a known place parses, or fails with a PolicyError naming its source."""
    import yaml
    base = yaml.safe_load((ROOT / "autoscaler" / "data" / "policy.yaml").read_text())
    text = yaml.safe_dump(_mutate_policy(base, path, value))
    try:
        parse_policy(text, source="cm/policy.yaml")
    except PolicyError as exc:
        assert "cm/policy.yaml" in str(exc)


@FAST
@given(st.text(max_size=200))
def test_policy_yaml_garbage_text(text: str) -> None:
    """Any text as the policy ConfigMap: a policy or a PolicyError, nothing else."""
    try:
        parse_policy(text, source="cm")
    except PolicyError:
        pass


def _decide_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _decide_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _decide_paths(v, (*prefix, i))
    return out


@FAST
@given(st.sampled_from(EXAMPLES), st.data(), json_values)
def test_decide_json_mutations_give_a_decision_or_a_message(example: Path, data: Any, value: Any) -> None:
    """Replacing any node of a valid snapshot with any JSON value: a decision, or SnapshotError (exit 2)."""
    doc = json.loads(example.read_text())
    path = data.draw(st.sampled_from(_decide_paths(doc)[1:]))
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        out = decide_cmd.decide_document(doc)
    except SnapshotError as exc:
        assert str(exc)
    else:
        assert isinstance(out, dict) and out


@pytest.mark.parametrize("text", ["{", "[]", '{"current": "x"}', "null", '"str"', "{\"a\": NaN}"])
def test_decide_cli_exits_2_with_a_message(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints one ``autoscaler decide:`` line and returns 2 for bad documents, no traceback."""
    f = tmp_path / "snap.json"
    f.write_text(text)
    rc = decide_cmd.run(argparse.Namespace(files=[str(f)], compact=True))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("autoscaler decide:") and "Traceback" not in err


sample = st.fixed_dictionaries({
    "metric": st.dictionaries(st.sampled_from(["namespace", "pod", "autoscaler_part", "container", "x"]),
                              st.text(max_size=8), max_size=4),
    "value": st.tuples(st.floats(0, 2e9) | st.text(max_size=5), st.sampled_from(["1", "NaN", "+Inf", "-Inf", "x", ""])
                       | st.text(max_size=5)).map(list)})
answers = st.fixed_dictionaries({
    "status": st.sampled_from(["success", "error", "x"]),
    "data": st.fixed_dictionaries({"resultType": st.sampled_from(["vector", "matrix", "scalar", "string", "?"]),
                                   "result": st.lists(sample, max_size=5) | json_values}) | json_values,
}) | json_values


@FAST
@given(st.sampled_from([200, 400, 422, 429, 500, 503]), answers)
def test_promql_answers_parse_to_a_vector_or_a_query_error(status: int, doc: Any) -> None:
    """Any JSON (or broken body) from Prometheus becomes an InstantVector or a QueryError (5xx/429 ones
    raised as the retry loop's `_Retryable`, which carries its QueryError): never another exception."""
    for body in (json.dumps(doc).encode(), json.dumps(doc).encode()[:7]):
        try:
            out = _parse(status, body, None, None)
        except _Retryable as exc:
            assert status >= 500 or status == 429
            out = exc.error
        assert isinstance(out, InstantVector | QueryError)


def _skeleton(query: str) -> str:
    """The query with every double-quoted string literal blanked: what PromQL parses as structure."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)


KINDS = ["queueTime", "gpuUtilization", "cpuUtilization"]


@FAST
@given(st.sampled_from(KINDS), st.text(min_size=1, max_size=20), st.lists(st.text(min_size=1, max_size=20),
                                                                          min_size=1, max_size=3))
def test_label_values_cannot_change_the_query_structure(kind: str, namespace: str, pods: list[str]) -> None:
    """Namespace and pod names (which users control) end up inside string literals only: the query's
    structure is the same as for harmless names, whatever quotes, braces or PromQL they contain."""
    k = default_registry().create(kind, {})
    benign = k.build([LeaseTarget.of("ns", [f"p{i}" for i in range(len(set(pods)))])])
    hostile = k.build([LeaseTarget.of(namespace, pods)])
    assert _skeleton(hostile) == _skeleton(benign)


@FAST
@given(st.text(max_size=40))
def test_quote_and_regex_quote_are_exact(value: str) -> None:
    """`quote` produces one literal that decodes to the value; `regex_quote` matches the value only."""
    q = quote(value)
    assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', q, flags=re.S)
    assert re.fullmatch(regex_quote(value), value, flags=re.S)
    assert re.fullmatch(regex_quote(value), value + "x", flags=re.S) is None


@pytest.mark.parametrize("value", [1.797693134862316e+305, -1e17, float("inf")])
def test_decide_rejects_a_quantity_whose_milli_value_overflows(value: float) -> None:
    """A sample value too large for a 64-bit milli-value (hypothesis found 1.8e305 crashing with OverflowError)
    is a SnapshotError naming the field, not a traceback."""
    doc = json.loads((ROOT / "examples" / "decide-metric-failure-holds.json").read_text())
    doc["metrics"][0]["samples"][0]["value"] = value
    with pytest.raises(SnapshotError, match=r"metrics\.0\.samples\.0\.value.*out of range"):
        decide_cmd.decide_document(doc)
