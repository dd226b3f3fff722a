"""core/v1 Secrets against the sandbox: kubectl's `create secret` subcommands (protobuf bodies), the table
`kubectl get secrets` prints, write-only stringData, base64 data, the type-specific required keys, and
the update rules (type and, once set, `immutable` are final), as the real API server has them."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from apihelpers import Http, Kubectl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autoscaler.sandbox.protobuf import MAGIC, decode_object

SECRETS = "/api/v1/namespaces/default/secrets"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}


async def get(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(await kubectl.ok("get", *args, "-o", "json"))
    return obj


async def watch_from(http: Http, rv: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` watch events on default's secrets after resourceVersion ``rv``."""
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "2"}
    async with asyncio.timeout(5), http.session.get(http.url + SECRETS, params=params) as resp:
        return [json.loads(await resp.content.readline()) for _ in range(count)]


def causes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["field"], c["reason"]) for c in body["details"]["causes"]]


def write_cert_and_key(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and its key: `kubectl create secret tls` checks that they pair."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    crt, pem = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


@pytest.mark.kubectl
async def test_kubectl_create_secret_generic_and_get_table(kubectl: Kubectl) -> None:
    """kubectl create secret generic stores base64 data with type Opaque; kubectl get secrets prints NAME,
    TYPE, DATA, AGE and filters by label."""
    await kubectl.ok("create", "secret", "generic", "s", "--from-literal=a=b", "--from-literal=c=d")
    s = await get(kubectl, "secret", "s")
    assert s["kind"] == "Secret" and s["type"] == "Opaque"
    assert s["data"] == {"a": b64("b"), "c": b64("d")}
    await kubectl.ok("create", "secret", "generic", "other", "--from-literal=x=y", "--type=example.com/custom")
    await kubectl.ok("label", "secret", "other", "app=web")
    header, *rows = (await kubectl.ok("get", "secrets")).splitlines()
    assert header.split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert sorted(r.split()[:3] for r in rows) == [["other", "example.com/custom", "1"], ["s", "Opaque", "2"]]
    assert [r.split()[0] for r in (await kubectl.ok("get", "secrets", "-l", "app=web")).splitlines()[1:]] == ["other"]


@pytest.mark.kubectl
async def test_kubectl_create_secret_tls_and_docker_registry(kubectl: Kubectl, tmp_path: Path) -> None:
    """kubectl create secret tls|docker-registry give the kubernetes.io/tls and dockerconfigjson types with
    the files' bytes and the docker config JSON in data."""
    crt, key = write_cert_and_key(tmp_path)
    await kubectl.ok("create", "secret", "tls", "web-tls", f"--cert={crt}", f"--key={key}")
    tls = await get(kubectl, "secret", "web-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert {k: base64.b64decode(v) for k, v in tls["data"].items()} == {"tls.crt": crt.read_bytes(),
                                                                         "tls.key": key.read_bytes()}
    await kubectl.ok("create", "secret", "docker-registry", "regcred", "--docker-server=registry.example",
                     "--docker-username=u", "--docker-password=p")
    reg = await get(kubectl, "secret", "regcred")
    assert reg["type"] == "kubernetes.io/dockerconfigjson" and list(reg["data"]) == [".dockerconfigjson"]
    auth = json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))["auths"]["registry.example"]
    assert (auth["username"], auth["password"], auth["auth"]) == ("u", "p", b64("u:p"))


