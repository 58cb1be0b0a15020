"""The API semantics between HTTP and the store, like the apiserver's registry.

On create: namespace checks, decoding against the schemas, ``generateName``,
server-set metadata (uid, creationTimestamp, generation, resourceVersion),
defaulting, validation, 409 AlreadyExists. On update (PUT/PATCH): 404, the name
in the body must match the URL, optimistic concurrency on
``metadata.resourceVersion`` (409 Conflict), ``status`` only changes through the
``/status`` subresource and the rest only through the main resource, immutable
fields. On delete: preconditions, graceful deletion (``deletionTimestamp`` +
``deletionGracePeriodSeconds``) for pods, finalizers for everything (the
object goes once its last finalizer is removed).

Pods are deleted gracefully only once they are bound to a node; an
unscheduled or finished pod, or a delete with ``gracePeriodSeconds=0``, goes
at once, as in Kubernetes. Controllers in this process (kubelet, provisioner,
...) write through :meth:`Registry.mutate`, which skips validation the way a
component with its own authority would.
"""

import ipaddress
import logging
import random
import uuid
from datetime import timedelta

from . import errors
from .defaults import apply_defaults, fold_string_data
from .patch import apply_patch
from .resources import RESOURCES
from .store import copy_obj
from .timeutil import now, rfc3339

