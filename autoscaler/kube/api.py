"""Raw-JSON access to the Kubernetes API through kubernetes-asyncio's configured ApiClient.

kubernetes-asyncio handles kubeconfig / in-cluster configuration, TLS and bearer tokens; we ask it
for undeserialised responses (``_preload_content=False``) and parse JSON ourselves. Typed model
deserialisation costs far more than the decision itself at 10,000 Deployments, and dicts are all the
controller needs. Every call is counted by verb so the loop can report API calls and writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient

from autoscaler import CommandError, __version__

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FIELD_MANAGER = "inference-autoscaler"
"""The ``fieldManager`` of every write (``managedFields`` name the controller as the owner of what it wrote, e.g.
``spec.replicas`` through ``/scale``); its User-Agent says the same, with the version."""


class KubeError(Exception):
    """A non-2xx answer (with the server's Status reason/message) or a transport failure (status 0)."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        super().__init__(f"{status} {reason}: {message}")

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410


class KubeconfigError(CommandError):
    """No usable cluster configuration: the kubeconfig is missing or unreadable, or names no such context."""


def _any_file_exists(paths: list[str]) -> bool:
    return any(os.path.exists(os.path.expanduser(p)) for p in paths)


async def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """An ApiClient from ``kubeconfig`` (or $KUBECONFIG / ~/.kube/config), else the in-cluster config."""
    cfg = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return _with_user_agent(ApiClient(configuration=cfg))
        except config.ConfigException:
            pass
    paths = [kubeconfig] if kubeconfig else [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = paths or ["~/.kube/config"]
    where = os.pathsep.join(paths)
    if not await asyncio.to_thread(_any_file_exists, paths):
        hint = "" if kubeconfig else " (and not running in a cluster; pass --kubeconfig)"
        raise KubeconfigError(f"kubeconfig {where}: no such file{hint}")
    try:
        await config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except (config.ConfigException, OSError, ValueError, TypeError, AttributeError) as exc:
        raise KubeconfigError(f"kubeconfig {where}: {exc}") from None
    return _with_user_agent(ApiClient(configuration=cfg))


def _with_user_agent(api: ApiClient) -> ApiClient:
    api.user_agent = f"{FIELD_MANAGER}/{__version__}"
    return api


class KubeApi:
    """Minimal async REST access returning dicts; counts calls by verb."""

    def __init__(self, api_client: ApiClient, *, timeout_s: float = 10.0) -> None:
        self.api_client = api_client
        self.timeout_s = timeout_s
        self.calls: Counter[str] = Counter()

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None,
                      timeout_s: float = 10.0) -> KubeApi:
        return cls(await load_api_client(kubeconfig, context), timeout_s=timeout_s)

    async def close(self) -> None:
        await self.api_client.close()

    @property
    def writes(self) -> int:
        return sum(n for verb, n in self.calls.items() if verb in WRITE_VERBS)

    async def _raw(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                   body: Any = None, content_type: str = "application/json",
                   timeout_s: float | None = None) -> Any:
        self.calls[method] += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()
                  if v is not None]
        if method in ("POST", "PUT", "PATCH") and not any(k == "fieldManager" for k, _ in params):
            params.append(("fieldManager", FIELD_MANAGER))
        try:
            return await self.api_client.call_api(
                path, method, query_params=params, header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except (TimeoutError, OSError) as exc:
            raise KubeError(0, "ConnectionError", f"{method} {path}: {exc or type(exc).__name__}") from exc
        except Exception as exc:  # aiohttp.ClientError and friends
            raise KubeError(0, "ConnectionError", f"{method} {path}: {exc}") from exc

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout_s: float | None = None) -> dict[str, Any]:
        resp = await self._raw(method, path, query=query, body=body, content_type=content_type,
                               timeout_s=timeout_s)
        try:
            data = await resp.read()
        except Exception as exc:
            raise KubeError(0, "ConnectionError", f"{method} {path}: reading the body failed: {exc}") from exc
        finally:
            resp.release()
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"message": data[:200].decode("utf-8", "replace")}
        if not 200 <= resp.status <= 299:
            raise KubeError(resp.status, str(doc.get("reason", "")) if isinstance(doc, dict) else "",
                            str(doc.get("message", "")) if isinstance(doc, dict) else str(doc), doc)
        if not isinstance(doc, dict):
            raise KubeError(resp.status, "BadResponse", f"{method} {path}: expected a JSON object")
        return doc

    async def get(self, path: str, **query: Any) -> dict[str, Any]:
        return await self.request("GET", path, query=query)

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def put(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self.request("DELETE", path)

    async def watch(self, path: str, *, resource_version: str, timeout_s: int = 300,
                    **query: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events (``{"type": ..., "object": ...}``) until the server ends the stream.

        A non-2xx answer raises :class:`KubeError`; an ERROR event is yielded as is (410 Gone comes
        that way on most servers), and the caller decides to relist.
        """
        q = dict(query, watch="true", resourceVersion=resource_version, timeoutSeconds=timeout_s,
                 allowWatchBookmarks="true")
        resp = await self._raw("GET", path, query=q, timeout_s=timeout_s + 30)
        try:
            if not 200 <= resp.status <= 299:
                body = await resp.read()
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {}
                raise KubeError(resp.status, str(doc.get("reason", "")), str(doc.get("message", "")), doc)
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("watch %s: undecodable line dropped (%d bytes)", path, len(line))
                    continue
                if isinstance(event, dict):
                    yield event
        finally:
            resp.release()
