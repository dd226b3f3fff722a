"""REST semantics of the sandbox API server, checked over raw HTTP: what real clients rely on."""

from __future__ import annotations

import json
from typing import Any

from apihelpers import DEPLOYMENTS, PODS, Http, deployment, eventually

from autoscaler.sandbox.cluster import SandboxCluster


async def test_create_get_and_metadata(http: Http) -> None:
    """Create answers 201 with uid, creationTimestamp, generation 1 and a resourceVersion; GET returns it."""
    r = await http.post(DEPLOYMENTS, deployment("a"))
    assert r.status == 201, r.body
    meta = r.body["metadata"]
    assert r.body["kind"] == "Deployment" and r.body["apiVersion"] == "apps/v1"
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0 and meta["namespace"] == "default"
    assert r.body["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted
    got = await http.get(f"{DEPLOYMENTS}/a")
    assert got.status == 200 and got.body["metadata"]["uid"] == meta["uid"]


async def test_resource_versions_come_from_one_counter(http: Http) -> None:
    """Every write, of any kind, takes the next value of one counter."""
    a = await http.post(DEPLOYMENTS, deployment("a"))
    cm = await http.post("/api/v1/namespaces/default/configmaps",
                         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})
    b = await http.post(DEPLOYMENTS, deployment("b"))
    rvs = [int(x.body["metadata"]["resourceVersion"]) for x in (a, cm, b)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


async def test_errors_are_status_objects(http: Http) -> None:
    """404, 409 AlreadyExists and 422 Invalid come back as Status objects with kubectl's reasons."""
    missing = await http.get(f"{DEPLOYMENTS}/nope")
    assert missing.status == 404 and missing.body["kind"] == "Status" and missing.reason == "NotFound"
    assert missing.body["message"] == 'deployments.apps "nope" not found'
    await http.post(DEPLOYMENTS, deployment("a"))
    again = await http.post(DEPLOYMENTS, deployment("a"))
    assert again.status == 409 and again.reason == "AlreadyExists"
    bad = deployment("b")
    bad["spec"]["replicas"] = -1
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    invalid = await http.post(DEPLOYMENTS, bad)
    assert invalid.status == 422 and invalid.reason == "Invalid"
    fields = {c["field"] for c in invalid.body["details"]["causes"]}
    assert {"spec.replicas", "spec.template.metadata.labels"} <= fields
    bad_name = deployment("Bad_Name")
    assert (await http.post(DEPLOYMENTS, bad_name)).status == 422


async def test_stale_update_conflicts(http: Http) -> None:
    """PUT with an old resourceVersion gets 409 Conflict; with the current one it succeeds."""
    path = "/api/v1/namespaces/default/configmaps"
    created = (await http.post(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})).body
    created["data"] = {"k": "1"}
    ok = await http.put(f"{path}/c", created)
    assert ok.status == 200
    created["data"] = {"k": "2"}
    stale = await http.put(f"{path}/c", created)
    assert stale.status == 409 and stale.reason == "Conflict"
    assert "the object has been modified" in stale.body["message"]


async def test_put_without_content_type_and_generation(http: Http) -> None:
    """PUT without Content-Type is read as JSON; spec changes bump generation, metadata changes do not.
    (No resourceVersion in the body: an unconditional update, since the controller writes status.)"""
    created = (await http.post(DEPLOYMENTS, deployment("a"))).body
    del created["metadata"]["resourceVersion"]
    created["metadata"]["labels"]["tier"] = "gpu"
    r1 = await http.put(f"{DEPLOYMENTS}/a", created, content_type=None)
    assert r1.status == 200 and r1.body["metadata"]["generation"] == 1
    del r1.body["metadata"]["resourceVersion"]
    r1.body["spec"]["replicas"] = 3
    r2 = await http.put(f"{DEPLOYMENTS}/a", r1.body, content_type=None)
    assert r2.body["metadata"]["generation"] == 2