async def test_string_data_is_merged_into_data_and_never_returned(http: Http) -> None:
    """stringData is written into data base64-encoded, wins over data on the same key, and is never stored
    or returned (get, list, watch), on create, update and every patch type alike."""
    created = await http.post(SECRETS, secret("s", data={"a": b64("old"), "keep": b64("k")},
                                              stringData={"a": "new", "s": "plain"}))
    assert created.status == 201, created.body
    assert created.body["data"] == {"a": b64("new"), "keep": b64("k"), "s": b64("plain")}
    assert "stringData" not in created.body and "stringData" not in (await http.get(f"{SECRETS}/s")).body
    patched = await http.patch(f"{SECRETS}/s", {"stringData": {"keep": "changed"}})
    assert patched.body["data"] == {"a": b64("new"), "keep": b64("changed"), "s": b64("plain")}
    strategic = await http.patch(f"{SECRETS}/s", {"stringData": {"x": "y"}},
                                 content_type="application/strategic-merge-patch+json")
    assert strategic.body["data"]["x"] == b64("y") and "stringData" not in strategic.body
    replaced = await http.put(f"{SECRETS}/s", secret("s", stringData={"only": "this"}))
    assert replaced.body["data"] == {"only": b64("this")} and replaced.body["type"] == "Opaque"
    listed = (await http.get(SECRETS)).body
    assert listed["kind"] == "SecretList" and "stringData" not in listed["items"][0]
    events = await watch_from(http, created.body["metadata"]["resourceVersion"], 3)
    assert [e["type"] for e in events] == ["MODIFIED"] * 3
    assert events[-1]["object"]["data"] == {"only": b64("this")} and "stringData" not in events[0]["object"]


async def test_bad_data_is_rejected_as_upstream(http: Http) -> None:
    """Data that is not base64 is a 400 BadRequest from the decoder (as the real server: its message gives
    the byte offset, not the field); a key outside [-._a-zA-Z0-9]+ is a 422 naming data[key]."""
    bad = await http.post(SECRETS, secret("b", data={"k": "not base64!"}))
    assert bad.status == 400 and bad.reason == "BadRequest"
    assert bad.body["message"] == ('Secret in version "v1" cannot be handled as a Secret: '
                                   "illegal base64 data at input byte 3")
    unpadded = await http.post(SECRETS, secret("b", data={"k": "admin"}))
    assert unpadded.body["message"].endswith("illegal base64 data at input byte 4")
    key = await http.post(SECRETS, secret("b", stringData={"bad key": "v"}))
    assert key.status == 422 and key.reason == "Invalid"
    assert causes(key.body) == [("data[bad key]", "FieldValueInvalid")]
    assert "a valid config key must consist of alphanumeric characters" in key.body["message"]
    assert (await http.get(f"{SECRETS}/b")).status == 404


async def test_type_required_keys(http: Http) -> None:
    """Each type needs its keys: tls.crt and tls.key, .dockerconfigjson (a JSON object), username or
    password for basic-auth, a non-empty ssh-privatekey for ssh-auth."""
    tls = await http.post(SECRETS, secret("t", type="kubernetes.io/tls", stringData={"tls.crt": "x"}))
    assert tls.status == 422 and causes(tls.body) == [("data[tls.key]", "FieldValueRequired")]
    docker = await http.post(SECRETS, secret("d", type="kubernetes.io/dockerconfigjson"))
    assert causes(docker.body) == [("data[.dockerconfigjson]", "FieldValueRequired")]
    not_json = await http.post(SECRETS, secret("d", type="kubernetes.io/dockerconfigjson",
                                               stringData={".dockerconfigjson": "{oops"}))
    assert causes(not_json.body) == [("data[.dockerconfigjson]", "FieldValueInvalid")]
    assert "<secret contents redacted>" in not_json.body["message"]
    basic = await http.post(SECRETS, secret("ba", type="kubernetes.io/basic-auth", stringData={"other": "x"}))
    assert causes(basic.body) == [("data[username]", "FieldValueRequired"), ("data[password]", "FieldValueRequired")]
    ssh = await http.post(SECRETS, secret("ssh", type="kubernetes.io/ssh-auth", stringData={"ssh-privatekey": ""}))
    assert causes(ssh.body) == [("data[ssh-privatekey]", "FieldValueRequired")]
    for ok in (secret("ba", type="kubernetes.io/basic-auth", stringData={"password": ""}),
               secret("ssh", type="kubernetes.io/ssh-auth", stringData={"ssh-privatekey": "k"}),
               secret("d", type="kubernetes.io/dockerconfigjson", stringData={".dockerconfigjson": '{"auths": {}}'})):
        assert (await http.post(SECRETS, ok)).status == 201


