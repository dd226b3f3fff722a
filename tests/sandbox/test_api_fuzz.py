"""Hostile input never gets past the API semantics as anything but a 4xx Status (property-based)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.sandbox.errors import ApiError
from autoscaler.sandbox.registry import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Registry
from autoscaler.sandbox.resources import RESOURCES
from autoscaler.sandbox.store import Store

KEYS = st.sampled_from(["metadata", "spec", "status", "name", "labels", "annotations", "replicas", "selector",
                        "template", "containers", "image", "matchLabels", "matchExpressions", "data",
                        "apiVersion", "kind", "op", "path", "value", "$patch", "finalizers", "ownerReferences",
                        "resourceVersion", "namespace", "generateName", "x"])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) |
                    st.sampled_from(["", "a", "default", "app", "-1", "/spec/replicas", "add", "remove"]),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=25)


def seeded() -> Registry:
    registry = Registry(Store())
    ns = next(r for r in RESOURCES if r.kind == "Namespace")
    registry.create(ns, "", {"metadata": {"name": "default"}})
    dep = next(r for r in RESOURCES if r.kind == "Deployment")
    registry.create(dep, "default", {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    return registry


def client_error_or_success(fn: Any) -> None:
    try:
        fn()
    except ApiError as exc:
        assert 400 <= exc.code < 500 or (exc.reason == "InternalError" and "resourceVersion" in exc.message), \
            exc.status()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON, rt_index=st.integers(0, len(RESOURCES) - 1), patch_type=st.sampled_from(
    [MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH]))
def test_random_bodies_give_client_errors(body: Any, rt_index: int, patch_type: str) -> None:
    """create, update and the three patches on random JSON: success or a 4xx ApiError, never a crash."""
    registry = seeded()
    rt = RESOURCES[rt_index]
    dep = next(r for r in RESOURCES if r.kind == "Deployment")
    ns = "default" if rt.namespaced else ""
    raw = json.dumps(body).encode()
    client_error_or_success(lambda: registry.create(rt, ns, body))
    client_error_or_success(lambda: registry.update(dep, "default", "d", body))
    client_error_or_success(lambda: registry.update(dep, "default", "d", body, subresource="scale"))
    client_error_or_success(lambda: registry.patch(dep, "default", "d", patch_type, raw))
    client_error_or_success(lambda: registry.patch(dep, "default", "d", patch_type, raw, subresource="status"))
    assert registry.get(dep, "default", "d")["metadata"]["name"] == "d"  # never lost
