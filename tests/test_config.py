"""Cluster policy parsing and lease resolution with TMS semantics."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import ANY

import pytest

from autoscaler.config import (
    ClusterPolicy,
    PolicyError,
    Severity,
    lease_upstream,
    load_policy,
    metrics_endpoint,
    parse_policy,
    resolve_lease,
)

ROOT = Path(__file__).resolve().parents[1]
P = "inference-autoscaler.io/"

TMS_VALUES = """
server:
  autoscaling:
    enabled: true
    replicas:
      default: {minimum: 1, maximum: 5}
      limits: {maximum: 10, minimum: {lowerBound: 1, upperBound: 2}}
    metrics:
      cpuUtilization: {allowed: false, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
      gpuUtilization: {allowed: true, enabled: false, threshold: {default: 90, minimum: 50, maximum: 100}}
      queueTime: {allowed: false, enabled: true, threshold: {default: 10000, minimum: 10000, maximum: 0}}
    prometheus:
      podMonitorLabels: {release: prometheus}
      ruleLabels: {release: prometheus}
"""


@pytest.fixture
def tms() -> ClusterPolicy:
    return parse_policy(TMS_VALUES)


def ann(**kw: str) -> dict[str, str]:
    out = {P + "enabled": "true"}
    out.update({P + k.replace("_", "-").replace("threshold-", "threshold."): v for k, v in kw.items()})
    return out


def test_shipped_policy_is_valid_and_enables_queue_time_and_gpu() -> None:
    """config/policy.yaml loads; unlike TMS it turns autoscaling, queueTime and gpuUtilization on."""
    p = load_policy(ROOT / "config" / "policy.yaml").autoscaling
    assert p.enable
    assert p.metrics["queueTime"].enabled and p.metrics["queueTime"].allowed
    assert p.metrics["gpuUtilization"].enabled and p.metrics["gpuUtilization"].allowed


def test_tms_defaults_when_empty() -> None:
    """An empty policy has TMS's defaults: autoscaling off, all metrics disallowed, 1..5 default, limit 10."""
    a = parse_policy("").autoscaling
    assert not a.enable
    assert (a.replicas.default.minimum, a.replicas.default.maximum, a.replicas.limits.maximum) == (1, 5, 10)
    assert not any(m.allowed or m.enabled for m in a.metrics.values())
    assert a.metrics["queueTime"].threshold.default == 10000


def test_helm_values_nesting_and_enable_spelling(tms: ClusterPolicy) -> None:
    """`server.autoscaling` Helm values are accepted verbatim, `enabled` as a synonym of `enable`."""
    assert tms.autoscaling.enable


def test_partial_metric_block_keeps_tms_thresholds() -> None:
    """Only `allowed: true` for a metric keeps TMS's threshold defaults."""
    a = parse_policy("autoscaling: {metrics: {queueTime: {allowed: true}}}").autoscaling
    assert a.metrics["queueTime"].allowed and a.metrics["queueTime"].threshold.minimum == 10000


@pytest.mark.parametrize(("text", "fragment"), [
    ("autoscaling: {replicas: {limits: {maximum: 0}}}", "autoscaling.replicas.limits.maximum"),
    ("autoscaling: {replicas: {default: {maximum: 20}}}", "default.maximum (20) is greater than limits.maximum (10)"),
    ("autoscaling: {replicas: {limits: {minimum: {lowerBound: 3, upperBound: 2}}}}", "lowerBound (3) is greater"),
    ("autoscaling: {metrics: {myQps: {threshold: {default: 5}}}}", "metrics.myQps: a custom metric needs 'query'"),
    ("autoscaling: {metrics: {gpuUtilisation: {allowed: true}, queuetime: {enabled: true}}}",
     "'gpuUtilisation' is not a built-in metric, did you mean 'gpuUtilization'?; 'queuetime' is not a built-in "
     "metric, did you mean 'queueTime'?"),
    ("autoscaling: {enable: maybe}", "autoscaling.enable"),
    ("autoscaling: {unknownKey: 1}", "autoscaling.unknownKey"),
    ("autoscaling: [", "not valid YAML"),
    ("autoscaling: {prometheus: {servers: [triton, tgi]}}", "autoscaling.prometheus.servers"),
    ("autoscaling: {prometheus: {servers: []}}", "autoscaling.prometheus.servers"),
    ("- a\n- b", "must be a mapping"),
], ids=["limit zero", "default above limit", "bounds reversed", "custom without query", "misspelt built-in", "bad bool",
        "unknown key", "bad yaml", "unknown server", "no server", "not a mapping"])
def test_bad_policy_is_rejected_with_location(text: str, fragment: str) -> None:
    """Every policy error names the field (and value) that is wrong."""
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="configmap/policy.yaml")
    assert fragment in str(err.value) and "configmap/policy.yaml" in str(err.value)


