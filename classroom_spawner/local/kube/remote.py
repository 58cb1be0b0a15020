"""The process kubelet and the provisioner on a real API server.

The kubelet (:mod:`.kubelet`, :mod:`.podworker`), the provisioner and the
event recorder were written against the stand-in's registry: they read
objects with ``registry.store.peek()``, hear changes through
``registry.store.add_listener()``, and write with ``registry.mutate()``,
``registry.create()`` and ``registry.finish_delete()``. :class:`RemoteRegistry`
offers that same small surface over HTTP, so the same code is a node agent of
a real kube-apiserver:

- reads come from informer caches (list, then watch from its
  resourceVersion; relist on 410), filled for the pods bound to this node and
  for the claims, Secrets and ConfigMaps of every namespace;
- ``mutate`` of a pod edits the cached copy at once and queues a write of its
  status (``PUT …/status``; a 409 re-reads the version and writes again), the
  way the real kubelet's status manager syncs asynchronously;
- ``create`` of an Event posts it in the background, later ``mutate``s of
  it (repeat counts) patch it;
- ``finish_delete`` of a pod is the kubelet's final ``DELETE`` with
  ``gracePeriodSeconds=0`` and the pod's uid as precondition, after its
  pending status writes.
"""

import asyncio
import collections
import copy
import json
import logging
import ssl
from urllib.parse import urlencode

import aiohttp

from .resources import RESOURCES
from .store import ADDED, DELETED, MODIFIED

log = logging.getLogger(__name__)

PODS = RESOURCES["pods"]
PVCS = RESOURCES["persistentvolumeclaims"]
EVENTS = RESOURCES["events"]


class ApiError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body
        super().__init__(f"{status}: {body[:300]!r}")


def _rv(obj):
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return 0


