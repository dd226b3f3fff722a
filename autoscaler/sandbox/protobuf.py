"""Just enough of the Kubernetes protobuf encoding to read a SelfSubjectAccessReview.

``kubectl auth can-i`` sends its review as ``application/vnd.kubernetes.protobuf`` (the ``k8s\\0``
magic, then a ``runtime.Unknown`` envelope holding the message) while accepting JSON back. Other
protobuf bodies get 415, which makes client-go fall back to JSON.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(buf: bytes) -> dict[int, list[Any]]:
    """Field number -> values (ints for varints, bytes for length-delimited)."""
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise ProtobufError("truncated field")
            value, i = buf[i:i + length], i + length
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _str(f: dict[int, list[Any]], n: int) -> str:
    v = f.get(n)
    return v[-1].decode() if v and isinstance(v[-1], bytes) else ""


def _strings(raw: bytes, names: dict[int, str]) -> dict[str, str]:
    f = fields(raw)
    return {name: _str(f, n) for n, name in names.items() if _str(f, n)}


def decode_self_subject_access_review(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded authorization.k8s.io/v1 SelfSubjectAccessReview."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic number")
    envelope = fields(body[len(MAGIC):])
    type_meta = fields(envelope.get(1, [b""])[-1])
    kind = _str(type_meta, 2)
    if kind and kind != "SelfSubjectAccessReview":
        raise ProtobufError(f"unexpected kind {kind}")
    review = fields(envelope.get(2, [b""])[-1])
    meta = _strings(review.get(1, [b""])[-1], {1: "name", 2: "generateName", 3: "namespace"})
    spec_fields = fields(review.get(2, [b""])[-1])
    spec: dict[str, Any] = {}
    if 1 in spec_fields:
        spec["resourceAttributes"] = _strings(spec_fields[1][-1], {1: "namespace", 2: "verb", 3: "group",
                                                                   4: "version", 5: "resource",
                                                                   6: "subresource", 7: "name"})
    if 2 in spec_fields:
        spec["nonResourceAttributes"] = _strings(spec_fields[2][-1], {1: "path", 2: "verb"})
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": meta,
            "spec": spec}
