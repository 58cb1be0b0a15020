"""The HTTP side: a tornado application speaking the Kubernetes REST API.

Paths (all JSON)::

    /version  /api  /api/v1  /apis  /healthz  /livez  /readyz
    /api/v1/{resource}                              cluster-wide list / watch
    /api/v1/namespaces[/{name}[/status]]
    /api/v1/namespaces/{ns}/{resource}[/{name}[/status|/log]]

``resource`` is one of pods, persistentvolumeclaims, services, secrets,
configmaps, events. Lists accept ``labelSelector``, ``fieldSelector``,
``resourceVersion``, ``resourceVersionMatch``, ``limit`` and ``continue``;
``watch=true`` streams newline-delimited watch events (ADDED, MODIFIED,
DELETED, ERROR, and BOOKMARK with ``allowWatchBookmarks``) until
``timeoutSeconds`` or the client goes away.

The stand-in's own endpoints (same token):

    GET  /_standin/stats    counts for leak checks (processes, watches, dirs, ...)
    GET  /_standin/faults   current fault settings
    PUT  /_standin/faults   change them (JSON); {"outage": 5} opens an outage now
    POST /_standin/compact  forget the watch history (stale watches get 410)
"""

import asyncio
import json
import logging
import os
import random

from tornado import web
from tornado.iostream import StreamClosedError

from . import errors
from .patch import PATCH_TYPES
from .resources import RESOURCES
from .selectors import FieldSelector, LabelSelector
from .store import BOOKMARK, ERROR, decode_continue, encode_continue

log = logging.getLogger(__name__)

# deleting these returns the object; the others return a Status (as in Kubernetes)
_RETURNS_DELETED_OBJECT = ("pods", "persistentvolumeclaims", "services", "namespaces")
_TRUE = ("true", "1")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


class BaseHandler(web.RequestHandler):
    def initialize(self, standin):
        self.standin = standin

    def check_xsrf_cookie(self):
        pass

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache, private")

    def check_auth(self):
        token = self.standin.token
        if not token:
            return
        header = self.request.headers.get("Authorization", "")
        if header != f"Bearer {token}":
            raise errors.unauthorized()

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.ApiError):
            err = exc
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            err = errors.ApiError(
                status_code,
                "BadRequest" if status_code == 400 else "NotFound",
                exc.log_message or self._reason,
            )
        else:
            err = errors.internal_error(str(exc) if exc else self._reason)
        self.set_status(err.code)
        for key, value in err.headers.items():
            self.set_header(key, value)
        self.set_header("Content-Type", "application/json")
        self.finish(_dumps(err.status()))

    def log_exception(self, typ, value, tb):
        if isinstance(value, errors.ApiError):
            return
        super().log_exception(typ, value, tb)

    def send(self, obj, code=200, warnings=()):
        self.set_status(code)
        for w in warnings:
            self.add_header(
                "Warning", f'299 - "{w}"' if '"' not in w else f"299 - {json.dumps(w)}"
            )
        self.finish(_dumps(obj))

    def body_json(self, required=True):
        if not self.request.body:
            if required:
                raise errors.bad_request("the request body is empty")
            return None
        try:
            return json.loads(self.request.body)
        except ValueError as e:
            raise errors.bad_request(
                f"couldn't get version/kind; json parse error: {e}"
            )

    def arg(self, name, default=None):
        return self.get_query_argument(name, default)

    def check_faults(self, is_watch):
        faults = self.standin.faults
        if faults.faults.outage_mode == "refuse" and faults.in_outage():
            # the listening socket is about to close; drop this connection unanswered
            self.request.connection.stream.close()
            raise web.Finish()
        faults.check_request(is_watch)


