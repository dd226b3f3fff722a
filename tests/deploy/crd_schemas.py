"""Offline JSON schemas for the Prometheus Operator kinds we write (ServiceMonitor, PodMonitor, PrometheusRule).

kubernetes-validate ships only the built-in Kubernetes kinds. These are subsets of the
monitoring.coreos.com/v1 CRD schemas (prometheus-operator v0.7x), transcribed for the fields this
project uses, with ``additionalProperties: false`` so a misspelt field fails the test like a real
API server with strict field validation would.
"""

from __future__ import annotations

from typing import Any

STR: dict[str, Any] = {"type": "string"}
LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
LABEL_SELECTOR: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "matchLabels": LABELS,
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["key", "operator"],
            "properties": {"key": STR, "operator": STR, "values": {"type": "array", "items": STR}}}},
    },
}
RELABEL: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod", "labelmap",
                            "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep", "lowercase", "Lowercase",
                            "uppercase", "Uppercase", "keepequal", "KeepEqual", "dropequal", "DropEqual"]},
        "modulus": {"type": "integer"}, "regex": STR, "replacement": STR, "separator": STR,
        "sourceLabels": {"type": "array", "items": STR}, "targetLabel": STR,
    },
}
ENDPOINT_COMMON: dict[str, Any] = {
    "port": STR, "path": STR, "interval": {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                                                        r"(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
                                                                        r"(([0-9]+)ms)?)$"},
    "scrapeTimeout": STR, "scheme": {"enum": ["http", "https"]}, "honorLabels": {"type": "boolean"},
    "relabelings": {"type": "array", "items": RELABEL}, "metricRelabelings": {"type": "array", "items": RELABEL},
}
METADATA: dict[str, Any] = {
    "type": "object", "required": ["name"],
    "properties": {"name": STR, "namespace": STR, "labels": LABELS, "annotations": LABELS,
                   "ownerReferences": {"type": "array", "items": {
                       "type": "object", "required": ["apiVersion", "kind", "name", "uid"],
                       "properties": {"apiVersion": STR, "kind": STR, "name": STR, "uid": STR,
                                      "controller": {"type": "boolean"},
                                      "blockOwnerDeletion": {"type": "boolean"}}}}},
}


def _kind(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _kind("ServiceMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
        "properties": {
            "selector": LABEL_SELECTOR, "jobLabel": STR,
            "namespaceSelector": {"type": "object", "additionalProperties": False,
                                  "properties": {"any": {"type": "boolean"},
                                                 "matchNames": {"type": "array", "items": STR}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "properties": {**ENDPOINT_COMMON, "targetPort": {"type": ["integer", "string"]}}}},
        }}),
    "PodMonitor": _kind("PodMonitor", {
        "type": "object", "additionalProperties": False, "required": ["selector"],
        "properties": {
            "selector": LABEL_SELECTOR, "jobLabel": STR,
            "namespaceSelector": {"type": "object", "additionalProperties": False,
                                  "properties": {"any": {"type": "boolean"},
                                                 "matchNames": {"type": "array", "items": STR}}},
            "podMetricsEndpoints": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "properties": {**ENDPOINT_COMMON, "portNumber": {"type": "integer"}}}},
        }}),
    "PrometheusRule": _kind("PrometheusRule", {
        "type": "object", "additionalProperties": False,
        "properties": {"groups": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1}, "interval": STR, "limit": {"type": "integer"},
                "rules": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["expr"],
                    "properties": {"record": STR, "alert": STR, "expr": {"type": ["string", "integer"]},
                                   "for": STR, "labels": LABELS, "annotations": LABELS}}},
            }}}},
    }),
}
