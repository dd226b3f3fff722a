"""``autoscaler migrate-hpa``: turn HorizontalPodAutoscalers into lease annotations and a policy snippet.

Reads HPAs (autoscaling/v2, v2beta2 or v1) from YAML/JSON files (``-f``, ``-`` for stdin; ``kubectl get
hpa -A -o yaml`` output works) or from a cluster through a kubeconfig, and prints for each one the
annotations for its Deployment plus the cluster-policy changes it needs (metrics to allow, custom
PromQL metrics). Everything that has no equivalent here is a warning, never silently dropped: Object
and External metrics, memory, absolute CPU targets, scale to zero, non-Deployment targets, bounds the
policy would clamp, and per-HPA ``behavior`` (behaviour is cluster-wide in this project).

KEDA ScaledObjects (keda.sh/v1alpha1) are converted too: bounds, CPU triggers, the HPA behaviour KEDA passes on,
and, for a ``prometheus`` trigger (a request rate over a per-replica threshold, with no per-pod equivalent), the
predictive algorithm, which sizes a lease from its pods' own request counters instead; with ``minReplicaCount: 0``,
scale to zero woken by the trigger's query (the policy's ``scaleToZero.wakeQuery``, its threshold the lease's
``wake-target``).

The annotations default to ``mode: shadow``: the autoscaler then decides and reports next to the HPA
without writing ``spec.replicas``; compare, then delete the HPA and switch the lease to ``enforce``.
The conversion itself (:func:`convert`) is pure and unit-tested; only :func:`run` does I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from autoscaler import ANNOTATION_PREFIX
from autoscaler.config import DEFAULT_POLICY, MAX_IDLE_S, BehaviorSettings, ClusterPolicy, PolicyError, load_policy
from autoscaler.policy.types import Behavior

HPA_KIND = "HorizontalPodAutoscaler"
KEDA_KIND = "ScaledObject"

# Pods-metric names the built-in kinds already read, and the factor from the HPA's unit to ours.
KNOWN_POD_METRICS: dict[str, tuple[str, float, str]] = {
    "gpu_cache_usage_perc": ("kvCacheUsage", 100.0, "a 0-1 fraction; kvCacheUsage is in percent"),
    "vllm:gpu_cache_usage_perc": ("kvCacheUsage", 100.0, "a 0-1 fraction; kvCacheUsage is in percent"),
    "vllm:kv_cache_usage_perc": ("kvCacheUsage", 100.0, "a 0-1 fraction; kvCacheUsage is in percent"),
    "tms_avg_request_queue_duration": ("queueTime", 1.0, "microseconds per request"),
    "inference_autoscaler:queue_time_us:rate1m": ("queueTime", 1.0, "microseconds per request"),
    "DCGM_FI_DEV_GPU_UTIL": ("gpuUtilization", 1.0, "percent"),
    "nv_gpu_utilization": ("gpuUtilization", 100.0, "Triton reports a 0-1 fraction; gpuUtilization is in percent"),
}

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
           "P": Decimal("1e15"), "E": Decimal("1e18"), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
           "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``1.5k``, ``10Ki``) as a float; ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if m is None:
        raise ValueError(f"not a quantity: {value!r}")
    try:
        return float(Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""])
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {value!r}") from exc


def _num(v: float) -> str:
    return f"{v:g}" if math.isfinite(v) else str(v)


@dataclass
class Conversion:
    """One HPA's outcome: the Deployment's annotations, the policy it needs, and every warning."""

    namespace: str
    name: str
    target: str | None  # Deployment name; None when the HPA cannot become a lease
    annotations: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # policy snippet autoscaling.metrics
    behavior: dict[str, Any] | None = None  # the HPA's behaviour when it differs from the policy's
    warnings: list[str] = field(default_factory=list)
    kind: str = HPA_KIND  # what was converted: an HPA or a KEDA ScaledObject
    scale_to_zero: dict[str, Any] = field(default_factory=dict)  # policy snippet autoscaling.scaleToZero (KEDA)

    def to_dict(self) -> dict[str, Any]:
        return {"hpa": f"{self.namespace}/{self.name}", "kind": self.kind, "deployment": self.target,
                "annotations": self.annotations, "policyMetrics": self.metrics, "behavior": self.behavior,
                "warnings": self.warnings}


def _custom_name(metric: str) -> str:
    """A policy metric name for a custom metric (letters, digits, underscores)."""
    return "custom_" + (re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_") or "metric")


def _selector_matchers(selector: dict[str, Any] | None, warnings: list[str], where: str) -> str:
    parts: list[str] = []
    for k, v in sorted(((selector or {}).get("matchLabels") or {}).items()):
        parts.append(f"{k}={json.dumps(str(v))}")
    if (selector or {}).get("matchExpressions"):
        warnings.append(f"{where}: metric.selector.matchExpressions are not converted; add them to the query by hand")
    return ", ".join(parts)


class _Converter:
    def __init__(self, hpa: dict[str, Any], policy: ClusterPolicy) -> None:
        md = hpa.get("metadata") or {}
        self.hpa = hpa
        self.policy = policy
        self.c = Conversion(str(md.get("namespace") or "default"), str(md.get("name") or ""), None)
        self.chosen: list[str] = []
        self.thresholds: dict[str, float] = {}

    def warn(self, msg: str) -> None:
        self.c.warnings.append(msg)

    def use(self, metric: str, threshold: float, *, custom: dict[str, Any] | None = None) -> None:
        if metric in self.chosen:
            self.warn(f"metric {metric} appears twice; keeping the lower target {_num(min(threshold, self.thresholds[metric]))}")
            self.thresholds[metric] = min(threshold, self.thresholds[metric])
            return
        self.chosen.append(metric)
        self.thresholds[metric] = threshold
        mp = self.policy.autoscaling.metrics.get(metric)
        if custom is not None:
            self.c.metrics[metric] = custom
            return
        if mp is None:
            return
        snippet: dict[str, Any] = {}
        if not (mp.allowed or mp.enabled):
            snippet["allowed"] = True
            self.warn(f"the cluster policy neither allows nor enables {metric}: add the policy snippet")
        th = mp.threshold
        if threshold < th.minimum or (th.maximum > 0 and threshold > th.maximum):
            hi = "none" if th.maximum <= 0 else _num(th.maximum)
            self.warn(f"target {_num(threshold)} for {metric} is outside the policy's range [{_num(th.minimum)}, {hi}] "
                      f"and would be clamped to {_num(th.clamp(threshold))}; widen metrics.{metric}.threshold "
                      "(snippet) or accept the clamp")
            snippet["threshold"] = {"minimum": min(th.minimum, threshold),
                                    "maximum": 0 if th.maximum <= 0 else max(th.maximum, threshold)}
        if snippet:
            self.c.metrics[metric] = snippet

    NOUN = "HPA"  # what it is, in its warnings
    SCALES_ON = "the HPA's metrics"
    BEHAVIOR_FIELD = "spec.behavior"

    def scale_target_ref(self) -> dict[str, Any]:
        """The object's scaleTargetRef."""
        return (self.hpa.get("spec") or {}).get("scaleTargetRef") or {}

    def target(self) -> bool:
        ref = self.scale_target_ref()
        kind, name = ref.get("kind"), ref.get("name")
        if kind != "Deployment" or not ref.get("apiVersion", "apps/v1").startswith("apps/"):
            self.warn(f"scaleTargetRef is {ref.get('apiVersion', '?')} {kind}/{name}: only Deployments are leases; "
                      "not converted (keep the HPA)")
            return False
        self.c.target = str(name)
        return True

    def bounds(self) -> tuple[int, int, str, str]:
        """The minimum and maximum replicas, and their fields' names."""
        spec = self.hpa.get("spec") or {}
        return int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1)), "minReplicas", "maxReplicas"

    def replicas(self) -> None:
        lim = self.policy.autoscaling.replicas.limits
        min_r, max_r, min_key, max_key = self.bounds()
        if min_r == 0 and lim.minimum.lower_bound == 0 and self.policy.autoscaling.scale_to_zero.wake_query:
            self.warn(f"{min_key} 0: the lease scales to zero and is woken by the policy's scaleToZero.wakeQuery, "
                      f"not by {self.SCALES_ON}")
        elif min_r == 0:
            self.warn(f"{min_key} 0 (scale to zero) needs the policy's scaleToZero.wakeQuery and "
                      "replicas.limits.minimum.lowerBound 0: until then leases keep at least "
                      f"{max(1, lim.minimum.lower_bound)} replica(s)")
            min_r = max(1, lim.minimum.lower_bound)
        elif not lim.minimum.lower_bound <= min_r <= lim.minimum.upper_bound:
            self.warn(f"{min_key} {min_r} is outside the policy's replicas.limits.minimum "
                      f"[{lim.minimum.lower_bound}, {lim.minimum.upper_bound}] and would be clamped")
        if max_r > lim.maximum:
            self.warn(f"{max_key} {max_r} is above the policy's replicas.limits.maximum ({lim.maximum}) and would "
                      "be clamped; raise the limit in the policy if this lease needs it")
        self.c.annotations[ANNOTATION_PREFIX + "min-replicas"] = str(min_r)
        self.c.annotations[ANNOTATION_PREFIX + "max-replicas"] = str(max_r)

    def metrics(self) -> None:
        spec = self.hpa.get("spec") or {}
        api_version = str(self.hpa.get("apiVersion") or "autoscaling/v2")
        if api_version == "autoscaling/v1" or "targetCPUUtilizationPercentage" in spec:
            self.use("cpuUtilization", float(spec.get("targetCPUUtilizationPercentage", 80)))
            return
        if api_version == "autoscaling/v2beta1":
            self.warn("autoscaling/v2beta1 metrics are not read: fetch the HPA as autoscaling/v2 "
                      "(kubectl get hpa.v2.autoscaling NAME -o yaml) and convert that")
            return
        metrics = spec.get("metrics")
        if metrics is None:  # the v2 default: 80 % CPU
            self.use("cpuUtilization", 80.0)
            return
        for i, m in enumerate(metrics):
            self.metric(i, m)

    def metric(self, i: int, m: dict[str, Any]) -> None:
        where = f"metrics[{i}]"
        mtype = m.get("type")
        if mtype in ("Resource", "ContainerResource"):
            src = m.get("resource" if mtype == "Resource" else "containerResource") or {}
            res, tgt = src.get("name"), src.get("target") or {}
            if res != "cpu":
                self.warn(f"{where}: {mtype} {res} has no equivalent (only CPU utilisation is built in); dropped")
                return
            if tgt.get("type") != "Utilization":
                self.warn(f"{where}: CPU target type {tgt.get('type')} ({tgt.get('averageValue')}) has no equivalent: "
                          "cpuUtilization is percent of requests; dropped")
                return
            if mtype == "ContainerResource":
                self.warn(f"{where}: container {src.get('container')!r} CPU becomes pod-level cpuUtilization "
                          "(all containers' usage over all containers' requests)")
            self.use("cpuUtilization", float(tgt.get("averageUtilization", 80)))
        elif mtype == "Pods":
            pods = m.get("pods") or {}
            mdef, tgt = pods.get("metric") or {}, pods.get("target") or {}
            name = str(mdef.get("name") or "")
            raw = tgt.get("averageValue")
            if raw is None:
                self.warn(f"{where}: Pods metric {name} has no target.averageValue; dropped")
                return
            value = parse_quantity(raw)
            known = KNOWN_POD_METRICS.get(name)
            if known is not None and not mdef.get("selector"):
                ours, factor, note = known
                self.use(ours, value * factor)
                if factor != 1.0:
                    self.warn(f"{where}: {name} target {raw} becomes {ours} {_num(value * factor)} ({note})")
                return
            matchers = _selector_matchers(mdef.get("selector"), self.c.warnings, where)
            extra = f"{matchers}, " if matchers else ""
            custom = _custom_name(name)
            query = f"avg by (namespace, pod) ({name}{{{extra}{{{{selector}}}}}})"
            self.use(custom, value, custom={
                "allowed": True, "enabled": False, "query": query,
                "threshold": {"default": value, "minimum": 0, "maximum": 0}})
            self.warn(f"{where}: Pods metric {name} becomes the custom metric {custom} with query {query!r}: check "
                      "it against your Prometheus Adapter rule (rates, renames and aggregation live there)")
        elif mtype == "Object":
            obj = (m.get("object") or {}).get("describedObject") or {}
            self.warn(f"{where}: Object metric on {obj.get('kind')}/{obj.get('name')} has no equivalent (metrics are per "
                      "pod here); express it as a custom per-pod PromQL metric in the policy; dropped")
        elif mtype == "External":
            ext = ((m.get("external") or {}).get("metric") or {}).get("name")
            self.warn(f"{where}: External metric {ext} has no equivalent (metrics are per pod here); express it as a "
                      "custom per-pod PromQL metric in the policy; dropped")
        else:
            self.warn(f"{where}: unknown metric type {mtype!r}; dropped")

    def hpa_behavior(self) -> dict[str, Any]:
        """The HPA behaviour the object asks for (empty: the HPA's defaults)."""
        return (self.hpa.get("spec") or {}).get("behavior") or {}

    def behavior(self) -> None:
        hb = self.hpa_behavior()
        ours = self.policy.autoscaling.behavior
        try:
            theirs = BehaviorSettings.model_validate({
                "scaleUp": hb.get("scaleUp") or {}, "scaleDown": hb.get("scaleDown") or {},
                "tolerance": ours.tolerance, "cpuInitializationPeriodSeconds": ours.cpu_initialization_period_s,
                "initialReadinessDelaySeconds": ours.initial_readiness_delay_s})
        except ValidationError as exc:
            self.warn(f"spec.behavior could not be read ({exc.error_count()} problems); compare it by hand")
            return
        if _same(theirs.to_behavior(), ours.to_behavior()):
            return
        self.c.behavior = {k: v for k, v in {"scaleUp": hb.get("scaleUp"), "scaleDown": hb.get("scaleDown")}.items()
                           if v}
        what = "the HPA defaults" if not self.c.behavior else f"its own {self.BEHAVIOR_FIELD}"
        self.warn(f"the {self.NOUN} uses {what}, which differ from the cluster policy's behavior; behaviour is "
                  "cluster-wide here (no per-lease behaviour): this lease will scale with the policy's behavior")

    def zero(self) -> None:
        """Scale to zero beyond ``min-replicas: "0"``: nothing for an HPA (its alpha scale to zero has no wake)."""

    def finish(self, mode: str) -> Conversion:
        if self.chosen:
            a = self.c.annotations
            a[ANNOTATION_PREFIX + "metrics"] = ",".join(self.chosen)
            for name in self.chosen:
                a[ANNOTATION_PREFIX + f"threshold.{name}"] = _num(self.thresholds[name])
        elif self.c.annotations.get(ANNOTATION_PREFIX + "algorithm") == "predictive":
            pass  # sized from its pods' request counters, on the policy's enabled metrics
        else:
            self.warn("no metric could be converted: the lease would be invalid; not converted (keep the HPA)")
            self.c.target = None
            self.c.annotations = {}
            return self.c
        self.c.annotations = {ANNOTATION_PREFIX + "enabled": "true", ANNOTATION_PREFIX + "mode": mode,
                              **self.c.annotations}
        return self.c