async def test_noop_update_keeps_resource_version(http: Http) -> None:
    """An update that changes nothing does not produce a new resourceVersion (nor a watch event)."""
    created = (await http.post("/api/v1/namespaces/default/configmaps",
                               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})).body
    again = await http.put("/api/v1/namespaces/default/configmaps/c", created)
    assert again.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_status_subresource_separation(cluster: SandboxCluster, http: Http) -> None:
    """Writes to the main resource ignore status; writes to /status change only status."""
    await http.post(DEPLOYMENTS, deployment("a"))
    await cluster.wait_for_ready("default", "a")
    cur = (await http.get(f"{DEPLOYMENTS}/a")).body
    cur["status"] = {"replicas": 99}
    r = await http.put(f"{DEPLOYMENTS}/a", cur)
    assert r.body["status"].get("replicas") == 1
    cur = (await http.get(f"{DEPLOYMENTS}/a/status")).body
    cur["status"]["observedGeneration"] = 42
    cur["spec"]["replicas"] = 7
    r = await http.put(f"{DEPLOYMENTS}/a/status", cur)
    assert r.status == 200 and r.body["status"]["observedGeneration"] == 42 and r.body["spec"]["replicas"] == 1


async def test_scale_subresource(cluster: SandboxCluster, http: Http) -> None:
    """GET /scale gives autoscaling/v1 Scale; PUT with a stale resourceVersion is 409; PATCH works."""
    await http.post(DEPLOYMENTS, deployment("a", replicas=2))
    await cluster.wait_for_ready("default", "a")  # the controller's status writes are over
    scale = (await http.get(f"{DEPLOYMENTS}/a/scale")).body
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=a"
    scale["spec"]["replicas"] = 3
    r = await http.put(f"{DEPLOYMENTS}/a/scale", scale)
    assert r.status == 200 and r.body["spec"]["replicas"] == 3
    stale = await http.put(f"{DEPLOYMENTS}/a/scale", scale)
    assert stale.status == 409
    p = await http.patch(f"{DEPLOYMENTS}/a/scale", {"spec": {"replicas": 5}})
    assert p.status == 200 and p.body["spec"]["replicas"] == 5
    dep = (await http.get(f"{DEPLOYMENTS}/a")).body
    assert dep["spec"]["replicas"] == 5 and dep["metadata"]["generation"] == 3
    neg = await http.patch(f"{DEPLOYMENTS}/a/scale", {"spec": {"replicas": -1}})
    assert neg.status == 422


async def test_three_patch_types(http: Http) -> None:
    """Merge patch, strategic merge (containers merged by name) and JSON patch all apply."""
    await http.post(DEPLOYMENTS, deployment("a"))
    r = await http.patch(f"{DEPLOYMENTS}/a", {"metadata": {"annotations": {"x": "1"}}})
    assert r.status == 200 and r.body["metadata"]["annotations"] == {"x": "1"}
    r = await http.patch(f"{DEPLOYMENTS}/a", {"spec": {"template": {"spec": {"containers": [
        {"name": "triton", "image": "triton:2"}]}}}}, "application/strategic-merge-patch+json")
    c = r.body["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "triton:2" and c["resources"]["requests"]["cpu"] == "1"
    r = await http.patch(f"{DEPLOYMENTS}/a", [{"op": "replace", "path": "/spec/replicas", "value": 4},
                                              {"op": "add", "path": "/metadata/labels/t", "value": "z"}],
                         "application/json-patch+json")
    assert r.body["spec"]["replicas"] == 4 and r.body["metadata"]["labels"]["t"] == "z"


async def test_bad_patches(http: Http) -> None:
    """Malformed patches are 400, patches that do not apply 422, unknown patch types 415."""
    await http.post(DEPLOYMENTS, deployment("a"))
    assert (await http.patch(f"{DEPLOYMENTS}/a", None, raw=b"{nope")).status == 400
    assert (await http.patch(f"{DEPLOYMENTS}/a", {"op": "x"}, "application/json-patch+json")).status == 400
    bad_path = [{"op": "remove", "path": "/spec/nothing"}]
    assert (await http.patch(f"{DEPLOYMENTS}/a", bad_path, "application/json-patch+json")).status == 422
    failed_test = [{"op": "test", "path": "/spec/replicas", "value": 9}]
    assert (await http.patch(f"{DEPLOYMENTS}/a", failed_test, "application/json-patch+json")).status == 422
    assert (await http.patch(f"{DEPLOYMENTS}/a", {}, "text/plain")).status == 415
    wrong_type = await http.patch(f"{DEPLOYMENTS}/a", {"spec": {"replicas": "many"}})
    assert wrong_type.status == 400 and "cannot be handled as a Deployment" in wrong_type.body["message"]
    assert (await http.patch(f"{DEPLOYMENTS}/missing", {})).status == 404
    assert (await http.get(f"{DEPLOYMENTS}/a")).body["spec"]["replicas"] == 1  # nothing was lost


async def test_strategic_merge_is_refused_for_custom_resources(http: Http) -> None:
    """PodMonitors are custom resources: strategic merge patch gives 415, as on a real server."""
    path = "/apis/monitoring.coreos.com/v1/namespaces/default/podmonitors"
    body = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "pm"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "podMetricsEndpoints": [{"port": "metrics"}]}}
    assert (await http.post(path, body)).status == 201
    listed = (await http.get(path)).body
    assert listed["items"][0]["kind"] == "PodMonitor"  # custom resources carry kind in lists
    r = await http.patch(f"{path}/pm", {"spec": {}}, "application/strategic-merge-patch+json")
    assert r.status == 415
    r = await http.patch(f"{path}/pm", {"metadata": {"labels": {"release": "prometheus"}}})
    assert r.status == 200 and r.body["metadata"]["generation"] == 1


