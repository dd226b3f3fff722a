"""The sandbox's Kubernetes REST API server (aiohttp, loopback only, plain HTTP, optional bearer token).

It routes the real URL shapes (``/api/v1/namespaces/{ns}/pods/{name}``, ``/apis/apps/v1/deployments``,
``.../deployments/{name}/scale``, the legacy ``/api/v1/watch/...``), negotiates Table and
PartialObjectMetadata output from ``Accept``, streams watches (one JSON event per line, bookmarks,
410 Gone as an ERROR event, ``timeoutSeconds``), and turns every failure into a ``Status`` object. No
input can crash it: unexpected exceptions become a 500 Status and are logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from autoscaler.sandbox import discovery, errors, tables
from autoscaler.sandbox.errors import ApiError
from autoscaler.sandbox.protobuf import ProtobufError, UnsupportedKind, decode_object
from autoscaler.sandbox.registry import Registry, parse_body
from autoscaler.sandbox.resources import ResourceType, group_versions, lookup
from autoscaler.sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from autoscaler.sandbox.store import Change

Obj = dict[str, Any]
log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
TRUE = ("true", "True", "1")
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request size limit
PROTOBUF = "application/vnd.kubernetes.protobuf"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    resp = web.Response(text=_dumps(obj), status=status, content_type=content_type.split(";")[0])
    if ";" in content_type:
        resp.headers["Content-Type"] = content_type
    for w in warnings or []:
        resp.headers.add("Warning", f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"')
    return resp


def _status_response(err: ApiError) -> web.Response:
    return json_response(err.status(), err.code)


class ApiServer:
    """Serves a :class:`~autoscaler.sandbox.registry.Registry` over HTTP."""

    def __init__(self, registry: Registry, *, token: str | None = None, bookmark_interval_s: float = 10.0,
                 watch_timeout_s: float = 1800.0) -> None:
        self.registry = registry
        self.store = registry.store
        self.token = token
        self.bookmark_interval_s = bookmark_interval_s
        self.watch_timeout_s = watch_timeout_s
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if host not in LOOPBACK:
            raise ValueError(f"the sandbox API server listens on loopback only, not {host!r}")
        self._closing.clear()
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=2.0,
                                     handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.host = "127.0.0.1" if host == "localhost" else host
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        self._closing.set()
        self.store.close_subscriptions()  # wakes every watch stream, which then ends
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ middleware
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if self.token is not None and request.path not in PUBLIC_PATHS:
                given = request.headers.get("Authorization", "")
                if not secrets.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                    raise errors.unauthorized()
            resp: web.StreamResponse = await handler(request)
            return resp
        except ApiError as exc:
            return _status_response(exc)
        except web.HTTPException as exc:
            return _status_response(ApiError(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return _status_response(errors.internal(f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ routing
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        segs = [s for s in request.path.split("/") if s]
        accept = request.headers.get("Accept", "")
        resource_path = (segs[:2] == ["api", "v1"] and len(segs) > 2) or (segs[:1] == ["apis"] and len(segs) > 3)
        if not resource_path and request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        if not segs:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
        head = segs[0]
        if head == "version" and len(segs) == 1:
            return json_response(discovery.KUBE_VERSION)
        if head in ("healthz", "livez", "readyz") and len(segs) == 1:
            return web.Response(text="ok")
        if head == "api":
            if len(segs) == 1:
                if discovery.wants_aggregated(accept):
                    return json_response(discovery.aggregated(core=True), content_type=discovery.AGGREGATED_V2)
                return json_response(discovery.api_versions(f"{self.host}:{self.port}"))
            if segs[1] != "v1":
                raise errors.unknown_resource()
            if len(segs) == 2:
                return json_response(discovery.resource_list("", "v1"))
            return await self._resource(request, "", "v1", segs[2:])
        if head == "apis":
            if len(segs) == 1:
                if discovery.wants_aggregated(accept):
                    return json_response(discovery.aggregated(core=False), content_type=discovery.AGGREGATED_V2)
                return json_response(discovery.api_group_list())
            group = segs[1]
            if len(segs) == 2:
                doc = discovery.api_group(group)
                if doc is None:
                    raise errors.unknown_resource()
                return json_response(doc)
            version = segs[2]
            if (group, version) not in group_versions():
                raise errors.unknown_resource()
            if len(segs) == 3:
                return json_response(discovery.resource_list(group, version))
            return await self._resource(request, group, version, segs[3:])
        if head == "openapi" and len(segs) >= 2 and segs[1] == "v3":
            if len(segs) == 2:
                return json_response(discovery.openapi_root())
            rest = segs[2:]
            if rest[:1] == ["api"] and len(rest) == 2 and ("", rest[1]) in group_versions():
                return json_response(discovery.openapi_document("", rest[1]))
            if rest[:1] == ["apis"] and len(rest) == 3 and (rest[1], rest[2]) in group_versions():
                return json_response(discovery.openapi_document(rest[1], rest[2]))
        raise errors.unknown_resource()

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]) -> web.StreamResponse:
        q = request.query
        watch = q.get("watch", "") in TRUE
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = lookup(group, version, rest[2])
            if inner is not None and inner.namespaced:
                ns, rest = rest[1], rest[2:]
        if not rest:
            raise errors.unknown_resource()
        rt = lookup(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise errors.unknown_resource()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in rt.subresources:
            raise errors.unknown_resource()
        if rt.namespaced and ns is None and name:
            raise errors.unknown_resource()
        method = request.method
        verb = {"GET": "watch" if watch else ("get" if name else "list"), "HEAD": "get", "POST": "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}.get(method)
        if verb is None or verb not in rt.verbs or (verb == "create" and name) \
                or (verb in ("update", "patch") and not name):
            raise errors.method_not_allowed()
        if sub and verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed()
        dry_run = "All" in q.getall("dryRun", [])
        validation = q.get("fieldValidation", "Warn")
        ns_value = ns or ""
        if verb in ("list", "watch", "deletecollection"):
            labels = parse_label_selector(q.get("labelSelector"))
            fields = parse_field_selector(q.get("fieldSelector"), rt.supported_fields)
            if verb == "watch":
                return await self._watch(request, rt, ns, name, labels, fields)
            if verb == "deletecollection":
                options = await self._delete_options(request)
                return json_response(self.registry.delete_collection(rt, ns, labels, fields, options,
                                                                     dry_run=dry_run))
            limit = _int_param(q.get("limit"), "limit")
            result = self.registry.list_objects(rt, ns, labels, fields, limit, q.get("continue", ""))
            return self._render_list(request, rt, result)
        if sub == "log":
            if verb != "get":
                raise errors.method_not_allowed()
            return web.Response(text=pod_log(self.registry.get(rt, ns_value, name)), content_type="text/plain")
        if verb == "get":
            obj = self.registry.get(rt, ns_value, name, sub)
            if not sub:
                return self._render_one(request, rt, obj)
            return json_response(obj)
        if verb == "delete":
            options = await self._delete_options(request)
            deleted, code = self.registry.delete(rt, ns_value, name, options, dry_run=dry_run)
            return json_response(deleted, code)
        raw = await request.read()
        if verb == "patch":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            obj, warnings = self.registry.patch(rt, ns_value, name, ctype, raw, subresource=sub, dry_run=dry_run,
                                                field_validation=validation, field_manager=q.get("fieldManager", ""),
                                                default_manager=_default_manager(request),
                                                force=q.get("force", "").lower() == "true")
            return json_response(obj, 200, warnings)
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "*/*",
                         "application/octet-stream", "text/plain", "", PROTOBUF):
            raise errors.unsupported_media_type(ctype, ["application/json", "application/yaml"])
        if ctype == PROTOBUF:
            try:
                body: Any = decode_object(raw)
            except UnsupportedKind as exc:
                raise errors.unsupported_media_type(f"{ctype}: {exc}", ["application/json", "application/yaml"]) \
                    from exc
            except ProtobufError as exc:
                raise errors.bad_request(f"cannot decode the protobuf body: {exc}") from exc
        else:
            body = parse_body(raw, ctype)
        if verb == "create":
            obj, warnings = self.registry.create(rt, ns_value, body, dry_run=dry_run, field_validation=validation,
                                                 field_manager=q.get("fieldManager") or _default_manager(request))
            return json_response(obj, 201, warnings)
        obj, warnings = self.registry.update(rt, ns_value, name, body, subresource=sub, dry_run=dry_run,
                                             field_validation=validation,
                                             field_manager=q.get("fieldManager") or _default_manager(request))
        return json_response(obj, 200, warnings)

    async def _delete_options(self, request: web.Request) -> Obj:
        options: Obj = {}
        raw = await request.read()
        if raw.strip():
            body: Any = parse_body(raw, request.headers.get("Content-Type", "application/json"))
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            options.update(body)
        q = request.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = _int_param(q["gracePeriodSeconds"], "gracePeriodSeconds")
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") in TRUE:
            options["orphanDependents"] = True
        policy = options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                     '"Foreground", "Background", "Orphan"')
        return options

    # ------------------------------------------------------------------ output negotiation
    @staticmethod
    def _wanted_as(request: web.Request) -> str:
        for p in discovery.media_params(request.headers.get("Accept", "")):
            if p.get("g") == "meta.k8s.io" and p.get("as") in ("Table", "PartialObjectMetadata",
                                                               "PartialObjectMetadataList"):
                return str(p["as"])
            if p[""] in ("application/json", "*/*", "application/*") and "as" not in p:
                return ""
        return ""

    def _render_list(self, request: web.Request, rt: ResourceType, result: Obj) -> web.Response:
        wanted = self._wanted_as(request)
        items = result["items"]
        if wanted == "Table":
            include = request.query.get("includeObject", "Metadata")
            return json_response(tables.table(rt, items, include, result["metadata"]))
        if wanted.startswith("PartialObjectMetadata"):
            return json_response({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": result["metadata"],
                                  "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                             "metadata": i["metadata"]} for i in items]})
        return json_response(result)

    def _render_one(self, request: web.Request, rt: ResourceType, obj: Obj) -> web.Response:
        wanted = self._wanted_as(request)
        if wanted == "Table":
            include = request.query.get("includeObject", "Metadata")
            return json_response(tables.table(rt, [obj], include, {"resourceVersion": obj["metadata"].get(
                "resourceVersion", "")}))
        if wanted.startswith("PartialObjectMetadata"):
            return json_response({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": obj["metadata"]})
        return json_response(obj)

    # ------------------------------------------------------------------ watch
    async def _watch(self, request: web.Request, rt: ResourceType, ns: str | None, name: str,
                     labels: LabelSelector, fields: FieldSelector) -> web.StreamResponse:
        q = request.query
        timeout = self.watch_timeout_s
        if q.get("timeoutSeconds"):
            timeout = float(_int_param(q.get("timeoutSeconds"), "timeoutSeconds"))
        bookmarks = q.get("allowWatchBookmarks", "") in TRUE
        send_initial = q.get("sendInitialEvents", "") in TRUE
        rv_param = q.get("resourceVersion", "")
        as_table = self._wanted_as(request) == "Table"
        include = q.get("includeObject", "Metadata")

        def visible(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if ns is not None and meta.get("namespace", "") != ns:
                return False
            if name and meta["name"] != name:
                return False
            return self.registry.matches(rt, obj, labels, fields)

        # Subscribing and reading the history happen without an await in between, so no change is lost
        # or delivered twice.
        sub = self.store.subscribe(rt.storage_key)
        try:
            events: list[tuple[str, Obj]] = []
            error: ApiError | None = None
            if rv_param in ("", "0") or send_initial:
                for obj in self.store.iter(rt.storage_key, ns):
                    if visible(obj):
                        events.append(("ADDED", obj))
            else:
                try:
                    since = int(rv_param)
                except ValueError:
                    raise errors.bad_request(f'resourceVersion: Invalid value: "{rv_param}": must be an integer') \
                        from None
                try:
                    for change in self.store.changes_since(rt.storage_key, since):
                        ev = self._filter(change, visible)
                        if ev:
                            events.append(ev)
                except ApiError as exc:
                    error = exc
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Cache-Control": "no-cache, private"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            first = True

            async def send(etype: str, obj: Obj) -> None:
                nonlocal first
                if etype in ("ERROR", "BOOKMARK"):
                    payload = obj
                elif as_table:
                    payload = tables.table(rt, [self.registry.external(rt, obj)], include,
                                           {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                           with_columns=first)
                    first = False
                else:
                    payload = self.registry.external(rt, obj)
                await resp.write((_dumps({"type": etype, "object": payload}) + "\n").encode())

            def bookmark(annotations: dict[str, str] | None = None) -> Obj:
                meta: Obj = {"resourceVersion": str(self.store.resource_version)}
                if annotations:
                    meta["annotations"] = annotations
                return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

            try:
                if error is not None:
                    await send("ERROR", error.status())
                    return resp
                for etype, obj in events:
                    await send(etype, obj)
                if send_initial and bookmarks:
                    await send("BOOKMARK", bookmark({"k8s.io/initial-events-end": "true"}))
                deadline = time.monotonic() + timeout
                last_bookmark = time.monotonic()
                while not self._closing.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or sub.overflowed or sub.closed:
                        break
                    if request.transport is None or request.transport.is_closing():
                        break
                    live = await sub.get(min(remaining, 0.5))
                    if live is not None:
                        ev = self._filter(live, visible)
                        if ev:
                            await send(*ev)
                    elif bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval_s:
                        # the queue is empty: every change up to the current resourceVersion was sent
                        await send("BOOKMARK", bookmark())
                        last_bookmark = time.monotonic()
                await resp.write_eof()
            except (ConnectionError, RuntimeError):  # the client went away
                pass
            return resp
        finally:
            sub.close()

    @staticmethod
    def _filter(change: Change, visible: Any) -> tuple[str, Obj] | None:
        """Turn a store change into the event this watcher sees, given its selectors: an object that
        leaves the selection is DELETED for it, one that enters it is ADDED."""
        now, before = visible(change.obj), visible(change.old)
        if change.type == "ADDED":
            return ("ADDED", change.obj) if now else None
        if change.type == "DELETED":
            return ("DELETED", change.obj) if before or now else None
        if now and before:
            return ("MODIFIED", change.obj)
        if now:
            return ("ADDED", change.obj)
        if before:
            return ("DELETED", change.obj)
        return None


def _int_param(value: str | None, name: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"{name}: Invalid value: {value!r}: must be an integer") from None


def pod_log(pod: Obj) -> str:
    """What ``kubectl logs`` shows for a simulated pod: its lifecycle as the kubelet stand-in saw it."""
    meta, status = pod["metadata"], pod.get("status") or {}
    lines = [f"{meta.get('creationTimestamp')} sandbox: pod {meta.get('namespace')}/{meta['name']} created"]
    if status.get("startTime"):
        lines.append(f"{status['startTime']} sandbox: scheduled on {(pod.get('spec') or {}).get('nodeName')}")
    for cs in status.get("containerStatuses") or []:
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if started:
            lines.append(f"{started} sandbox: container {cs.get('name')} ({cs.get('image')}) started")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            lines.append(f"{cond.get('lastTransitionTime')} sandbox: ready (simulated model loaded)")
    if meta.get("deletionTimestamp"):
        lines.append(f"{meta['deletionTimestamp']} sandbox: terminating")
    return "\n".join(lines) + "\n"


def _default_manager(request: web.Request) -> str:
    """The field manager of a write that names none: its User-Agent up to the first "/", as kube-apiserver does."""
    return request.headers.get("User-Agent", "").split("/", 1)[0][:128]
