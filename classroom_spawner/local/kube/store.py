"""The object store: objects by resource, a global resourceVersion, change
history, and watch fan-out.

Like etcd behind a real API server, every write gets the next value of one
cluster-wide counter as its ``metadata.resourceVersion``. A bounded history of
changes is kept so that watches can resume from a resourceVersion; a watch (or
an exact list) from a version older than the retained history is answered with
410 ``Expired`` ("too old resource version"), as the real server does. The
history is bounded by count (``history_size``), not by time (etcd keeps about
five minutes), and :meth:`Store.compact` drops it on demand.

The store knows nothing about defaulting, validation or deletion semantics;
that is :mod:`.registry`. Objects held here are never mutated in place:
writers replace them, so the same dict can be shared by the history and by
watch queues. :meth:`Store.get` hands out copies.
"""

import asyncio
import base64
import collections
import json
import logging

from . import errors

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
ERROR, BOOKMARK = "ERROR", "BOOKMARK"


def copy_obj(obj):
    return json.loads(json.dumps(obj))


def _key(obj):
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class _Change:
    __slots__ = ("rv", "resource", "type", "key", "obj", "prev")

    def __init__(self, rv, resource, type_, key, obj, prev):
        self.rv = rv
        self.resource = resource
        self.type = type_
        self.key = key
        self.obj = obj
        self.prev = prev


class Watcher:
    """One watch: a queue of ``(type, object)`` for matching changes.

    Selector transitions follow Kubernetes: an object that stops matching the
    selectors is reported DELETED, one that starts matching is ADDED.
    """

    _CLOSED = object()

    def __init__(
        self, store, resource, namespace, label_selector, field_selector, max_queue
    ):
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.max_queue = max_queue
        self.queue = asyncio.Queue()
        self.closed = False

    def matches(self, obj):
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        if self.label_selector and not self.label_selector.matches(meta.get("labels")):
            return False
        if self.field_selector and not self.field_selector.matches(self.resource, obj):
            return False
        return True

    def offer(self, type_, obj, prev):
        if self.closed:
            return
        if type_ == ADDED:
            if self.matches(obj):
                self._put(ADDED, obj)
        elif type_ == MODIFIED:
            was, now = self.matches(prev), self.matches(obj)
            if was and now:
                self._put(MODIFIED, obj)
            elif now:
                self._put(ADDED, obj)
            elif was:
                self._put(DELETED, obj)
        elif type_ == DELETED:
            if self.matches(prev if prev is not None else obj):
                self._put(DELETED, obj)

    def _put(self, type_, obj):
        if self.queue.qsize() >= self.max_queue:
            log.warning(
                "watch on %s fell behind by %d events, closing it",
                self.resource.plural,
                self.max_queue,
            )
            self.close()
            return
        self.queue.put_nowait((type_, obj))

    def send_error(self, status):
        self.queue.put_nowait((ERROR, status))
        self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(self._CLOSED)
            self.store._watchers.discard(self)

    def pending(self):
        return self.queue.qsize()

    async def next(self, timeout=None):
        """The next ``(type, obj)``; None when closed; raises TimeoutError."""
        if timeout is not None and timeout <= 0:
            raise TimeoutError()
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if item is self._CLOSED:
            # keep the sentinel for any other reader
            self.queue.put_nowait(item)
            return None
        return item