async def test_malformed_and_unknown_requests(http: Http) -> None:
    """Malformed JSON, unknown resources, wrong kinds and wrong methods get Status errors; the server lives."""
    assert (await http.post(DEPLOYMENTS, raw=b"{not json")).status == 400
    assert (await http.post(DEPLOYMENTS, raw=b"[1, 2]")).status == 400
    assert (await http.post(DEPLOYMENTS, raw=b"")).status == 400
    wrong_kind = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert (await http.post(DEPLOYMENTS, wrong_kind)).status == 400
    unknown = await http.get("/apis/apps/v1/namespaces/default/widgets")
    assert unknown.status == 404 and unknown.body["kind"] == "Status"
    assert (await http.get("/apis/nothing.example.com/v1")).status == 404
    assert (await http.get("/no/such/path")).status == 404
    assert (await http.post(f"{DEPLOYMENTS}/a", deployment("a"))).status == 405
    assert (await http.put(DEPLOYMENTS, deployment("a"))).status == 405
    assert (await http.post("/version", {})).status == 405
    assert (await http.get("/api/v1/pods/x")).status == 404  # named objects need their namespace
    assert (await http.get(DEPLOYMENTS, params={"labelSelector": "a in (b"})).status == 400
    assert (await http.get(DEPLOYMENTS, params={"fieldSelector": "spec.nope=1"})).status == 400
    assert (await http.get(DEPLOYMENTS, params={"limit": "x"})).status == 400
    assert (await http.get(DEPLOYMENTS, params={"continue": "garbage"})).status == 400
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x" * 4_000_000}}
    assert (await http.post("/api/v1/namespaces/default/configmaps", big)).status == 413
    assert (await http.get("/version")).status == 200


async def test_namespace_checks(http: Http) -> None:
    """Creating in a missing namespace is 404; a body naming another namespace is 400."""
    r = await http.post("/apis/apps/v1/namespaces/ghost/deployments", deployment("a"))
    assert r.status == 404 and r.body["message"] == 'namespaces "ghost" not found'
    other = deployment("a")
    other["metadata"]["namespace"] = "kube-system"
    assert (await http.post(DEPLOYMENTS, other)).status == 400


async def test_field_validation(http: Http) -> None:
    """Strict rejects unknown and duplicate fields, Warn (the default) warns and drops, Ignore drops."""
    body = deployment("a")
    body["spec"]["bogus"] = 1
    strict = await http.post(DEPLOYMENTS, body, params={"fieldValidation": "Strict"})
    assert strict.status == 400 and 'unknown field "spec.bogus"' in strict.body["message"]
    dup = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","name":"d"}}'
    r = await http.post("/api/v1/namespaces/default/configmaps", raw=dup, params={"fieldValidation": "Strict"})
    assert r.status == 400 and 'duplicate field "metadata.name"' in r.body["message"]
    warn = await http.post(DEPLOYMENTS, body)
    assert warn.status == 201 and "bogus" not in warn.body["spec"]
    assert 'unknown field \\"spec.bogus\\"' in warn.headers.get("Warning", "")
    body["metadata"]["name"] = "b"
    ignore = await http.post(DEPLOYMENTS, body, params={"fieldValidation": "Ignore"})
    assert ignore.status == 201 and "Warning" not in ignore.headers
    assert (await http.post(DEPLOYMENTS, body, params={"fieldValidation": "Loose"})).status == 400