def test_prometheus_servers_choose_whose_request_series_are_read() -> None:
    """prometheus.servers (default all three): [triton] leaves vLLM's and NIM's selectors out of the
    request-statistics and raw queue-time queries, which a Triton-only cluster's Prometheus would evaluate for
    nothing."""
    from autoscaler.metrics import LeaseTarget
    from autoscaler.metrics.registry import kind_for

    lease = [LeaseTarget.of("ns", ["p"])]
    both = parse_policy("autoscaling: {prometheus: {queueTimeRecordingRule: false}}").autoscaling
    triton = parse_policy("autoscaling: {prometheus: {queueTimeRecordingRule: false, servers: [triton]}}").autoscaling
    for name in ("requestStats", "queueTime"):
        query = kind_for(name, None, both).build(lease)
        assert "vllm:" in query and "num_request_max" in query and " request_success_total" not in query, name
        assert "(request_success_total{" in query, name  # NIM's un-prefixed names, read too
        query = kind_for(name, None, triton).build(lease)
        assert "vllm:" not in query and "request_success_total" not in query, name
        assert "num_request" not in query and "nv_inference_request_success" in query, name
    vllm = parse_policy("autoscaling: {prometheus: {servers: [vllm]}}").autoscaling
    assert "nv_inference" not in kind_for("requestStats", None, vllm).build(lease)


def test_not_asked_is_never_scaled(tms: ClusterPolicy) -> None:
    """A Deployment without the opt-in annotation is not a lease."""
    r = resolve_lease("ns", "d", {P + "max-replicas": "3"}, tms)
    assert r.lease is None and not r.opted_in and not r.issues


def test_cluster_disabled_means_no_lease() -> None:
    """With `enable: false` in the policy an opted-in Deployment is reported, not scaled."""
    r = resolve_lease("ns", "d", ann(), parse_policy(""))
    assert r.lease is None and r.opted_in and "disabled in the cluster policy" in r.issues[0].rule


@pytest.mark.parametrize(("annotations", "min_r", "max_r", "fragment"), [
    ({}, 1, 5, None),
    ({"max_replicas": "8"}, 1, 8, None),
    ({"max_replicas": "50"}, 1, 10, "above the cluster limit replicas.limits.maximum=10; using 10"),
    ({"min_replicas": "0"}, 1, 5, "below replicas.limits.minimum.lowerBound=1; using 1"),
    ({"min_replicas": "4"}, 2, 5, "above replicas.limits.minimum.upperBound=2; using 2"),
    ({"min_replicas": "2", "max_replicas": "1"}, 1, 1, "greater than the effective maximum 1"),
], ids=["no bounds -> defaults", "max within limit", "max above limit -> limit", "min below lowerBound",
        "min above upperBound", "min above max"])
def test_replica_bounds(tms: ClusterPolicy, annotations: dict[str, str], min_r: int, max_r: int,
                        fragment: str | None) -> None:
    """Replica bounds follow TMS: default max, limit, and the minimum's allowed range, with a message."""
    r = resolve_lease("ns", "d", ann(**annotations), tms)
    assert r.lease is not None
    assert (r.lease.min_replicas, r.lease.max_replicas) == (min_r, max_r)
    if fragment:
        assert any(fragment in i.rule and i.severity == Severity.ADJUSTED for i in r.issues), r.issues
    else:
        assert not r.issues