async def test_type_is_immutable_and_resource_version_conflicts(http: Http) -> None:
    """A Secret's type cannot change (422 "field is immutable"; an omitted type defaults to Opaque), and a
    stale resourceVersion is a 409."""
    created = (await http.post(SECRETS, secret("s", stringData={"username": "u"}))).body
    changed = await http.put(f"{SECRETS}/s", {**created, "type": "kubernetes.io/basic-auth"})
    assert changed.status == 422 and causes(changed.body) == [("type", "FieldValueInvalid")]
    assert 'type: Invalid value: "kubernetes.io/basic-auth": field is immutable' in changed.body["message"]
    updated = await http.put(f"{SECRETS}/s", {k: v for k, v in created.items() if k != "type"} | {"data": {}})
    assert updated.status == 200 and updated.body["type"] == "Opaque"
    stale = await http.put(f"{SECRETS}/s", created)
    assert stale.status == 409 and stale.reason == "Conflict"


async def test_immutable_secret_rejects_data_changes(http: Http) -> None:
    """Once immutable is true, data (also through stringData) and immutable itself cannot change; metadata can."""
    await http.post(SECRETS, secret("frozen", immutable=True, stringData={"a": "b"}))
    data = await http.patch(f"{SECRETS}/frozen", {"data": {"a": b64("c")}})
    assert data.status == 422 and causes(data.body) == [("data", "FieldValueForbidden")]
    assert "data: Forbidden: field is immutable when `immutable` is set" in data.body["message"]
    strings = await http.patch(f"{SECRETS}/frozen", {"stringData": {"new": "x"}})
    assert causes(strings.body) == [("data", "FieldValueForbidden")]
    thaw = await http.patch(f"{SECRETS}/frozen", {"immutable": False})
    assert causes(thaw.body) == [("immutable", "FieldValueForbidden")]
    labelled = await http.patch(f"{SECRETS}/frozen", [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}],
                                content_type="application/json-patch+json")
    assert labelled.status == 200 and labelled.body["data"] == {"a": b64("b")}
    assert (await http.delete(f"{SECRETS}/frozen")).status == 200


async def test_discovery_and_openapi(http: Http) -> None:
    """secrets is listed in legacy and aggregated /api/v1 discovery with every verb and no short name, and
    the OpenAPI document has the Secret schema with data as base64 bytes."""
    v1 = (await http.get("/api/v1")).body
    entry = next(r for r in v1["resources"] if r["name"] == "secrets")
    assert (entry["kind"], entry["namespaced"], "shortNames" in entry) == ("Secret", True, False)
    assert set(entry["verbs"]) == {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    core = (await http.get("/api", headers={"Accept": accept})).body["items"][0]
    assert "secrets" in {r["resource"] for r in core["versions"][0]["resources"]}
    schema = (await http.get("/openapi/v3/api/v1")).body["components"]["schemas"]["io.k8s.api.core.v1.Secret"]
    assert schema["properties"]["data"]["additionalProperties"] == {"type": "string", "format": "byte"}
    assert {"stringData", "type", "immutable"} <= set(schema["properties"])


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (lengths here stay under 128: one varint byte)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_protobuf_secret_fields() -> None:
    """The protobuf table: data values are raw bytes (base64 in JSON), type, stringData and immutable (a
    pointer: false is kept) decode by upstream's field numbers."""
    entry = _ld(1, b"k") + _ld(2, b"\x00\xffbin")
    body = (_ld(1, _ld(1, b"s")) + _ld(2, entry) + _ld(3, b"kubernetes.io/tls") + _ld(4, _ld(1, b"p") + _ld(2, b"q"))
            + bytes([5 << 3, 0]))
    envelope = MAGIC + _ld(1, _ld(1, b"v1") + _ld(2, b"Secret")) + _ld(2, body)
    assert decode_object(envelope) == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                       "data": {"k": base64.b64encode(b"\x00\xffbin").decode()},
                                       "type": "kubernetes.io/tls", "stringData": {"p": "q"}, "immutable": False}