class ApiClient:
    """A small aiohttp client of the real API (bearer token, the cluster's CA)."""

    def __init__(self, url, token, ca_path=None, limit=64):
        self.url = url.rstrip("/")
        self.token = token
        self.ca_path = ca_path
        self.limit = limit
        self.session = None
        self.requests = 0

    async def start(self):
        ctx = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else None
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.token}"},
            connector=aiohttp.TCPConnector(ssl=ctx, limit=self.limit),
        )
        return self

    async def close(self):
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def request(
        self, method, path, body=None, params=None, content_type="application/json"
    ):
        """Return the decoded body; raise :class:`ApiError` for a non-2xx answer."""
        url = self.url + path
        if params:
            url += "?" + urlencode(params)
        data = json.dumps(body) if body is not None else None
        self.requests += 1
        async with self.session.request(
            method,
            url,
            data=data,
            headers={"Content-Type": content_type} if data is not None else None,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise ApiError(resp.status, raw.decode(errors="replace"))
            return json.loads(raw) if raw else None

    async def request_text(self, method, path):
        self.requests += 1
        async with self.session.request(
            method, self.url + path, timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise ApiError(resp.status, text)
            return text

    async def watch(self, path, params):
        """Yield the events of one watch request."""
        url = self.url + path + "?" + urlencode(dict(params, watch="true"))
        self.requests += 1
        async with self.session.get(
            url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        ) as resp:
            if resp.status != 200:
                raise ApiError(
                    resp.status, (await resp.read()).decode(errors="replace")
                )
            async for line in resp.content:
                line = line.strip()
                if line:
                    yield json.loads(line)


class Informer:
    """A list-watch cache of one resource, reporting changes to ``on_event``."""

    def __init__(self, client, resource, params=None, on_event=None, overlay=None):
        self.client = client
        self.resource = resource
        self.path = f"/api/v1/{resource.plural}"
        self.params = dict(params or {})
        self.on_event = on_event
        # edits a watched object before it is cached (our status writes in flight)
        self.overlay = overlay
        self.cache = {}
        self.synced = asyncio.Event()
        self.task = None
        self.watching = False

    def start(self):
        self.task = asyncio.ensure_future(self._run())

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    @staticmethod
    def key(obj):
        meta = obj["metadata"]
        return (meta.get("namespace"), meta["name"])

    def _emit(self, type_, obj, prev):
        if self.on_event is not None:
            try:
                self.on_event(self.resource, type_, obj, prev)
            except Exception:
                log.exception("informer listener failed")

    def apply(self, type_, obj):
        key = self.key(obj)
        prev = self.cache.get(key)
        if type_ == DELETED:
            if prev is None:
                return
            del self.cache[key]
        else:
            if (
                prev is not None
                and prev["metadata"].get("uid") == obj["metadata"].get("uid")
                and _rv(obj) < _rv(prev)
            ):
                return  # an older version than one we wrote ourselves
            if self.overlay is not None:
                self.overlay(obj)
            self.cache[key] = obj
            if prev is None:
                type_ = ADDED
            elif prev["metadata"].get("uid") != obj["metadata"].get("uid"):
                self._emit(DELETED, prev, None)
                prev, type_ = None, ADDED
            else:
                type_ = MODIFIED
        self._emit(type_, obj, prev)

    async def _list(self):
        body = await self.client.request("GET", self.path, params=self.params)
        kind = self.resource.kind
        items = body.get("items") or []
        seen = set()
        for obj in items:
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", "v1")
            seen.add(self.key(obj))
            self.apply(MODIFIED, obj)
        for key in [k for k in self.cache if k not in seen]:
            self.apply(DELETED, self.cache[key])
        return body["metadata"]["resourceVersion"]

    async def _run(self):
        rv = None
        delay = 0.2
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                    self.synced.set()
                params = dict(
                    self.params,
                    resourceVersion=rv,
                    allowWatchBookmarks="true",
                    timeoutSeconds="600",
                )
                self.watching = True
                async for ev in self.client.watch(self.path, params):
                    obj = ev.get("object") or {}
                    if ev["type"] == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] == "BOOKMARK":
                        continue
                    self.apply(ev["type"], obj)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status == 410:
                    rv = None
                else:
                    log.warning("%s watch: %s", self.resource.plural, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
            except Exception as e:
                log.debug("%s watch ended: %r", self.resource.plural, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
            finally:
                self.watching = False


class RemoteStore:
    """``peek`` and listeners, as the stand-in's store offers them."""

    def __init__(self):
        self.informers = {}
        self.local = {}  # plural -> {(ns, name): obj} for objects only we write
        self._listeners = []
        self.watchers = ()

    def add_listener(self, fn):
        self._listeners.append(fn)

    def remove_listener(self, fn):
        if fn in self._listeners:
            self._listeners.remove(fn)

    def notify(self, resource, type_, obj, prev):
        for fn in list(self._listeners):
            try:
                fn(resource, type_, obj, prev)
            except Exception:
                log.exception("store listener %r failed", fn)

    def peek(self, resource, namespace, name):
        informer = self.informers.get(resource.plural)
        if informer is not None:
            return informer.cache.get((namespace, name))
        return self.local.get(resource.plural, {}).get((namespace, name))

    def count(self, resource):
        informer = self.informers.get(resource.plural)
        if informer is not None:
            return len(informer.cache)
        return len(self.local.get(resource.plural, {}))


class _Writes:
    """One object's queued writes, done in order by one task."""

    def __init__(self):
        self.status = None  # the status the kubelet wants the pod to have
        self.status_dirty = False
        self.writing = False
        self.delete_uid = None
        self.task = None


class RemoteRegistry:
    """The registry surface of :mod:`.registry` that the node side uses, over HTTP."""

    remote = True

    def __init__(self, client, node_name):
        self.client = client
        self.node_name = node_name
        self.store = RemoteStore()
        self._writes = {}
        self._event_queues = {}  # involved object's uid -> deque of (ns, name)
        self._event_tasks = {}
        self._events_created = set()
        self.write_errors = 0

    # ---- informers ----

    async def start(self, timeout=60):
        specs = {
            "pods": {"fieldSelector": f"spec.nodeName={self.node_name}"},
            "persistentvolumeclaims": {},
            "secrets": {},
            "configmaps": {},
        }
        for plural, params in specs.items():
            informer = Informer(
                self.client,
                RESOURCES[plural],
                params,
                self._on_informer_event,
                self._overlay_status if plural == "pods" else None,
            )
            self.store.informers[plural] = informer
            informer.start()
        await asyncio.wait_for(
            asyncio.gather(*(i.synced.wait() for i in self.store.informers.values())),
            timeout,
        )

    async def stop(self):
        await asyncio.gather(
            *(i.stop() for i in self.store.informers.values()), return_exceptions=True
        )
        tasks = [w.task for w in self._writes.values() if w.task is not None]
        tasks += list(self._event_tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _overlay_status(self, pod):
        """While a status write is pending, the cache keeps the status being written."""
        meta = pod["metadata"]
        w = self._writes.get(("pods", meta.get("namespace"), meta["name"]))
        if w is not None and w.status is not None and (w.status_dirty or w.writing):
            pod["status"] = copy.deepcopy(w.status)

    def _on_informer_event(self, resource, type_, obj, prev):
        if type_ == DELETED and resource.plural in ("pods", "persistentvolumeclaims"):
            uid = obj["metadata"].get("uid")
            events = self.store.local.get("events", {})
            for key in [k for k, e in events.items() if e["_uid"] == uid]:
                del events[key]
                self._events_created.discard(key)
        self.store.notify(resource, type_, obj, prev)

    @property
    def watching(self):
        return sum(1 for i in self.store.informers.values() if i.watching)

    # ---- the registry surface ----

    def mutate(self, resource, namespace, name, fn):
        key = (resource.plural, namespace, name)
        if resource.plural == "events":
            current = self.store.local.get("events", {}).get((namespace, name))
            if current is None:
                return None
            obj = copy.deepcopy(current)
            if fn(obj) is False:
                return obj
            self.store.local["events"][(namespace, name)] = obj
            self._queue_event(obj["_uid"], namespace, name)
            return obj
        if resource.plural != "pods":
            raise NotImplementedError(
                f"the node agent writes only pods and events, not {resource.plural}"
            )
        informer = self.store.informers["pods"]
        current = informer.cache.get((namespace, name))
        if current is None:
            return None
        obj = copy.deepcopy(current)
        if fn(obj) is False:
            return obj
        informer.cache[(namespace, name)] = obj
        w = self._writes.setdefault(key, _Writes())
        w.status = copy.deepcopy(obj.get("status") or {})
        w.status_dirty = True
        self._queue(key)
        return obj

    def create(self, resource, namespace, body, **kwargs):
        if resource.plural != "events":
            raise NotImplementedError(
                f"the node agent creates only events, not {resource.plural}"
            )
        obj = copy.deepcopy(body)
        obj["_uid"] = (body.get("involvedObject") or {}).get("uid")
        name = body["metadata"]["name"]
        self.store.local.setdefault("events", {})[(namespace, name)] = obj
        self._queue_event(obj["_uid"], namespace, name)
        return body, None

    def finish_delete(self, resource, namespace, name):
        pod = self.store.peek(resource, namespace, name)
        if pod is None:
            return None
        key = (resource.plural, namespace, name)
        w = self._writes.setdefault(key, _Writes())
        w.delete_uid = pod["metadata"]["uid"]
        self._queue(key)
        return pod

    # ---- volumes (for the provisioner) ----

    async def create_volume(self, pvc, name, path, provisioner):
        """A PV for ``pvc`` (pre-bound by ``claimRef``), as external provisioners make."""
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        requests = (spec.get("resources") or {}).get("requests") or {}
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": provisioner},
            },
            "spec": {
                "capacity": {"storage": requests.get("storage", "1Gi")},
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName"),
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            return await self.client.request("POST", "/api/v1/persistentvolumes", pv)
        except ApiError as e:
            if e.status != 409:
                raise
            return None

    async def delete_volume(self, name):
        try:
            await self.client.request("DELETE", f"/api/v1/persistentvolumes/{name}")
        except ApiError as e:
            if e.status != 404:
                log.warning("deleting PersistentVolume %s: %s", name, e)

    # ---- background writes ----

    def _queue_event(self, uid, namespace, name):
        """Events of one object are written in the order they were recorded
        (KubeSpawner shows them in the order the API lists them)."""
        queue = self._event_queues.get(uid)
        if queue is None:
            queue = self._event_queues[uid] = collections.deque()
        if (namespace, name) not in queue:
            queue.append((namespace, name))
        task = self._event_tasks.get(uid)
        if task is None or task.done():
            self._event_tasks[uid] = asyncio.ensure_future(self._flush_events(uid))

    async def _flush_events(self, uid):
        queue = self._event_queues[uid]
        delay = 0.2
        try:
            while queue:
                namespace, name = queue[0]
                try:
                    await self._write_event(namespace, name)
                    queue.popleft()
                    delay = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.write_errors += 1
                    log.warning("writing event %s/%s failed: %s", namespace, name, e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5)
        finally:
            if not queue:
                self._event_queues.pop(uid, None)
                self._event_tasks.pop(uid, None)

    def _queue(self, key):
        w = self._writes.setdefault(key, _Writes())
        if w.task is None or w.task.done():
            w.task = asyncio.ensure_future(self._flush(key, w))

    async def _flush(self, key, w):
        plural, namespace, name = key
        delay = 0.2
        try:
            while True:
                try:
                    done = await self._write_pod(namespace, name, w)
                    if done:
                        break
                    delay = 0.2
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.write_errors += 1
                    log.warning(
                        "writing %s %s/%s failed: %s", plural, namespace, name, e
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5)
        finally:
            if self._writes.get(key) is w and not (w.status_dirty or w.delete_uid):
                self._writes.pop(key, None)

    async def _write_pod(self, namespace, name, w):
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        informer = self.store.informers["pods"]
        if w.status_dirty:
            w.status_dirty = False
            pod = informer.cache.get((namespace, name))
            if pod is None:
                return not w.delete_uid
            body = dict(pod, status=w.status)
            w.writing = True
            try:
                stored = await self.client.request("PUT", path + "/status", body)
            except ApiError as e:
                w.writing = False
                if e.status == 404:
                    return True
                if e.status != 409:
                    w.status_dirty = True
                    raise
                fresh = await self.client.request("GET", path)
                mine = informer.cache.get((namespace, name))
                if mine is None or fresh["metadata"]["uid"] != mine["metadata"]["uid"]:
                    return True
                mine["metadata"]["resourceVersion"] = fresh["metadata"][
                    "resourceVersion"
                ]
                w.status_dirty = True
                return False
            except BaseException:
                w.writing = False
                w.status_dirty = True
                raise
            w.writing = False
            mine = informer.cache.get((namespace, name))
            if (
                mine is not None
                and mine["metadata"]["uid"] == stored["metadata"]["uid"]
            ):
                if w.status_dirty:
                    mine["metadata"]["resourceVersion"] = stored["metadata"][
                        "resourceVersion"
                    ]
                else:
                    stored.setdefault("kind", "Pod")
                    stored.setdefault("apiVersion", "v1")
                    informer.cache[(namespace, name)] = stored
            return False
        if w.delete_uid:
            uid, w.delete_uid = w.delete_uid, None
            try:
                await self.client.request(
                    "DELETE",
                    path,
                    {
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": uid},
                    },
                )
            except ApiError as e:
                if e.status not in (404, 409):
                    w.delete_uid = uid
                    raise
        return True

    async def _write_event(self, namespace, name):
        events = self.store.local.get("events", {})
        while True:
            obj = events.get((namespace, name))
            if obj is None:
                return
            body = {k: v for k, v in obj.items() if k != "_uid"}
            base = f"/api/v1/namespaces/{namespace}/events"
            key = (namespace, name)
            try:
                if key not in self._events_created:
                    await self.client.request("POST", base, body)
                    self._events_created.add(key)
                else:
                    await self.client.request(
                        "PATCH",
                        f"{base}/{name}",
                        {
                            "count": body.get("count"),
                            "lastTimestamp": body["lastTimestamp"],
                        },
                        content_type="application/merge-patch+json",
                    )
            except ApiError as e:
                if e.status not in (403, 404, 409, 422):
                    raise
                # the namespace is terminating or gone, or the event exists already
                if e.status == 422:
                    log.warning("event %s/%s rejected: %s", namespace, name, e)
                self._events_created.add(key)
                return
            if obj is events.get(key):
                return  # else it was bumped while we wrote: write the new count