async def test_label_and_field_selectors(cluster: SandboxCluster, http: Http) -> None:
    """labelSelector supports =, ==, !=, in, notin, exists and !exists; fieldSelector name and phase."""
    for name, labels in (("a", {"tier": "gpu", "env": "prod"}), ("b", {"tier": "cpu"}), ("c", {})):
        await http.post("/api/v1/namespaces/default/configmaps",
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})

    async def names(selector: str, kind: str = "labelSelector") -> list[str]:
        r = await http.get("/api/v1/namespaces/default/configmaps", params={kind: selector})
        assert r.status == 200, r.body
        return [i["metadata"]["name"] for i in r.body["items"]]

    assert await names("tier=gpu") == ["a"]
    assert await names("tier==gpu") == ["a"]
    assert await names("tier!=gpu") == ["b", "c"]
    assert await names("tier in (gpu,cpu)") == ["a", "b"]
    assert await names("tier notin (gpu)") == ["b", "c"]
    assert await names("env") == ["a"]
    assert await names("!env") == ["b", "c"]
    assert await names("tier,!env") == ["b"]
    assert await names("metadata.name=b", "fieldSelector") == ["b"]
    assert await names("metadata.name!=b,metadata.namespace=default", "fieldSelector") == ["a", "c"]
    await http.post(DEPLOYMENTS, deployment("d"))
    await cluster.wait_for_ready("default", "d")
    running = await http.get("/api/v1/pods", params={"fieldSelector": "status.phase=Running"})
    assert [p["metadata"]["labels"]["app"] for p in running.body["items"]] == ["d"]
    pending = await http.get(PODS, params={"fieldSelector": "status.phase=Pending"})
    assert pending.body["items"] == []