class DiscoveryHandler(BaseHandler):
    def get(self, what):
        if what not in ("healthz", "livez", "readyz"):
            self.check_auth()
            self.check_faults(False)
        port = self.request.host.rsplit(":", 1)[-1]
        if what == "version":
            major, minor = self.standin.validator.version.split(".")[:2]
            self.send(
                {
                    "major": major,
                    "minor": minor,
                    "gitVersion": f"v{self.standin.validator.version}-standin",
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go-standin",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )
        elif what == "api":
            self.send(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {
                            "clientCIDR": "0.0.0.0/0",
                            "serverAddress": f"127.0.0.1:{port}",
                        }
                    ],
                }
            )
        elif what == "apis":
            self.send({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        else:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("ok")


class ApiHandler(BaseHandler):
    """Everything under ``/api/v1``."""

    _watcher = None

    def on_connection_close(self):
        if self._watcher is not None:
            self._watcher.close()

    def _route(self, path):
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None, None, None, None
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] in RESOURCES:
            ns, plural, rest = parts[1], parts[2], parts[3:]
            resource = RESOURCES[plural]
            if not resource.namespaced:
                raise self._no_route()
        else:
            ns, plural, rest = None, parts[0], parts[1:]
            resource = RESOURCES.get(plural)
            if resource is None:
                raise self._no_route()
        if len(rest) > 2 or (resource.namespaced and ns is None and rest):
            raise self._no_route()
        name = rest[0] if rest else None
        sub = rest[1] if len(rest) > 1 else None
        if sub is not None and sub not in ("status", "log"):
            raise self._no_route()
        if sub == "log" and plural != "pods":
            raise self._no_route()
        return resource, ns, name, sub

    @staticmethod
    def _no_route():
        return errors.ApiError(
            404, "NotFound", "the server could not find the requested resource", {}
        )

    def _begin(self, path, is_watch=False):
        self.check_auth()
        self.check_faults(is_watch)
        self.standin.request_count += 1
        return self._route(path)

    @property
    def registry(self):
        return self.standin.registry

    # ---- GET ----

    async def get(self, path):
        is_watch = self.arg("watch", "false").lower() in _TRUE
        resource, ns, name, sub = self._begin(path, is_watch)
        if resource is None:
            self.send(
                {
                    "kind": "APIResourceList",
                    "groupVersion": "v1",
                    "resources": [r.api_resource() for r in RESOURCES.values()],
                }
            )
            return
        if name is None:
            if is_watch:
                await self._watch(resource, ns)
            else:
                await self._list(resource, ns)
            return
        if is_watch:
            raise errors.method_not_allowed()
        if sub == "log":
            await self._pod_log(ns, name)
            return
        obj = self.registry.store.get(resource, ns, name)
        if obj is None:
            raise errors.not_found(resource.plural, name)
        self.send(obj)

    def _selectors(self, resource):
        return (
            LabelSelector.parse(self.arg("labelSelector")),
            FieldSelector.parse(self.arg("fieldSelector"), resource),
        )

    async def _list(self, resource, ns):
        lsel, fsel = self._selectors(resource)
        store = self.registry.store
        rv = self.arg("resourceVersion") or None
        match = self.arg("resourceVersionMatch") or None
        cont = self.arg("continue") or None
        limit = self.arg("limit")
        try:
            limit = int(limit) if limit else None
        except ValueError:
            raise errors.bad_request(
                f'limit: Invalid value: "{limit}": must be an integer'
            )
        if match and not rv:
            raise errors.ApiError(
                422,
                "Invalid",
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless"
                " resourceVersion is provided",
            )
        if match not in (None, "NotOlderThan", "Exact"):
            raise errors.ApiError(
                422,
                "Invalid",
                f'resourceVersionMatch: Unsupported value: "{match}": supported values:'
                ' "Exact", "NotOlderThan"',
            )
        if cont and rv:
            raise errors.bad_request(
                "specifying resource version is not allowed when using continue"
            )
        at_rv = start_after = None
        if cont:
            at_rv, start_after = decode_continue(cont)
            if at_rv < store._compacted_rv:
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list"
                    " result. You can start a new list without the continue parameter."
                )
        elif rv and rv != "0":
            try:
                want = int(rv)
            except ValueError:
                raise errors.bad_request(
                    f'resourceVersion: Invalid value: "{rv}": must be a number'
                )
            if want > store.resource_version:
                if not await store.wait_for_rv(want, 3.0):
                    raise errors.timeout(
                        f"Too large resource version: {want}, current: {store.resource_version}"
                    )
            if match == "Exact":
                at_rv = want
        elif match == "Exact":
            raise errors.ApiError(
                422,
                "Invalid",
                'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for'
                ' resourceVersion "0"',
            )
        items, list_rv, last_key, remaining = store.list(
            resource, ns, lsel, fsel, at_rv=at_rv, limit=limit, start_after=start_after
        )
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        meta = {"resourceVersion": str(list_rv)}
        if last_key is not None:
            meta["continue"] = encode_continue(list_rv, last_key)
            meta["remainingItemCount"] = remaining
        self.send(
            {
                "kind": resource.list_kind,
                "apiVersion": "v1",
                "metadata": meta,
                "items": items,
            }
        )

    async def _watch(self, resource, ns):
        lsel, fsel = self._selectors(resource)
        store = self.registry.store
        rv = self.arg("resourceVersion") or None
        if rv not in (None, "0"):
            try:
                int(rv)
            except ValueError:
                raise errors.bad_request(
                    f'resourceVersion: Invalid value: "{rv}": must be a number'
                )
        bookmarks = self.arg("allowWatchBookmarks", "false").lower() in _TRUE
        initial = self.arg("sendInitialEvents", "false").lower() in _TRUE
        if initial and not bookmarks:
            raise errors.ApiError(
                422,
                "Invalid",
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting"
                " allowWatchBookmarks=true",
            )
        timeout = self.arg("timeoutSeconds")
        if timeout:
            try:
                timeout = float(timeout)
            except ValueError:
                raise errors.bad_request(f'timeoutSeconds: Invalid value: "{timeout}"')
        else:
            base = self.standin.min_request_timeout
            timeout = base * (1 + random.random())
        start_rv = store.resource_version
        watcher = store.watch(resource, ns, lsel, fsel, rv, send_initial_events=initial)
        initial_count = watcher.pending() if initial else -1
        self._watcher = watcher
        self.standin.open_watches.add(self)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sent = 0
        self.set_status(200)
        try:
            if initial_count == 0:
                self._write_bookmark(resource, start_rv, initial_end=True)
            await self.flush()
            while not watcher.closed or watcher.pending():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = (
                    min(remaining, self.standin.bookmark_interval)
                    if bookmarks
                    else remaining
                )
                try:
                    item = await watcher.next(wait)
                except (asyncio.TimeoutError, TimeoutError):
                    if bookmarks and not watcher.pending() and loop.time() < deadline:
                        self._write_bookmark(resource, store.resource_version)
                        await self.flush()
                    continue
                if item is None:
                    break
                batch = [item]
                while len(batch) < 200 and watcher.pending():
                    nxt = watcher.queue.get_nowait()
                    if nxt is watcher._CLOSED:
                        watcher.queue.put_nowait(nxt)
                        break
                    batch.append(nxt)
                stop = False
                for type_, obj in batch:
                    self.write(_dumps({"type": type_, "object": obj}) + "\n")
                    sent += 1
                    if type_ == ERROR:
                        stop = True
                        break
                    if sent == initial_count:
                        self._write_bookmark(resource, start_rv, initial_end=True)
                await self.flush()
                if stop:
                    break
        except StreamClosedError:
            pass
        finally:
            watcher.close()
            self._watcher = None
            self.standin.open_watches.discard(self)
        if not self._finished and not self.request.connection.stream.closed():
            try:
                self.finish()
            except StreamClosedError:
                pass

    def _write_bookmark(self, resource, rv, initial_end=False):
        meta = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": resource.kind, "apiVersion": "v1", "metadata": meta}
        self.write(_dumps({"type": BOOKMARK, "object": obj}) + "\n")

    def cut(self):
        """Close this watch (the API is going down)."""
        if self._watcher is not None:
            self._watcher.close()

    async def _pod_log(self, ns, name):
        from .resources import RESOURCES as R

        pods = R["pods"]
        pod = self.registry.store.peek(pods, ns, name)
        if pod is None:
            raise errors.not_found("pods", name)
        spec = pod.get("spec") or {}
        names = [
            c["name"]
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        ]
        container = self.arg("container")
        if container is None:
            main = [c["name"] for c in spec.get("containers") or []]
            if len(main) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(main)}]"
                )
            container = main[0]
        if container not in names:
            raise errors.bad_request(
                f"container {container} is not valid for pod {name}"
            )
        worker = self.standin.kubelet.workers.get(pod["metadata"]["uid"])
        c = None
        if worker is not None:
            c = next(
                (
                    x
                    for x in worker.init_containers + worker.main_containers
                    if x.name == container
                ),
                None,
            )
        if c is None or not c.ever_started:
            reason = "ContainerCreating"
            if c is not None:
                reason = (c.state.get("waiting") or {}).get("reason", reason)
            raise errors.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        # the latest run's log; while waiting to restart that is the last one that ran
        count = c.restart_count
        if "waiting" in c.state and count > 0:
            count -= 1
        if self.arg("previous", "false").lower() in _TRUE:
            if count == 0:
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            count -= 1
        path = os.path.join(worker.pod_dir, "containers", container, f"{count}.log")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        tail = self.arg("tailLines")
        if tail:
            data = b"\n".join(data.splitlines()[-int(tail) :]) + (
                b"\n" if data.endswith(b"\n") else b""
            )
        limit = self.arg("limitBytes")
        if limit:
            data = data[: int(limit)]
        self.set_header("Content-Type", "text/plain")
        if self.arg("follow", "false").lower() not in _TRUE:
            self.finish(data)
            return
        self.write(data)
        await self.flush()
        offset = (
            len(data)
            if not tail
            else os.path.getsize(path) if os.path.exists(path) else 0
        )
        try:
            while c.process is not None or c.state.get("running"):
                await asyncio.sleep(0.2)
                try:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        more = f.read()
                except OSError:
                    break
                if more:
                    offset += len(more)
                    self.write(more)
                    await self.flush()
        except StreamClosedError:
            return
        self.finish()

    # ---- writes ----

    def _dry_run(self):
        value = self.arg("dryRun")
        if value not in (None, "", "All"):
            raise errors.bad_request(
                f'dryRun: Unsupported value: "{value}": supported values: "All"'
            )
        return value == "All"

    def post(self, path):
        resource, ns, name, sub = self._begin(path)
        if resource is None or name is not None:
            raise errors.method_not_allowed()
        if resource.namespaced and ns is None:
            raise errors.method_not_allowed()
        obj, warnings = self.registry.create(
            resource,
            ns,
            self.body_json(),
            dry_run=self._dry_run(),
            field_validation=self.arg("fieldValidation"),
        )
        self.send(obj, 201, warnings)

    def put(self, path):
        resource, ns, name, sub = self._begin(path)
        if resource is None or name is None or sub == "log":
            raise errors.method_not_allowed()
        obj, warnings = self.registry.replace(
            resource,
            ns,
            name,
            self.body_json(),
            subresource=sub,
            dry_run=self._dry_run(),
            field_validation=self.arg("fieldValidation"),
        )
        self.send(obj, 200, warnings)

    def patch(self, path):
        resource, ns, name, sub = self._begin(path)
        if resource is None or name is None or sub == "log":
            raise errors.method_not_allowed()
        ctype = (
            (self.request.headers.get("Content-Type") or "")
            .split(";")[0]
            .strip()
            .lower()
        )
        if ctype not in PATCH_TYPES:
            raise errors.unsupported_media_type(ctype)
        obj, warnings = self.registry.patch(
            resource,
            ns,
            name,
            self.body_json(),
            ctype,
            subresource=sub,
            dry_run=self._dry_run(),
            field_validation=self.arg("fieldValidation"),
        )
        self.send(obj, 200, warnings)

    def delete(self, path):
        resource, ns, name, sub = self._begin(path)
        if resource is None or sub is not None:
            raise errors.method_not_allowed()
        options = self.body_json(required=False) or {}
        if not isinstance(options, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        grace = self.arg("gracePeriodSeconds")
        if grace is None:
            grace = options.get("gracePeriodSeconds")
        if grace is not None:
            try:
                grace = int(grace)
            except (TypeError, ValueError):
                raise errors.bad_request(
                    f'gracePeriodSeconds: Invalid value: "{grace}"'
                )
        policy = self.arg("propagationPolicy") or options.get("propagationPolicy")
        dry_run = self._dry_run() or options.get("dryRun") == ["All"]
        if name is None:
            self._delete_collection(resource, ns, grace, policy, dry_run)
            return
        obj, deleted_now = self.registry.delete(
            resource,
            ns,
            name,
            grace_period=grace,
            preconditions=options.get("preconditions"),
            propagation_policy=policy,
            dry_run=dry_run,
        )
        orphan = options.get("orphanDependents")
        code = 202 if (not deleted_now and orphan is False) else 200
        if resource.plural in _RETURNS_DELETED_OBJECT:
            self.send(obj, code)
        else:
            self.send(
                errors.success_body(
                    {
                        "name": name,
                        "kind": resource.plural,
                        "uid": obj["metadata"].get("uid"),
                    }
                ),
                code,
            )

    def _delete_collection(self, resource, ns, grace, policy, dry_run):
        if resource.namespaced and ns is None:
            raise errors.method_not_allowed()
        lsel, fsel = self._selectors(resource)
        items, rv, _, _ = self.registry.store.list(resource, ns, lsel, fsel)
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                obj, _ = self.registry.delete(
                    resource,
                    ns,
                    meta["name"],
                    grace_period=grace,
                    propagation_policy=policy,
                    dry_run=dry_run,
                )
                obj.pop("kind", None)
                obj.pop("apiVersion", None)
                deleted.append(obj)
            except errors.ApiError as e:
                if e.code != 404:
                    raise
        self.send(
            {
                "kind": resource.list_kind,
                "apiVersion": "v1",
                "metadata": {
                    "resourceVersion": str(self.registry.store.resource_version)
                },
                "items": deleted,
            }
        )


class AdminHandler(BaseHandler):
    """``/_standin/...``: inspection and runtime fault control for tests."""

    def get(self, what):
        self.check_auth()
        if what == "stats":
            self.send(self.standin.stats())
        elif what == "faults":
            self.send(self._faults())
        else:
            raise errors.ApiError(404, "NotFound", f"no such endpoint {what}")

    def _faults(self):
        f = self.standin.faults
        out = f.faults.to_dict()
        out["outage_remaining"] = f.outage_remaining()
        out["injected"] = dict(f.injected)
        return out

    def put(self, what):
        self.check_auth()
        if what != "faults":
            raise errors.method_not_allowed()
        try:
            changes = json.loads(self.request.body or b"{}")
            self.standin.faults.update(changes)
        except (ValueError, TypeError) as e:
            raise errors.bad_request(str(e))
        self.send(self._faults())

    def post(self, what):
        self.check_auth()
        if what != "compact":
            raise errors.method_not_allowed()
        self.registry_compact()

    def registry_compact(self):
        store = self.standin.store
        store.compact()
        self.send({"resourceVersion": str(store.resource_version)})


def make_app(standin):
    args = {"standin": standin}
    return web.Application(
        [
            (r"/(version|api|apis|healthz|livez|readyz)/?", DiscoveryHandler, args),
            (r"/api/v1/?(.*)", ApiHandler, args),
            (r"/_standin/(stats|faults|compact)", AdminHandler, args),
        ],
        log_function=_log_request,
    )


def _log_request(handler):
    status = handler.get_status()
    level = logging.DEBUG if status < 500 else logging.WARNING
    log.log(
        level,
        "%s %s %s %.1fms",
        status,
        handler.request.method,
        handler.request.uri,
        1000.0 * handler.request.request_time(),
    )
