"""Recording core/v1 Events the way kubelet, scheduler and controllers do.

Events are named ``<object name>.<hex nanoseconds>`` like the real ones, so
listing them sorted by name gives them in time order per object. Repeats of
the same (object, reason, message, source) are folded into one event whose
``count`` and ``lastTimestamp`` go up, as client-go's event correlator does.
The scheduler's events are written the way kube-scheduler writes them (through
events.k8s.io/v1): ``eventTime``, ``action`` and ``reportingComponent``, no
``source`` and no ``lastTimestamp``.
KubeSpawner's ``progress()`` shows ``lastTimestamp or eventTime``, the ``type``
and the ``message``.
"""

import logging
import time

from . import errors
from .resources import RESOURCES
from .timeutil import rfc3339, rfc3339_micro

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"

# components that write events.k8s.io/v1 Events (read back through core/v1: no
# source, no first/lastTimestamp, an eventTime, an action, a reportingInstance)
SCHEDULERS = ("default-scheduler",)


def _new_style(name, namespace, involved, type_, reason, message, component, host):
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {k: v for k, v in involved.items() if v is not None},
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": rfc3339_micro(),
        "action": "Binding" if reason == "Scheduled" else "Scheduling",
        "reportingComponent": component,
        "reportingInstance": f"{component}-{host}",
    }


class EventRecorder:
    def __init__(self, registry, host="standin-node"):
        self.registry = registry
        self.resource = RESOURCES["events"]
        self.host = host
        self._seen = {}  # (uid, reason, message, component) -> event name

    def record(self, obj, type_, reason, message, component, field_path=None):
        """Record an event about ``obj`` (a stored object dict)."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid"), reason, message, component, field_path)
        store = self.registry.store
        stamp = rfc3339()
        existing = self._seen.get(key)
        if existing and store.peek(self.resource, namespace, existing) is not None:

            def bump(ev):
                if ev.get("eventTime") and not ev.get("lastTimestamp"):
                    # an events.k8s.io Event repeats as a series
                    series = ev.get("series") or {"count": 1}
                    ev["series"] = {
                        "count": series["count"] + 1,
                        "lastObservedTime": rfc3339_micro(),
                    }
                    return
                ev["count"] = ev.get("count", 1) + 1
                ev["lastTimestamp"] = stamp

            return self.registry.mutate(self.resource, namespace, existing, bump)
        name = f"{meta['name']}.{time.time_ns():x}"
        involved = {
            "kind": obj.get("kind"),
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "uid": meta.get("uid"),
            "apiVersion": obj.get("apiVersion", "v1"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        source = {"component": component}
        if component == "kubelet":
            source["host"] = self.host
        if component in SCHEDULERS:
            event = _new_style(
                name, namespace, involved, type_, reason, message, component, self.host
            )
            return self._create(namespace, key, event)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "reason": reason,
            "message": message,
            "type": type_,
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": None,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": self.host if component == "kubelet" else "",
        }
        return self._create(namespace, key, event)

    def _create(self, namespace, key, event):
        name = event["metadata"]["name"]
        reason, message = event["reason"], event["message"]
        try:
            stored, _ = self.registry.create(self.resource, namespace, event)
        except errors.ApiError as e:
            # e.g. the namespace is being terminated
            log.debug("could not record event %s %s: %s", reason, message, e)
            return None
        except Exception:
            log.exception("could not record event %s %s", reason, message)
            return None
        self._seen[key] = name
        log.debug("event %s/%s %s: %s", namespace, name, reason, message)
        return stored

    def forget(self, uid):
        """Drop correlation state for an object that is gone."""
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]