def test_min_replicas_zero_needs_a_wake_query(tms: ClusterPolicy) -> None:
    """min-replicas 0 (allowed by lowerBound 0) is scale to zero only with the policy's wake query, rendered for the
    lease; without one the lease keeps a replica (an Event says why), and a default minimum of 0 is refused."""
    zero_ok = TMS_VALUES.replace("lowerBound: 1", "lowerBound: 0")
    blind = resolve_lease("ns", "d", ann(min_replicas="0"), parse_policy(zero_ok))
    assert blind.lease is not None and blind.lease.min_replicas == 1 and blind.lease.wake_query is None
    assert any("scaleToZero.wakeQuery" in i.rule and i.severity == Severity.ADJUSTED for i in blind.issues)
    policy = parse_policy(zero_ok + """    scaleToZero:
      wakeQuery: 'sum(rate(gw_requests_total{namespace="{{namespace}}",service="{{name}}"}[1m])) or vector(0)'
      idleSeconds: 600
""")
    r = resolve_lease("ns", "d", ann(min_replicas="0"), policy)
    assert r.lease is not None and (r.lease.min_replicas, r.lease.floor) == (0, 1) and not r.issues
    assert r.lease.wake_query == 'sum(rate(gw_requests_total{namespace="ns",service="d"}[1m])) or vector(0)'
    one = resolve_lease("ns", "d", ann(min_replicas="1", wake_replicas="2"), policy)
    assert one.lease is not None and one.lease.wake_query is None  # only a lease that may reach zero is woken
    assert any(i.key.endswith("wake-replicas") and "never scales to zero" in i.rule for i in one.issues)
    woken = resolve_lease("ns", "d", ann(min_replicas="0", wake_replicas="3"), policy)
    assert woken.lease is not None and woken.lease.wake_replicas == 3 and not woken.issues
    capped = resolve_lease("ns", "d", ann(min_replicas="0", max_replicas="2", wake_replicas="3"), policy)
    assert capped.lease is not None and capped.lease.wake_replicas == 2 and capped.issues
    assert resolve_lease("ns", "d", ann(min_replicas="0", wake_replicas="none"), policy).lease is None
    sized = resolve_lease("ns", "d", ann(min_replicas="0", wake_target="7.5"), policy)
    assert sized.lease is not None and sized.lease.wake_target == 7.5 and not sized.issues
    assert woken.lease.wake_target is None  # unset in the policy: woken to the wake replicas whatever the demand
    for bad in ("0", "-1", "nan", "fast"):
        assert resolve_lease("ns", "d", ann(min_replicas="0", wake_target=bad), policy).lease is None, bad
    ignored = resolve_lease("ns", "d", ann(min_replicas="1", wake_target="5"), policy)
    assert ignored.lease is not None and ignored.lease.wake_target is None
    assert any(i.key.endswith("wake-target") and "never scales to zero" in i.rule for i in ignored.issues)
    default = parse_policy(zero_ok + """    scaleToZero:
      wakeQuery: 'sum(rate(gw_requests_total{service="{{name}}"}[1m]))'
      wakeTargetPerReplica: 12
""")
    r = resolve_lease("ns", "d", ann(min_replicas="0"), default)
    assert r.lease is not None and r.lease.wake_target == 12
    # auto: the wake value is a request rate the predictive algorithm sizes; on the HPA rule, a Warning and the
    # wake replicas
    auto = resolve_lease("ns", "d", ann(min_replicas="0", wake_target="auto", algorithm="predictive"), default)
    assert auto.lease is not None and auto.lease.wake_auto and auto.lease.wake_target is None and not auto.issues
    hpa = resolve_lease("ns", "d", ann(min_replicas="0", wake_target="Auto", algorithm="hpa"), default)
    assert hpa.lease is not None and not hpa.lease.wake_auto and hpa.lease.wake_target is None
    assert any("predictive algorithm" in i.rule for i in hpa.issues), hpa.issues
    shipped_auto = parse_policy(zero_ok + """    algorithm: predictive
    scaleToZero: {wakeQuery: 'x', wakeTargetPerReplica: auto}
""")
    assert resolve_lease("ns", "d", ann(min_replicas="0"), shipped_auto).lease.wake_auto  # type: ignore[union-attr]
    with pytest.raises(PolicyError, match="wakeTargetPerReplica"):
        parse_policy(zero_ok + "    scaleToZero: {wakeQuery: 'x', wakeTargetPerReplica: sometimes}\n")
    # idle-seconds: the lease's own idle period (else the policy's); a bad one is invalid, on a lease that never
    # scales to zero ignored with a Warning
    assert resolve_lease("ns", "d", ann(min_replicas="0"), default).lease.idle_s == 900.0  # type: ignore[union-attr]
    short = resolve_lease("ns", "d", ann(min_replicas="0", idle_seconds="120"), default)
    assert short.lease is not None and short.lease.idle_s == 120.0 and not short.issues
    for bad in ("0", "-5", "soon", "nan", str(8 * 86400)):
        assert resolve_lease("ns", "d", ann(min_replicas="0", idle_seconds=bad), default).lease is None, bad
    kept = resolve_lease("ns", "d", ann(min_replicas="1", idle_seconds="120"), default)
    assert kept.lease is not None and kept.lease.idle_s == 900.0
    assert any(i.key.endswith("idle-seconds") and "never scales to zero" in i.rule for i in kept.issues)
    assert resolve_lease("ns", "d", ann(min_replicas="1"), default).lease.wake_target is None  # type: ignore[union-attr]
    with pytest.raises(PolicyError, match="wakeTargetPerReplica"):
        parse_policy(zero_ok + "    scaleToZero: {wakeQuery: 'x', wakeTargetPerReplica: 0}\n")
    with pytest.raises(PolicyError, match=r"scaleToZero\.wakeQuery"):
        parse_policy(zero_ok.replace("minimum: 1, maximum: 5", "minimum: 0, maximum: 5"))