def _same(a: Behavior, b: Behavior) -> bool:
    return (a.scale_up, a.scale_down, a.tolerances) == (b.scale_up, b.scale_down, b.tolerances)


def _number(value: Any) -> float | None:
    """A KEDA metadata value (a string, usually) as a finite number; None if it is not one."""
    try:
        out = float(str(value))
    except ValueError:
        return None
    return out if value is not None and math.isfinite(out) else None


def _count(spec: dict[str, Any], key: str, default: int) -> int:
    """A whole-number field of a ScaledObject's spec, KEDA's default when absent or not a number."""
    n = _number(spec.get(key))
    return default if n is None else int(n)


def wake_template(query: str, namespace: str, name: str) -> str:
    """A KEDA trigger's query as a scale-to-zero wake query template: the quoted namespace and target name become
    ``{{namespace}}`` and ``{{name}}``, and ``or vector(0)`` is added when absent (KEDA reads no series as 0; a
    wake query's no series is no value, and a lease without a value never idles)."""
    q = query.replace(f'"{namespace}"', '"{{namespace}}"').replace(f'"{name}"', '"{{name}}"').strip()
    return q if "vector(0)" in q else f"({q}) or vector(0)"


class _KedaConverter(_Converter):
    """A KEDA ScaledObject: its scaleTargetRef, replica counts, triggers, fallback and the HPA behaviour it sets."""

    NOUN = "ScaledObject"
    SCALES_ON = "the ScaledObject's triggers"
    BEHAVIOR_FIELD = "spec.advanced.horizontalPodAutoscalerConfig.behavior"

    def __init__(self, obj: dict[str, Any], policy: ClusterPolicy) -> None:
        super().__init__(obj, policy)
        self.c.kind = KEDA_KIND
        self.rates: list[dict[str, Any]] = []  # the prometheus triggers' metadata

    def scale_target_ref(self) -> dict[str, Any]:
        return {"kind": "Deployment", "apiVersion": "apps/v1", **super().scale_target_ref()}  # KEDA's defaults

    def bounds(self) -> tuple[int, int, str, str]:
        spec = self.hpa.get("spec") or {}
        if spec.get("idleReplicaCount") is not None:
            self.warn(f"idleReplicaCount {spec['idleReplicaCount']}: a lease here idles at zero replicas "
                      "(min-replicas 0), with nothing between zero and its minimum")
        return (_count(spec, "minReplicaCount", 0), _count(spec, "maxReplicaCount", 100), "minReplicaCount",
                "maxReplicaCount")

    def hpa_behavior(self) -> dict[str, Any]:
        advanced = (self.hpa.get("spec") or {}).get("advanced") or {}
        return (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior") or {}

    def metrics(self) -> None:
        spec = self.hpa.get("spec") or {}
        for i, t in enumerate(spec.get("triggers") or []):
            self.trigger(f"triggers[{i}]", t if isinstance(t, dict) else {})
        if not self.chosen and self.rates:
            self.c.annotations[ANNOTATION_PREFIX + "algorithm"] = "predictive"
            self.warn("its prometheus trigger has no per-pod equivalent; the lease gets the predictive algorithm, "
                      "which sizes it from its pods' own request counters (Triton's, vLLM's, NIM's) and the policy's "
                      "enabled metrics: check with `autoscaler doctor` (its predictive check) that the pods export "
                      "them")
        if spec.get("pollingInterval") is not None:
            self.warn(f"pollingInterval {spec['pollingInterval']}: the controller's loop interval is one for all "
                      f"leases (the policy's loopIntervalSeconds, {_num(self.policy.autoscaling.loop_interval_s)} s)")
        fb = spec.get("fallback")
        if isinstance(fb, dict):
            ours = self.policy.autoscaling.fallback
            if ours.action != "replicas" or ours.replicas != fb.get("replicas") or \
                    ours.failure_threshold != fb.get("failureThreshold"):
                self.warn(f"fallback {fb.get('replicas')} replicas after {fb.get('failureThreshold')} failures is "
                          "cluster-wide here (the policy's autoscaling.fallback, which a fallback never uses to cut "
                          "replicas); this lease gets the policy's")

    def trigger(self, where: str, t: dict[str, Any]) -> None:
        kind, md = t.get("type"), t.get("metadata") or {}
        if kind == "cpu":
            metric_type = t.get("metricType") or md.get("type") or "Utilization"
            if metric_type != "Utilization":
                self.warn(f"{where}: cpu trigger of metricType {metric_type} has no equivalent: cpuUtilization is "
                          "percent of requests; dropped")
                return
            value = _number(md.get("value"))
            if value is None:
                self.warn(f"{where}: cpu trigger without a numeric metadata.value; dropped")
                return
            self.use("cpuUtilization", value)
        elif kind == "prometheus":
            self.rates.append(md)
            if t.get("metricType", "AverageValue") != "AverageValue":
                self.warn(f"{where}: prometheus trigger of metricType {t.get('metricType')}: its threshold is not per "
                          "replica")
        else:
            self.warn(f"{where}: {kind} trigger has no equivalent (metrics here come from Prometheus); dropped")

    def zero(self) -> None:
        """With a minimum of 0 and a prometheus trigger: the trigger's query wakes the lease (the policy's
        scaleToZero.wakeQuery, one template for all leases), its threshold is what one replica serves."""
        spec = self.hpa.get("spec") or {}
        if _count(spec, "minReplicaCount", 0) != 0 or not self.rates or self.c.target is None:
            return
        md = self.rates[0]
        template = wake_template(str(md.get("query") or ""), self.c.namespace, self.c.target)
        stz = self.policy.autoscaling.scale_to_zero
        if "{{name}}" not in template:
            self.warn(f"the trigger's query names the Deployment {self.c.target!r} nowhere as a label value, so as a "
                      "wake query template it would read the same demand for every lease; and a lease at zero has no "
                      "pods, so the demand must be counted in front of them (ingress, gateway, service mesh): write "
                      "scaleToZero.wakeQuery by hand (docs/configuration.md, Scale to zero)")
        if not stz.wake_query:
            self.c.scale_to_zero = {"wakeQuery": template, "idleSeconds": _count(spec, "cooldownPeriod", 300)}
            activation = _number(md.get("activationThreshold"))
            if activation is not None:
                self.c.scale_to_zero["wakeThreshold"] = activation
            self.warn("to scale to zero as KEDA did, merge the scaleToZero snippet (its query as a template for every "
                      "lease: check it) and replicas.limits.minimum.lowerBound 0, then annotate min-replicas=0")
            return
        if self.c.annotations.get(ANNOTATION_PREFIX + "min-replicas") != "0":
            return  # the policy cannot take this lease to zero (replicas() said why)
        if stz.wake_query.strip() != template:
            self.warn(f"the policy's scaleToZero.wakeQuery is not this trigger's query ({template!r}): the lease is "
                      "woken by the policy's, and wake-target is not set")
        elif (threshold := _number(md.get("threshold"))) is not None and threshold > 0:
            self.c.annotations[ANNOTATION_PREFIX + "wake-target"] = _num(threshold)
        else:
            self.warn(f"the trigger's threshold {md.get('threshold')!r} is not a number > 0: wake-target not set")
        cooldown = _count(spec, "cooldownPeriod", 300)
        if cooldown != stz.idle_s and 0 < cooldown <= MAX_IDLE_S:  # KEDA's cooldown, this lease's idle period
            self.c.annotations[ANNOTATION_PREFIX + "idle-seconds"] = str(cooldown)


def convert(hpa: dict[str, Any], policy: ClusterPolicy, *, mode: str = "shadow") -> Conversion:
    """Convert one HPA or KEDA ScaledObject (a dict) against a cluster policy. Pure: no I/O."""
    conv = _KedaConverter(hpa, policy) if hpa.get("kind") == KEDA_KIND else _Converter(hpa, policy)
    owner = next((o.get("name") for o in (hpa.get("metadata") or {}).get("ownerReferences") or []
                  if isinstance(o, dict) and o.get("kind") == KEDA_KIND), None)
    if owner is not None and conv.c.kind == HPA_KIND:  # an HPA KEDA made: its ScaledObject says what was meant
        conv.warn(f"KEDA's own HPA for ScaledObject {owner}: not converted; convert the ScaledObject (read from the "
                  f"cluster beside the HPAs, or kubectl get scaledobject {owner} -o yaml)")
        return conv.c
    if not conv.target():
        return conv.c
    if not policy.autoscaling.enable:
        conv.warn("autoscaling.enable is false in the cluster policy: no lease scales until it is true")
    conv.replicas()
    conv.metrics()
    conv.behavior()
    conv.zero()
    return conv.finish(mode)


def policy_snippet(conversions: list[Conversion]) -> dict[str, Any]:
    """The merged ``autoscaling:`` changes all conversions need (empty when none)."""
    metrics: dict[str, dict[str, Any]] = {}
    for c in conversions:
        for name, snip in c.metrics.items():
            cur = metrics.setdefault(name, {})
            for k, v in snip.items():
                if k == "threshold" and "threshold" in cur:
                    th = dict(cur["threshold"])
                    th["minimum"] = min(th.get("minimum", v.get("minimum", 0)), v.get("minimum", 0))
                    th["maximum"] = 0 if 0 in (th.get("maximum", 0), v.get("maximum", 0)) else max(
                        th["maximum"], v["maximum"])
                    cur["threshold"] = {**v, **th}
                else:
                    cur.setdefault(k, v)
    autoscaling: dict[str, Any] = {"metrics": metrics} if metrics else {}
    zero = next((c.scale_to_zero for c in conversions if c.scale_to_zero), None)
    if zero is not None:
        autoscaling["scaleToZero"] = zero
        autoscaling["replicas"] = {"limits": {"minimum": {"lowerBound": 0}}}
    return {"autoscaling": autoscaling} if autoscaling else {}


def hpas_from_documents(docs: list[Any], source: str) -> list[dict[str, Any]]:
    """HPA and KEDA ScaledObject objects from parsed YAML documents (single objects or ``List``/``*List``
    wrappers)."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("items"), list):
            out.extend(hpas_from_documents(doc["items"], source))
        elif doc.get("kind") in (HPA_KIND, KEDA_KIND):
            out.append(doc)
    return out


def read_files(paths: list[str]) -> list[dict[str, Any]]:
    hpas: list[dict[str, Any]] = []
    for p in paths:
        text = sys.stdin.read() if p == "-" else Path(p).read_text(encoding="utf-8")
        hpas.extend(hpas_from_documents(list(yaml.safe_load_all(text)), p))
    return hpas


async def read_cluster(kubeconfig: str | None, context: str | None, namespace: str | None) -> list[dict[str, Any]]:
    """List HPAs (autoscaling/v2) and KEDA ScaledObjects (none when KEDA is not installed) through the API.
    ``namespace`` None: all namespaces."""
    from autoscaler.kube.api import KubeApi, KubeError

    api = await KubeApi.connect(kubeconfig, context)
    scope = f"/namespaces/{namespace}" if namespace else ""
    try:
        doc = await api.get(f"/apis/autoscaling/v2{scope}/horizontalpodautoscalers")
        try:
            keda = await api.get(f"/apis/keda.sh/v1alpha1{scope}/scaledobjects")
        except KubeError as exc:
            if exc.status != 404:  # 404: KEDA is not installed
                raise
            keda = {}
    finally:
        await api.close()
    return ([dict(i, apiVersion="autoscaling/v2", kind=HPA_KIND) for i in doc.get("items") or []]
            + [dict(i, apiVersion="keda.sh/v1alpha1", kind=KEDA_KIND) for i in keda.get("items") or []])


def render_text(conversions: list[Conversion], snippet: dict[str, Any], mode: str) -> str:
    lines: list[str] = []
    for c in conversions:
        what = "HPA" if c.kind == HPA_KIND else c.kind
        lines.append(f"# {what} {c.namespace}/{c.name}" + (f" -> Deployment {c.namespace}/{c.target}" if c.target else ""))
        for w in c.warnings:
            lines.append(f"#   WARNING: {w}")
        if c.target:
            args = " ".join(f"{k}={json.dumps(v) if not re.fullmatch(r'[A-Za-z0-9_.,:/-]*', v) else v}"
                            for k, v in c.annotations.items())
            lines.append(f"kubectl annotate --overwrite -n {c.namespace} deployment/{c.target} {args}")
        if c.behavior:
            lines.append("#   its behavior (applies to ALL leases if copied into the policy's autoscaling.behavior):")
            lines.extend("#     " + ln for ln in yaml.safe_dump(c.behavior, sort_keys=False).splitlines())
        lines.append("")
    if snippet:
        lines.append("# Cluster policy (ConfigMap inference-autoscaler-policy, key policy.yaml): merge into autoscaling:")
        lines.extend(yaml.safe_dump(snippet, sort_keys=False).splitlines())
        lines.append("")
    if mode == "shadow":
        lines.append("# Next: annotate in mode shadow, keep the HPA, and compare `autoscaler status` (desired) with")
        lines.append("# `kubectl get hpa` for a few days. Then delete the HPA and set inference-autoscaler.io/mode=enforce.")
        lines.append("# Never run the HPA and an enforcing lease on the same Deployment: both write spec.replicas.")
        if any(c.kind == KEDA_KIND for c in conversions):
            lines.append("# A ScaledObject owns an HPA (keda-hpa-<name>): delete the ScaledObject, not that HPA.")
    else:
        lines.append("# mode enforce: delete each HPA (or ScaledObject) BEFORE annotating, or both will write "
                     "spec.replicas.")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help="HPA or KEDA ScaledObject YAML/JSON file ('-' for stdin); repeatable. Without -f, read from "
                        "the cluster")
    p.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("-n", "--namespace", default="default", help="namespace to read HPAs from (cluster)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="read HPAs from every namespace (cluster)")
    p.add_argument("--policy", help="cluster policy YAML to check against (default: the shipped policy)")
    p.add_argument("--enforce", action="store_true", help="emit mode enforce instead of the default shadow")
    p.add_argument("-o", "--output", choices=["text", "yaml", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy or DEFAULT_POLICY)
    except (PolicyError, OSError) as exc:
        print(f"migrate-hpa: {exc}", file=sys.stderr)
        return 2
    try:
        if args.filename:
            hpas = read_files(args.filename)
        else:
            ns = None if args.all_namespaces else args.namespace
            hpas = asyncio.run(read_cluster(args.kubeconfig, args.context, ns))
    except (OSError, yaml.YAMLError) as exc:
        print(f"migrate-hpa: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # KubeError, kubeconfig errors: say what failed, no traceback
        hint = " (does the cluster serve autoscaling/v2?)" if "404" in str(exc) else ""
        print(f"migrate-hpa: reading HPAs from the cluster failed: {exc}{hint}", file=sys.stderr)
        return 2
    if not hpas:
        print("migrate-hpa: no HorizontalPodAutoscaler found (nor a KEDA ScaledObject)", file=sys.stderr)
        return 1
    mode = "enforce" if args.enforce else "shadow"
    conversions = [convert(h, policy, mode=mode) for h in hpas]
    snippet = policy_snippet(conversions)
    if args.output == "text":
        sys.stdout.write(render_text(conversions, snippet, mode))
    else:
        doc = {"leases": [c.to_dict() for c in conversions], "policy": snippet, "mode": mode}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.output == "json"
                         else yaml.safe_dump(doc, sort_keys=False))
    return 0
