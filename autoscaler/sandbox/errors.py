"""Kubernetes API errors as the real server reports them: a ``Status`` object with code, reason and message.

Every failure the sandbox API server returns goes through :class:`ApiError`, so clients (kubectl prints
``Error from server (NotFound): deployments.apps "x" not found``) see the same shapes as against a real
kube-apiserver.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


class ApiError(Exception):
    """An API failure carrying the HTTP code, the Kubernetes ``reason`` and optional ``details``."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        """The ``Status`` object for the response body (or a watch ERROR event)."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(name: str, group: str, kind: str) -> Obj:
    d: Obj = {"name": name, "kind": kind}
    if group:
        d["group"] = group
    return d


def qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(group, plural)} "{name}" not found',
                    _details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(group, plural)} "{name}" already exists',
                    _details(name, group, plural))


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}',
                    _details(name, group, plural))


def apply_conflict(conflicts: list[tuple[str, str]]) -> ApiError:
    """409 Conflict of a server-side apply that would change fields other managers own, as kube-apiserver words it:
    ``conflicts`` are (manager, field path) pairs, e.g. (``"kubectl" with subresource "scale" using apps/v1``,
    ``.spec.replicas``)."""
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": p} for m, p in conflicts]
    if len(conflicts) == 1:
        ((manager, path),) = conflicts
        return ApiError(409, "Conflict", f"Apply failed with 1 conflict: conflict with {manager}: {path}",
                        {"causes": causes})
    lines: list[str] = []
    for manager in sorted({m for m, _ in conflicts}):
        lines.append(f"conflicts with {manager}:")
        lines.extend(f"- {p}" for m, p in conflicts if m == manager)
    return ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines),
                    {"causes": causes})


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid. ``causes`` are (field, reason, message) triples, e.g. ("spec.replicas",
    "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0")."""
    qkind = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{f}: {m}" if f else m for f, _, m in causes)
    details = _details(name, group, kind)
    details["causes"] = [{"reason": r, "message": m, "field": f} for f, r, m in causes]
    if len(causes) > 1:
        text = f"[{text}]"
    return ApiError(422, "Invalid", f'{qkind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unknown_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format ({content_type or 'none'}) - "
                    f"accepted media types include: {', '.join(accepted)}")


def forbidden(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(403, "Forbidden", f'{qualified(group, plural)} "{name}" is forbidden: {why}',
                    _details(name, group, plural))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})