log = logging.getLogger(__name__)

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
    "managedFields",
)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Registry:
    def __init__(self, store, validator, service_cidr="10.96.0.0/16"):
        self.store = store
        self.validator = validator
        self._service_net = ipaddress.ip_network(service_cidr)
        self._service_ips = set()
        self._next_service_ip = 10
        self.namespaces = RESOURCES["namespaces"]
        for name in DEFAULT_NAMESPACES:
            self.create(self.namespaces, None, {"metadata": {"name": name}})

    # ---- helpers ----

    def _allocate_service_ip(self):
        hosts = self._service_net.num_addresses - 2
        for _ in range(hosts):
            offset = self._next_service_ip
            self._next_service_ip = self._next_service_ip % hosts + 1
            ip = str(self._service_net.network_address + offset)
            if ip not in self._service_ips:
                self._service_ips.add(ip)
                return ip
        raise errors.internal_error("failed to allocate a serviceIP: range is full")

    def _require(self, resource, namespace, name):
        obj = self.store.peek(resource, namespace, name)
        if obj is None:
            raise errors.not_found(resource.plural, name)
        return obj

    def check_namespace(self, resource, namespace, name=""):
        """404 if the namespace does not exist (for namespaced resources)."""
        if not resource.namespaced:
            return None
        ns = self.store.peek(self.namespaces, None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        return ns

    def _check_kind(self, resource, body):
        if not isinstance(body, dict):
            raise errors.bad_request(
                f'{resource.kind} in version "v1" cannot be handled as a {resource.kind}:'
                " json: cannot unmarshal into Go value of type struct"
            )
        api_version = body.setdefault("apiVersion", "v1")
        kind = body.setdefault("kind", resource.kind)
        if api_version != "v1":
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected"
                " API version (v1)"
            )
        if kind != resource.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        body.setdefault("metadata", {})
        if not isinstance(body["metadata"], dict):
            raise errors.bad_request("metadata must be an object")

    def _check_body_namespace(self, resource, namespace, body):
        meta = body["metadata"]
        if resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace"
                    " sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)

    # ---- create ----

    def create(self, resource, namespace, body, dry_run=False, field_validation=None):
        """Create an object; returns ``(obj, warnings)``."""
        self._check_kind(resource, body)
        body = copy_obj(body)
        self._check_body_namespace(resource, namespace, body)
        body, warnings, causes = self.validator.decode(resource, body, field_validation)
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        ns_obj = self.check_namespace(resource, namespace, meta.get("name", ""))
        if ns_obj is not None and ns_obj.get("metadata", {}).get("deletionTimestamp"):
            raise errors.forbidden(
                resource.plural,
                meta.get("name", ""),
                f"unable to create new content in namespace {namespace} because it is being"
                " terminated",
            )
        for field in _SERVER_META:
            meta.pop(field, None)
        if resource.plural == "secrets":
            from .validation import decode_secret_data

            decode_secret_data(body)
        apply_defaults(resource.plural, body, self._allocate_service_ip)
        self.validator.validate(resource, body, causes)
        if self.store.peek(resource, namespace, meta["name"]) is not None:
            raise errors.already_exists(resource.plural, meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339()
        meta["generation"] = 1
        if dry_run:
            meta["resourceVersion"] = ""
            return body, warnings
        return self.store.insert(resource, body), warnings

    # ---- update ----

    def replace(
        self,
        resource,
        namespace,
        name,
        body,
        subresource=None,
        dry_run=False,
        field_validation=None,
    ):
        """PUT; returns ``(obj, warnings)``."""
        self._check_kind(resource, body)
        body = copy_obj(body)
        self._check_body_namespace(resource, namespace, body)
        old = self._require(resource, namespace, name)
        if body["metadata"].get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({body['metadata']['name']}) does not match the"
                f" name on the URL ({name})"
            )
        body["metadata"]["name"] = name
        body, warnings, causes = self.validator.decode(resource, body, field_validation)
        want_rv = body["metadata"].get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.stale_update(resource.plural, name)
        new = self._merge_update(resource, old, body, subresource)
        self.validator.validate(resource, new, causes, old=old)
        if dry_run:
            return new, warnings
        return self._commit_update(resource, new), warnings

    def patch(
        self,
        resource,
        namespace,
        name,
        patch,
        content_type,
        subresource=None,
        dry_run=False,
        field_validation=None,
    ):
        """PATCH; returns ``(obj, warnings)``."""
        old = self._require(resource, namespace, name)
        patched = apply_patch(copy_obj(old), patch, content_type)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        meta = patched.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        return self.replace(
            resource,
            namespace,
            name,
            patched,
            subresource=subresource,
            dry_run=dry_run,
            field_validation=field_validation,
        )

    def _merge_update(self, resource, old, body, subresource):
        meta = body["metadata"]
        old_meta = old["metadata"]
        for field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generateName",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if subresource == "status":
            new = copy_obj(old)
            new["status"] = body.get("status") or {}
            return new
        if resource.has_status:
            if "status" in old:
                body["status"] = copy_obj(old["status"])
            else:
                body.pop("status", None)
        if resource.plural == "secrets":
            fold_string_data(body)
        if resource.plural == "pods":
            # re-apply container defaults to the (possibly patched) spec, keep status
            status = body.get("status")
            apply_defaults("pods", body)
            if status is not None:
                body["status"] = status
        if resource.plural == "services":
            spec, old_spec = body.setdefault("spec", {}), old.get("spec") or {}
            for field in ("clusterIP", "clusterIPs"):
                if not spec.get(field) and old_spec.get(field):
                    spec[field] = old_spec[field]
        old_spec = {k: v for k, v in old.items() if k not in ("metadata", "status")}
        new_spec = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        generation = old_meta.get("generation", 1)
        meta["generation"] = generation + 1 if old_spec != new_spec else generation
        return body

    def _commit_update(self, resource, new):
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            if resource.plural == "pods":
                may_go = self._pod_may_go(new)
            elif resource.plural == "namespaces":
                may_go = not (new.get("spec") or {}).get("finalizers")
            else:
                may_go = True
            if may_go:
                removed = self.store.remove(
                    resource, meta.get("namespace"), meta["name"]
                )
                self._release(resource, removed)
                return removed
        return self.store.put(resource, new)

    @staticmethod
    def _pod_may_go(pod):
        """A terminating pod goes when its grace period is over (kubelet confirms with 0)."""
        return pod["metadata"].get("deletionGracePeriodSeconds", 0) == 0

    def mutate(self, resource, namespace, name, fn):
        """Trusted read-modify-write for controllers: ``fn(obj)`` edits a copy.

        Returns the stored object, or None if it no longer exists. If ``fn``
        returns False nothing is written.
        """
        current = self.store.peek(resource, namespace, name)
        if current is None:
            return None
        obj = copy_obj(current)
        if fn(obj) is False:
            return obj
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self._commit_update(resource, obj)

    # ---- delete ----

    def delete(
        self,
        resource,
        namespace,
        name,
        grace_period=None,
        preconditions=None,
        propagation_policy=None,
        dry_run=False,
    ):
        """Delete; returns ``(obj, deleted_now)``."""
        old = self._require(resource, namespace, name)
        meta = old["metadata"]
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise errors.conflict(
                resource.plural,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']},"
                f" UID in object meta: {meta['uid']}",
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise errors.conflict(
                resource.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition:"
                f" {preconditions['resourceVersion']}, ResourceVersion in object meta:"
                f" {meta['resourceVersion']}",
            )
        if propagation_policy not in (None, "", "Orphan", "Background", "Foreground"):
            raise errors.bad_request(
                f'propagationPolicy: Unsupported value: "{propagation_policy}": supported'
                ' values: "Foreground", "Background", "Orphan"'
            )
        grace = self._grace_period(resource, old, grace_period)
        if dry_run:
            return copy_obj(old), grace == 0 and not meta.get("finalizers")
        if resource.plural == "namespaces":
            return self._delete_namespace(old), False
        if grace == 0 and not meta.get("finalizers"):
            obj = self.store.remove(resource, namespace, name)
            self._release(resource, obj)
            return obj, True
        if meta.get("deletionTimestamp"):
            current = meta.get("deletionGracePeriodSeconds", 0)
            if grace >= current:
                return copy_obj(old), False

        def mark(obj):
            obj["metadata"]["deletionTimestamp"] = rfc3339(
                now() + timedelta(seconds=grace)
            )
            obj["metadata"]["deletionGracePeriodSeconds"] = grace

        obj = self.mutate(resource, namespace, name, mark)
        deleted_now = self.store.peek(resource, namespace, name) is None
        if deleted_now:
            self._release(resource, obj)
        return obj, deleted_now

    def _grace_period(self, resource, obj, requested):
        if resource.plural != "pods":
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = spec.get("terminationGracePeriodSeconds", 30)
        return max(0, int(requested))

    def _delete_namespace(self, ns):
        name = ns["metadata"]["name"]

        def mark(obj):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = rfc3339()
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj.setdefault("status", {})["phase"] = "Terminating"

        return self.mutate(self.namespaces, None, name, mark)

    def _release(self, resource, obj):
        if resource.plural == "services":
            for ip in (obj.get("spec") or {}).get("clusterIPs") or []:
                self._service_ips.discard(ip)

    def finish_delete(self, resource, namespace, name):
        """Remove a terminating object now (what the kubelet's final delete does)."""
        obj = self.store.peek(resource, namespace, name)
        if obj is None:
            return None
        if obj["metadata"].get("finalizers"):

            def zero(o):
                o["metadata"]["deletionGracePeriodSeconds"] = 0

            return self.mutate(resource, namespace, name, zero)
        removed = self.store.remove(resource, namespace, name)
        self._release(resource, removed)
        return removed