async def test_limit_and_continue(http: Http) -> None:
    """limit/continue pages through a list without gaps; remainingItemCount counts what is left."""
    for i in range(5):
        await http.post("/api/v1/namespaces/default/configmaps",
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
    seen: list[str] = []
    params = {"limit": "2"}
    first = (await http.get("/api/v1/namespaces/default/configmaps", params=params)).body
    assert first["metadata"]["remainingItemCount"] == 3
    page = first
    while True:
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        page = (await http.get("/api/v1/namespaces/default/configmaps",
                               params={"limit": "2", "continue": token})).body
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert seen == [f"c{i}" for i in range(5)]
    assert "kind" not in first["items"][0]  # built-in list items carry no kind, as on a real server


async def test_discovery(http: Http) -> None:
    """/version, legacy and aggregated /api and /apis, and resource lists with subresources."""
    version = (await http.get("/version")).body
    assert version["major"] == "1" and version["minor"] == "32"
    assert (await http.get("/api")).body["versions"] == ["v1"]
    groups = {g["name"] for g in (await http.get("/apis")).body["groups"]}
    assert {"apps", "coordination.k8s.io", "events.k8s.io", "monitoring.coreos.com",
            "authorization.k8s.io"} <= groups
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    agg = await http.get("/apis", headers={"Accept": accept})
    assert agg.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    apps = next(i for i in agg.body["items"] if i["metadata"]["name"] == "apps")
    dep = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert {s["subresource"] for s in dep["subresources"]} == {"scale", "status"}
    core = (await http.get("/api", headers={"Accept": accept})).body
    assert core["kind"] == "APIGroupDiscoveryList" and core["items"][0]["metadata"]["name"] == ""
    v1 = (await http.get("/api/v1")).body
    assert {"pods", "pods/status", "namespaces", "configmaps", "events"} <= {r["name"] for r in v1["resources"]}
    apps_v1 = (await http.get("/apis/apps/v1")).body
    scale = next(r for r in apps_v1["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert (await http.get("/apis/coordination.k8s.io/v1")).body["resources"][0]["name"] == "leases"


async def test_openapi_v3_advertises_field_validation(http: Http) -> None:
    """The per group-version OpenAPI document has PATCH operations with fieldValidation for each kind."""
    root = (await http.get("/openapi/v3")).body
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = (await http.get(url)).body
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op["parameters"])
    assert "io.k8s.api.apps.v1.Deployment" in doc["components"]["schemas"]
    assert (await http.get("/openapi/v3/api/v1")).status == 200


async def test_table_output(cluster: SandboxCluster, http: Http) -> None:
    """Accept: as=Table gives kubectl's columns; READY/UP-TO-DATE/AVAILABLE for deployments."""
    await http.post(DEPLOYMENTS, deployment("a", replicas=2))
    await cluster.wait_for_ready("default", "a")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    t = (await http.get(DEPLOYMENTS, headers={"Accept": accept})).body
    assert t["kind"] == "Table"
    assert [c["name"] for c in t["columnDefinitions"]][:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert t["rows"][0]["cells"][:4] == ["a", "2/2", 2, 2]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    pods = (await http.get(PODS, headers={"Accept": accept})).body
    assert [r["cells"][1:3] for r in pods["rows"]] == [["1/1", "Running"]] * 2
    one = (await http.get(f"{DEPLOYMENTS}/a", headers={"Accept": accept})).body
    assert one["kind"] == "Table" and len(one["rows"]) == 1


async def test_bearer_token() -> None:
    """With a token, requests without it get a 401 Status; /version stays public."""
    import aiohttp

    async with SandboxCluster(token="s3cret") as c, aiohttp.ClientSession() as s:
        async with s.get(c.url + "/api/v1/namespaces") as r:
            assert r.status == 401 and (await r.json())["reason"] == "Unauthorized"
        async with s.get(c.url + "/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with s.get(c.url + "/api/v1/namespaces", headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 200
        async with s.get(c.url + "/version") as r:
            assert r.status == 200


async def test_only_loopback() -> None:
    """The API server refuses to listen anywhere but loopback."""
    import pytest

    with pytest.raises(ValueError, match="loopback"):
        await SandboxCluster(host="0.0.0.0").start()


async def test_self_subject_access_review(http: Http) -> None:
    """SSAR create answers allowed=true (JSON and kubectl's protobuf encoding)."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "patch", "group": "apps", "resource": "deployments",
                                            "subresource": "scale", "namespace": "default"}}}
    r = await http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body)
    assert r.status == 201 and r.body["status"]["allowed"] is True
    assert r.body["spec"]["resourceAttributes"]["subresource"] == "scale"
    # k8s\0 + runtime.Unknown{typeMeta{apiVersion, kind}, raw: SSAR{spec{resourceAttributes{verb}}}}
    def ld(n: int, b: bytes) -> bytes:
        return bytes([n << 3 | 2, len(b)]) + b
    ra = ld(2, b"get") + ld(5, b"pods")
    raw = ld(2, ld(2, ld(1, ra)))
    tm = ld(1, b"authorization.k8s.io/v1") + ld(2, b"SelfSubjectAccessReview")
    pb = b"k8s\x00" + ld(1, tm) + raw
    r = await http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", raw=pb,
                        content_type="application/vnd.kubernetes.protobuf")
    assert r.status == 201 and r.body["status"]["allowed"] is True
    assert r.body["spec"]["resourceAttributes"] == {"verb": "get", "resource": "pods"}
    garbage = await http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", raw=b"k8s\x00\xff",
                              content_type="application/vnd.kubernetes.protobuf")
    assert garbage.status == 400
    unknown_kind = b"k8s\x00" + ld(1, ld(1, b"v1") + ld(2, b"Node")) + ld(2, b"")
    r = await http.post("/api/v1/namespaces/default/configmaps", raw=unknown_kind,
                        content_type="application/vnd.kubernetes.protobuf")
    assert r.status == 415


async def test_events_in_both_api_groups(http: Http) -> None:
    """An events.k8s.io/v1 Event is visible as a core/v1 Event, with the fields converted."""
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
          "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "inference-autoscaler",
          "reportingInstance": "pod-1", "action": "Scale", "reason": "ScaleUp", "type": "Normal",
          "note": "scaled to 3", "regarding": {"kind": "Deployment", "name": "a", "namespace": "default"}}
    r = await http.post("/apis/events.k8s.io/v1/namespaces/default/events", ev)
    assert r.status == 201 and r.body["note"] == "scaled to 3"
    core = (await http.get("/api/v1/namespaces/default/events/e1")).body
    assert core["message"] == "scaled to 3" and core["involvedObject"]["name"] == "a"
    assert core["reportingComponent"] == "inference-autoscaler"
    incomplete = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"}}
    assert (await http.post("/apis/events.k8s.io/v1/namespaces/default/events", incomplete)).status == 422
    core_ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e3"}, "reason": "X", "message": "m",
               "involvedObject": {"kind": "Deployment", "name": "a", "namespace": "default"}, "type": "Warning"}
    assert (await http.post("/api/v1/namespaces/default/events", core_ev)).status == 201
    listed = (await http.get("/apis/events.k8s.io/v1/namespaces/default/events",
                             params={"fieldSelector": "type=Warning"})).body
    assert [e["note"] for e in listed["items"]] == ["m"]


async def test_dry_run_persists_nothing(http: Http) -> None:
    """dryRun=All validates and answers, but stores nothing."""
    r = await http.post(DEPLOYMENTS, deployment("a"), params={"dryRun": "All"})
    assert r.status == 201
    assert (await http.get(f"{DEPLOYMENTS}/a")).status == 404


async def test_delete_returns_status_and_cascades(cluster: SandboxCluster, http: Http) -> None:
    """Deleting a deployment answers a Success Status and removes its replica sets and pods."""
    await http.post(DEPLOYMENTS, deployment("a", replicas=2))
    await cluster.wait_for_ready("default", "a")
    r = await http.delete(f"{DEPLOYMENTS}/a")
    assert r.status == 200 and r.body["status"] == "Success" and r.body["details"]["name"] == "a"

    async def gone() -> bool:
        pods = (await http.get(PODS)).body["items"]
        rs = (await http.get("/apis/apps/v1/namespaces/default/replicasets")).body["items"]
        return not pods and not rs

    await eventually(gone)
    assert (await http.delete(f"{DEPLOYMENTS}/a")).status == 404


async def test_finalizers_hold_deletion(http: Http) -> None:
    """An object with finalizers gets a deletionTimestamp and goes once they are removed."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "finalizers": ["example.com/x"]}}
    await http.post("/api/v1/namespaces/default/configmaps", cm)
    r = await http.delete("/api/v1/namespaces/default/configmaps/f")
    assert r.status == 200 and r.body["metadata"]["deletionTimestamp"]
    assert (await http.get("/api/v1/namespaces/default/configmaps/f")).status == 200
    p = await http.patch("/api/v1/namespaces/default/configmaps/f", {"metadata": {"finalizers": None}})
    assert p.status == 200
    assert (await http.get("/api/v1/namespaces/default/configmaps/f")).status == 404


async def test_namespace_lifecycle(cluster: SandboxCluster, http: Http) -> None:
    """A deleted namespace is Terminating, refuses new content, empties, then disappears."""
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    assert (await http.post("/api/v1/namespaces", ns)).status == 201
    await http.post("/apis/apps/v1/namespaces/team/deployments", deployment("a"))
    await cluster.wait_for_ready("team", "a")
    r = await http.delete("/api/v1/namespaces/team")
    assert r.status == 200 and r.body["status"]["phase"] == "Terminating"
    refused = await http.post("/api/v1/namespaces/team/configmaps",
                              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert refused.status == 403

    async def gone() -> bool:
        return (await http.get("/api/v1/namespaces/team")).status == 404

    await eventually(gone)
    assert (await http.delete("/api/v1/namespaces/default")).status == 403


async def test_generate_name_and_yaml_body(http: Http) -> None:
    """generateName gets a random suffix; a YAML body is accepted with its content type."""
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\ndata:\n  a: b\n"
    r = await http.post("/api/v1/namespaces/default/configmaps", raw=body.encode(),
                        content_type="application/yaml")
    assert r.status == 201 and r.body["metadata"]["name"].startswith("gen-")
    assert len(r.body["metadata"]["name"]) == len("gen-") + 5


async def test_server_survives_garbage(http: Http) -> None:
    """A battery of hostile inputs never crashes the server nor loses stored objects."""
    await http.post(DEPLOYMENTS, deployment("keep"))
    bodies: list[Any] = [None, 1, "x", [], {"metadata": 5}, {"metadata": {"name": 5}},
                         {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": []},
                         {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                          "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bad"}]},
                                   "template": {}}},
                         {"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "x", "labels": {"a": ["b"]}}}]
    for body in bodies:
        r = await http.post(DEPLOYMENTS, raw=json.dumps(body).encode())
        assert 400 <= r.status < 500, (body, r.status, r.body)
        for method in ("PUT", "PATCH"):
            ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
            r = await http.request(method, f"{DEPLOYMENTS}/keep", raw=json.dumps(body).encode(), content_type=ctype)
            assert r.status < 500, (method, body, r.status, r.body)
    assert (await http.get(f"{DEPLOYMENTS}/keep")).status == 200