@pytest.mark.parametrize(("annotations", "key", "suggestion"), [
    ({P + "min-replica": "2"}, "min-replica", "did you mean 'min-replicas'?"),
    ({P + "maxReplicas": "2"}, "maxReplicas", "did you mean 'max-replicas'?"),
    ({P + "metrics": "queueTime,gpuutilization"}, "metrics", "did you mean 'gpuUtilization'?"),
    ({P + "threshold.queue_time": "5000"}, "threshold.queue_time", "did you mean 'queueTime'?"),
    ({P + "algo": "hpa"}, "algo", None),
], ids=["a letter short", "camel case", "metric's case", "metric in snake case", "too far for a guess"])
def test_a_mistyped_name_is_ignored_with_the_name_it_is_closest_to(
        tms: ClusterPolicy, annotations: dict[str, str], key: str, suggestion: str | None) -> None:
    """An unknown key or metric is ignored (the lease still resolves) and its message names the closest known one,
    when one is close; the full list follows either way."""
    r = resolve_lease("ns", "d", {P + "enabled": "true", **annotations}, tms)
    found = [i for i in r.issues if i.key == P + key]
    assert len(found) == 1 and found[0].severity == Severity.ADJUSTED, r.issues
    rule = found[0].rule
    assert "known:" in rule or "the policy defines:" in rule
    if suggestion:
        assert suggestion in rule
    else:
        assert "did you mean" not in rule


@pytest.mark.parametrize(("port", "path", "bad"), [
    ("http", "/v1/metrics", set()),
    ("HTTP", "/v1/metrics", {"metrics-port"}),
    ("8000", "v1/metrics", {"metrics-port", "metrics-path"}),
    ("a-port-name-too-long", "/metrics", {"metrics-port"}),
], ids=["NIM's", "upper case", "a number and no slash", "too long"])
def test_the_podmonitors_port_and_path_annotations(tms: ClusterPolicy, port: str, path: str, bad: set[str]) -> None:
    """metrics-port / metrics-path (a lease's own endpoint for its PodMonitor, e.g. NIM's /v1/metrics) are known keys;
    a value the PodMonitor cannot use is ignored with a Warning (the policy's port, /metrics), the lease goes on."""
    annotations = {P + "enabled": "true", P + "metrics-port": port, P + "metrics-path": path}
    r = resolve_lease("ns", "d", annotations, tms)
    assert r.lease is not None
    assert {i.key.removeprefix(P) for i in r.issues} == bad
    assert all(i.severity == Severity.ADJUSTED and "the PodMonitor uses the policy's" in i.rule for i in r.issues)
    got_port, got_path, _ = metrics_endpoint(annotations)
    assert got_port == (None if "metrics-port" in bad else port)
    assert got_path == (None if "metrics-path" in bad else path)


@pytest.mark.parametrize(("value", "ok"), [
    ("http://{name}.{namespace}.svc:9000", True),
    ("https://gw.example.com/llm/v1", True),
    ("gw.example.com:9000", False),
    ("http://{service}.svc", False),
    ("http://a b", False),
], ids=["template", "https with a path", "no scheme", "unknown placeholder", "a space"])
def test_the_activators_upstream_annotation(tms: ClusterPolicy, value: str, ok: bool) -> None:
    """upstream (where the activator sends the lease's requests) is a known key; a value the activator cannot use is a
    Warning naming what it must be, and the lease goes on."""
    r = resolve_lease("ns", "d", {P + "enabled": "true", P + "upstream": value}, tms)
    assert r.lease is not None
    assert lease_upstream({P + "upstream": value}) == ((value, None) if ok else (None, ANY))
    if ok:
        assert not r.issues
    else:
        (i,) = r.issues
        assert i.key == P + "upstream" and i.severity == Severity.ADJUSTED and "http:// or https:// URL" in i.rule