class Store:
    def __init__(self, history_size=20000, watch_queue_limit=100000):
        self._rv = 0
        self._objects = collections.defaultdict(dict)  # plural -> {(ns, name): obj}
        self._history = collections.deque()
        self.history_size = history_size
        self.watch_queue_limit = watch_queue_limit
        # a watch or exact list may start from any rv >= this
        self._compacted_rv = 0
        self._watchers = set()
        self._listeners = []
        self._rv_waiters = []

    @property
    def resource_version(self):
        return self._rv

    @property
    def watchers(self):
        return set(self._watchers)

    def add_listener(self, fn):
        """Call ``fn(resource, type, obj, prev)`` after every change.

        Listeners run synchronously inside the write; they must only schedule
        work (never write to the store themselves).
        """
        self._listeners.append(fn)

    def remove_listener(self, fn):
        self._listeners.remove(fn)

    # ---- reads ----

    def peek(self, resource, namespace, name):
        """The stored object itself (read only!), or None."""
        return self._objects[resource.plural].get((namespace or "", name))

    def get(self, resource, namespace, name):
        obj = self.peek(resource, namespace, name)
        return copy_obj(obj) if obj is not None else None

    def count(self, resource):
        return len(self._objects[resource.plural])

    def objects(self, resource, namespace=None):
        """Stored objects (read only!), sorted by namespace and name like etcd keys."""
        items = self._objects[resource.plural]
        keys = sorted(items)
        if namespace:
            keys = [k for k in keys if k[0] == namespace]
        return [items[k] for k in keys]

    def _snapshot(self, resource, rv):
        """``{key: obj}`` for ``resource`` as it was at resourceVersion ``rv``."""
        if rv < self._compacted_rv:
            raise errors.expired(
                "The resourceVersion for the provided list is too old."
            )
        state = dict(self._objects[resource.plural])
        for change in reversed(self._history):
            if change.rv <= rv:
                break
            if change.resource.plural != resource.plural:
                continue
            if change.type == ADDED:
                state.pop(change.key, None)
            else:
                state[change.key] = change.prev
        return state

    def list(
        self,
        resource,
        namespace=None,
        label_selector=None,
        field_selector=None,
        at_rv=None,
        limit=None,
        start_after=None,
    ):
        """Matching objects (copies) and the list's resourceVersion.

        ``at_rv``: serve the list as of that resourceVersion (410 if compacted).
        ``limit``/``start_after``: one page; returns ``(items, rv, last_key,
        remaining)`` where ``remaining`` counts matching objects after the page.
        """
        if at_rv is None:
            state = self._objects[resource.plural]
            rv = self._rv
        else:
            state = self._snapshot(resource, at_rv)
            rv = at_rv
        matched = []
        for key in sorted(state):
            if namespace and key[0] != namespace:
                continue
            if start_after is not None and key <= start_after:
                continue
            obj = state[key]
            meta = obj.get("metadata") or {}
            if label_selector and not label_selector.matches(meta.get("labels")):
                continue
            if field_selector and not field_selector.matches(resource, obj):
                continue
            matched.append((key, obj))
        remaining = 0
        if limit and len(matched) > limit:
            remaining = len(matched) - limit
            matched = matched[:limit]
        last_key = matched[-1][0] if (matched and remaining) else None
        return [copy_obj(o) for _, o in matched], rv, last_key, remaining

    # ---- writes ----

    def _next_rv(self):
        self._rv += 1
        return self._rv

    def _record(self, resource, type_, key, obj, prev):
        change = _Change(self._rv, resource, type_, key, obj, prev)
        self._history.append(change)
        while len(self._history) > self.history_size:
            dropped = self._history.popleft()
            self._compacted_rv = dropped.rv
        for w in list(self._watchers):
            if w.resource.plural == resource.plural:
                w.offer(type_, obj, prev)
        for fn in list(self._listeners):
            try:
                fn(resource, type_, obj, prev)
            except Exception:
                log.exception("store listener %r failed", fn)
        if self._rv_waiters:
            waiters, self._rv_waiters = self._rv_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def insert(self, resource, obj):
        """Store a new object; sets its resourceVersion. Returns a copy."""
        obj = copy_obj(obj)
        key = _key(obj)
        bucket = self._objects[resource.plural]
        if key in bucket:
            raise errors.already_exists(resource.plural, key[1])
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        bucket[key] = obj
        self._record(resource, ADDED, key, obj, None)
        return copy_obj(obj)

    def put(self, resource, obj):
        """Replace an existing object; sets its resourceVersion. Returns a copy."""
        obj = copy_obj(obj)
        key = _key(obj)
        bucket = self._objects[resource.plural]
        prev = bucket.get(key)
        if prev is None:
            raise errors.not_found(resource.plural, key[1])
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        bucket[key] = obj
        self._record(resource, MODIFIED, key, obj, prev)
        return copy_obj(obj)

    def remove(self, resource, namespace, name):
        """Delete an object. The DELETED event carries a new resourceVersion."""
        key = (namespace or "", name)
        bucket = self._objects[resource.plural]
        prev = bucket.pop(key, None)
        if prev is None:
            raise errors.not_found(resource.plural, name)
        obj = copy_obj(prev)
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(resource, DELETED, key, obj, prev)
        return copy_obj(obj)

    def compact(self):
        """Forget all history: watches and exact lists from older versions get 410."""
        self._history.clear()
        self._compacted_rv = self._rv

    async def wait_for_rv(self, rv, timeout):
        """Wait until the store has reached ``rv``; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._rv < rv:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            fut = loop.create_future()
            self._rv_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                return False
        return True

    # ---- watches ----

    def watch(
        self,
        resource,
        namespace=None,
        label_selector=None,
        field_selector=None,
        resource_version=None,
        send_initial_events=False,
    ):
        """Open a watch (see the module docstring for resourceVersion rules).

        - no resourceVersion, ``"0"``, or ``send_initial_events``: synthetic
          ADDED events for the current objects, then live changes;
        - a resourceVersion ``N``: every change after ``N`` from the history
          (an ERROR event with a 410 Expired Status if ``N`` is too old).
        """
        w = Watcher(
            self,
            resource,
            namespace,
            label_selector,
            field_selector,
            self.watch_queue_limit,
        )
        if resource_version in (None, "", "0") or send_initial_events:
            for obj in self.objects(resource, namespace):
                if w.matches(obj):
                    w._put(ADDED, obj)
        else:
            rv = int(resource_version)
            if rv < self._compacted_rv:
                w.send_error(
                    errors.expired(
                        f"too old resource version: {rv} ({self._compacted_rv})"
                    ).status()
                )
                return w
            for change in self._history:
                if change.rv > rv and change.resource.plural == resource.plural:
                    w.offer(change.type, change.obj, change.prev)
        self._watchers.add(w)
        return w


def encode_continue(rv, key):
    raw = json.dumps(
        {"v": "meta.k8s.io/v1", "rv": rv, "start": f"{key[0]}/{key[1]}\x00"}
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token):
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        ns, name = data["start"].rstrip("\x00").split("/", 1)
        return int(data["rv"]), (ns, name)
    except Exception:
        raise errors.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )
