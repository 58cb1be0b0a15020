"""The core/v1 resource types the stand-in serves, and what each one supports.

Only the resources KubeSpawner (and our own spawner) touch are modelled. The
field selectors listed per resource are the ones a real API server accepts for
that resource; any other field label is rejected with 400 like the real one
(``field label not supported: ...``).
"""

from dataclasses import dataclass, field

# field selectors every resource supports
_META_FIELDS = ("metadata.name", "metadata.namespace")


def _get_path(obj, dotted):
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


@dataclass(frozen=True)
class Resource:
    """One REST resource type (the plural in the URL) and its Kind."""

    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    short_names: tuple = ()
    has_status: bool = False
    fields: tuple = ()
    # fields that are not a plain path into the object
    field_getters: dict = field(default_factory=dict)

    @property
    def list_kind(self):
        return self.kind + "List"

    @property
    def selectable_fields(self):
        return _META_FIELDS + self.fields

    def field_value(self, obj, name):
        """The string value of field selector ``name`` for ``obj``."""
        getter = self.field_getters.get(name)
        if getter is not None:
            value = getter(obj)
        else:
            value = _get_path(obj, name)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def api_resource(self):
        """The entry for this resource in the ``/api/v1`` APIResourceList."""
        verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        entry = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        return entry


def _pod_ips(obj):
    ips = (obj.get("status") or {}).get("podIPs") or []
    return ",".join(ip.get("ip", "") for ip in ips)


def _event_source(obj):
    return (obj.get("source") or {}).get("component")


RESOURCES = {
    r.plural: r
    for r in [
        Resource(
            "namespaces",
            "Namespace",
            "namespace",
            namespaced=False,
            short_names=("ns",),
            has_status=True,
            fields=("status.phase",),
        ),
        Resource(
            "pods",
            "Pod",
            "pod",
            short_names=("po",),
            has_status=True,
            fields=(
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ),
            field_getters={"status.podIPs": _pod_ips},
        ),
        Resource(
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            "persistentvolumeclaim",
            short_names=("pvc",),
            has_status=True,
        ),
        Resource(
            "services",
            "Service",
            "service",
            short_names=("svc",),
            has_status=True,
            fields=("spec.clusterIP", "spec.type"),
        ),
        Resource("secrets", "Secret", "secret", fields=("type",)),
        Resource("configmaps", "ConfigMap", "configmap", short_names=("cm",)),
        Resource(
            "events",
            "Event",
            "event",
            short_names=("ev",),
            fields=(
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ),
            field_getters={"source": _event_source},
        ),
    ]
}

KIND_TO_RESOURCE = {r.kind: r for r in RESOURCES.values()}


def get_resource(plural):
    return RESOURCES.get(plural)