def test_metrics_enabled_by_default_and_allowed_on_request(tms: ClusterPolicy) -> None:
    """No `metrics` annotation: the enabled ones; asking: allowed or enabled ones; others ignored with a reason."""
    assert [m.name for m in resolve_lease("ns", "d", ann(), tms).lease.metrics] == ["queueTime"]  # type: ignore[union-attr]
    r = resolve_lease("ns", "d", ann(metrics="gpuUtilization,cpuUtilization"), tms)
    assert r.lease is not None and [m.name for m in r.lease.metrics] == ["gpuUtilization"]
    assert any("'cpuUtilization' is neither enabled nor allowed" in i.rule for i in r.issues)


def test_threshold_clamped_to_range(tms: ClusterPolicy) -> None:
    """A threshold outside [minimum, maximum] goes to the nearest bound (maximum 0 = unbounded)."""
    r = resolve_lease("ns", "d", ann(threshold_queueTime="500"), tms)
    assert r.lease is not None and r.lease.metrics[0].target == 10000
    assert "outside the allowed range [10000, none]; using 10000" in r.issues[0].message
    r = resolve_lease("ns", "d", ann(threshold_queueTime="250000"), tms)
    assert r.lease is not None and r.lease.metrics[0].target == 250000 and not r.issues


@pytest.mark.parametrize(("annotations", "key", "fragment"), [
    ({"enabled": "yes please"}, "enabled", "must be true or false"),
    ({"max_replicas": "ten"}, "max-replicas", "must be a whole number >= 1"),
    ({"min_replicas": "-1"}, "min-replicas", "must be a whole number >= 0"),
    ({"threshold_queueTime": "fast"}, "threshold.queueTime", "must be a number"),
    ({"threshold_queueTime": "nan"}, "threshold.queueTime", "positive finite"),
    ({"mode": "yolo"}, "mode", "must be 'enforce' or 'shadow'"),
    ({"paused": "sometimes"}, "paused", "must be true or false"),
    ({"metrics": "cpuUtilization"}, "metrics", "no usable metric"),
], ids=["enabled", "max", "min", "threshold text", "threshold nan", "mode", "paused", "no usable metric"])
def test_malformed_annotation_invalidates_lease(tms: ClusterPolicy, annotations: dict[str, str], key: str,
                                                fragment: str) -> None:
    """Malformed values make the lease invalid, with a message naming the key, the value and the rule."""
    r = resolve_lease("ns", "d", ann(**annotations), tms)
    assert r.lease is None and r.invalid
    bad = [i for i in r.issues if i.severity == Severity.INVALID]
    assert bad and bad[0].key == P + key and fragment in bad[0].message


def test_all_problems_collected(tms: ClusterPolicy) -> None:
    """Several bad annotations are all reported at once, not just the first."""
    r = resolve_lease("ns", "d", ann(max_replicas="x", mode="y", threshold_queueTime="z"), tms)
    assert {i.key for i in r.issues} >= {P + "max-replicas", P + "mode", P + "threshold.queueTime"}


def test_shadow_and_paused(tms: ClusterPolicy) -> None:
    """mode and paused are carried into the effective lease policy."""
    r = resolve_lease("ns", "d", ann(mode="shadow", paused="true"), tms)
    assert r.lease is not None and r.lease.mode == "shadow" and r.lease.paused


def test_packaged_default_policy_is_the_shipped_one() -> None:
    """The policy the installed package falls back to is byte-for-byte config/policy.yaml."""
    from autoscaler.config import DEFAULT_POLICY

    assert DEFAULT_POLICY.read_text() == (ROOT / "config" / "policy.yaml").read_text(), (
        "autoscaler/data/policy.yaml must be a copy of config/policy.yaml: cp config/policy.yaml autoscaler/data/")


def test_every_predictive_parameter_is_a_policy_setting() -> None:
    """`to_params` copies settings by name: a parameter of the pure policy without a setting would silently
    keep its code default whatever the ConfigMap says."""
    from dataclasses import fields

    from autoscaler.config import PredictiveSettings
    from autoscaler.policy.predictive import PredictiveParams

    missing = {f.name for f in fields(PredictiveParams)} - {"target_queue_time_us"} - set(PredictiveSettings.model_fields)
    assert not missing
    cfg = PredictiveSettings.model_validate({"violationTarget": 0.02, "reactiveFloorFactor": 1.5, "panicGrowth": 3})
    p = cfg.to_params(7000.0)
    assert (p.target_queue_time_us, p.violation_target, p.reactive_floor_factor, p.panic_growth) == (7000.0, 0.02, 1.5, 3)
