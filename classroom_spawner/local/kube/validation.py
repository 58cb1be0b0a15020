"""Validation of written objects, in the two steps a real API server takes.

1. *Decoding* against the official OpenAPI schemas shipped by
   ``kubernetes-validate`` (the newest Kubernetes version it has). A value of
   the wrong JSON type is a decoding error: 400 BadRequest, as the real server
   answers. Unknown fields follow the request's ``fieldValidation``:
   ``Strict`` rejects them with 400 (``strict decoding error: unknown field
   "spec.containers[0].bogus"``); ``Warn`` drops them and returns a warning;
   ``Ignore`` drops them silently. The stand-in's default is ``Strict`` (a real
   server defaults to ``Warn``) so that typos in our manifests surface in tests;
   see :class:`Validator`.
2. *Validation* (422 Invalid, with ``details.causes``): the schema's required
   fields and enums, plus the checks a real server does in code that the
   schemas cannot express (name formats, label syntax, unique container names,
   volume mounts that name a volume, storage requests, immutable fields on
   update, ...). Only the checks that matter for the resources we serve are
   implemented.
"""

import base64
import binascii
import functools
import json
import logging
import re
from importlib import resources as importlib_resources

import jsonschema
import referencing
import referencing.jsonschema

from . import errors
from .selectors import label_key_error, label_value_error

log = logging.getLogger(__name__)

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_QUANTITY_RE = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?\d+))?$"
)

DNS_LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters"
    " or '-', and must start and end with an alphanumeric character (e.g. 'my-name', "
    " or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS_1035_HELP = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-',"
    " start with an alphabetic character, and end with an alphanumeric character"
    " (e.g. 'my-name',  or 'abc-123', regex used for validation is"
    " '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
DNS_SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"
    " characters, '-' or '.', and must start and end with an alphanumeric character"
    " (e.g. 'example.com', regex used for validation is"
    " '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)

FIELD_VALIDATION = ("Strict", "Warn", "Ignore")

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
NOT_FOUND = "FieldValueNotFound"


def field_path(parts):
    """``['spec', 'containers', 0, 'name']`` -> ``spec.containers[0].name``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _quote(value):
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value)


def dns_label_error(name):
    if len(name) > 63:
        return "must be no more than 63 characters"
    if not _DNS_LABEL_RE.match(name):
        return DNS_LABEL_HELP
    return None


def dns_1035_error(name):
    if len(name) > 63:
        return "must be no more than 63 characters"
    if not _DNS_1035_RE.match(name):
        return DNS_1035_HELP
    return None


def dns_subdomain_error(name):
    if len(name) > 253:
        return "must be no more than 253 characters"
    if not _DNS_SUBDOMAIN_RE.match(name):
        return DNS_SUBDOMAIN_HELP
    return None


def parse_quantity(text):
    """A Kubernetes quantity (``10Gi``, ``500m``, ``1e3``) as a float, or None."""
    if not isinstance(text, (str, int, float)):
        return None
    text = str(text)
    if not _QUANTITY_RE.match(text):
        return None
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
        "n": 1e-9,
        "u": 1e-6,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "E": 1e18,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


class _Schemas:
    """Schemas of one Kubernetes version, loaded once and shared."""

    def __init__(self, version):
        self.version = version
        base = importlib_resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema"
        )
        self.dir = base.joinpath(f"v{version}-local-strict")
        defs = json.loads(self.dir.joinpath("_definitions.json").read_text())
        self.registry = (
            referencing.Resource.from_contents(
                defs, default_specification=referencing.jsonschema.DRAFT202012
            )
            @ referencing.Registry()
        )
        self._validators = {}

    def validator(self, kind):
        if kind not in self._validators:
            schema = json.loads(
                self.dir.joinpath(f"{kind.lower()}-v1.json").read_text()
            )
            self._validators[kind] = jsonschema.Draft202012Validator(
                schema, registry=self.registry
            )
        return self._validators[kind]


@functools.cache
def _schemas(version):
    return _Schemas(version)


def schema_version():
    """The newest Kubernetes version ``kubernetes-validate`` ships schemas for."""
    import kubernetes_validate

    return kubernetes_validate.latest_version()


def _error_parts(err):
    return list(err.absolute_path)


def _prune(obj, parts, names):
    cur = obj
    for p in parts:
        cur = cur[p]
    for n in names:
        cur.pop(n, None)


class Validator:
    """Decodes and validates objects written through the API.

    ``field_validation`` is the default for requests that do not pass
    ``fieldValidation`` themselves (see the module docstring).
    """

    def __init__(self, version=None, field_validation="Strict"):
        self.version = version or schema_version()
        if field_validation not in FIELD_VALIDATION:
            raise ValueError(
                f"field_validation must be one of {FIELD_VALIDATION}, not {field_validation!r}"
            )
        self.field_validation = field_validation

    @property
    def schemas(self):
        return _schemas(self.version)

    def decode(self, resource, obj, field_validation=None):
        """Schema pass. Raises 400 on decoding errors; returns (obj, warnings, causes).

        ``causes`` are the 422 problems the schema found (required, enum, ...);
        :meth:`validate` reports them together with the semantic checks.
        """
        mode = field_validation or self.field_validation
        if mode not in FIELD_VALIDATION:
            raise errors.bad_request(
                f'fieldValidation: Unsupported value: "{mode}": supported values:'
                ' "Ignore", "Strict", "Warn"'
            )
        validator = self.schemas.validator(resource.kind)
        warnings, causes = [], []
        for _ in range(20):  # each pass prunes one level of unknown fields
            unknown, types, other = [], [], []
            for err in validator.iter_errors(obj):
                if err.validator == "additionalProperties":
                    unknown.append(err)
                elif err.validator == "type":
                    types.append(err)
                else:
                    other.append(err)
            if types:
                err = types[0]
                path = field_path(_error_parts(err))
                want = err.validator_value
                want = want[0] if isinstance(want, list) else want
                raise errors.bad_request(
                    f'{resource.kind} in version "v1" cannot be handled as a'
                    f" {resource.kind}: json: cannot unmarshal"
                    f" {type(err.instance).__name__} into Go struct field"
                    f" {path} of type {want}"
                )
            if not unknown:
                break
            names = []
            for err in unknown:
                parts = _error_parts(err)
                extra = sorted(
                    set(err.instance) - set(err.schema.get("properties") or {})
                )
                for n in extra:
                    names.append(field_path(parts + [n]))
                if mode != "Strict":
                    _prune(obj, parts, extra)
            if mode == "Strict":
                raise errors.bad_request(
                    "strict decoding error: "
                    + ", ".join(f'unknown field "{n}"' for n in names)
                )
            if mode == "Warn":
                warnings.extend(f'unknown field "{n}"' for n in names)
        for err in other:
            causes.append(self._cause(err))
        return obj, warnings, causes

    @staticmethod
    def _cause(err):
        parts = _error_parts(err)
        if err.validator == "required":
            missing = re.match(r"'([^']+)' is a required property", err.message)
            name = missing.group(1) if missing else "?"
            return (REQUIRED, field_path(parts + [name]), "Required value")
        if err.validator == "enum":
            supported = ", ".join(
                _quote(v) for v in err.validator_value if v is not None
            )
            return (
                NOT_SUPPORTED,
                field_path(parts),
                f"Unsupported value: {_quote(err.instance)}: supported values: {supported}",
            )
        return (
            INVALID,
            field_path(parts),
            f"Invalid value: {_quote(err.instance)}: {err.message}",
        )

    # ---- 422 checks on the defaulted object ----

    def validate(self, resource, obj, schema_causes=(), old=None):
        causes = list(schema_causes)
        causes += self._check_meta(resource, obj)
        check = getattr(self, f"_check_{resource.plural}", None)
        if check:
            causes += check(obj)
        if old is not None:
            upd = getattr(self, f"_check_update_{resource.plural}", None)
            if upd:
                causes += upd(old, obj)
        if causes:
            unique = []
            for cause in causes:
                if cause not in unique:
                    unique.append(cause)
            causes = unique
            name = (obj.get("metadata") or {}).get("name", "")
            raise errors.invalid(resource.kind, name, causes)

    def _check_meta(self, resource, obj):
        causes = []
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            causes.append(
                (
                    REQUIRED,
                    "metadata.name",
                    "Required value: name or generateName is required",
                )
            )
        else:
            if resource.plural == "namespaces":
                why = dns_label_error(name)
            elif resource.plural == "services":
                why = dns_1035_error(name)
            else:
                why = dns_subdomain_error(name)
            if why:
                causes.append(
                    (INVALID, "metadata.name", f"Invalid value: {_quote(name)}: {why}")
                )
        for key, value in (meta.get("labels") or {}).items():
            why = label_key_error(key)
            if why:
                causes.append(
                    (INVALID, "metadata.labels", f"Invalid value: {_quote(key)}: {why}")
                )
            why = label_value_error(value if isinstance(value, str) else str(value))
            if why:
                causes.append(
                    (
                        INVALID,
                        "metadata.labels",
                        f"Invalid value: {_quote(value)}: {why}",
                    )
                )
        for key in meta.get("annotations") or {}:
            why = label_key_error(key.lower())
            if why:
                causes.append(
                    (
                        INVALID,
                        "metadata.annotations",
                        f"Invalid value: {_quote(key)}: {why}",
                    )
                )
        return causes

    def _check_pods(self, pod):
        causes = []
        spec = pod.get("spec") or {}
        volumes = spec.get("volumes") or []
        vol_names = set()
        for i, vol in enumerate(volumes):
            vname = vol.get("name", "")
            path = f"spec.volumes[{i}].name"
            why = dns_label_error(vname) if vname else None
            if not vname:
                causes.append((REQUIRED, path, "Required value"))
            elif why:
                causes.append((INVALID, path, f"Invalid value: {_quote(vname)}: {why}"))
            elif vname in vol_names:
                causes.append((DUPLICATE, path, f"Duplicate value: {_quote(vname)}"))
            vol_names.add(vname)
            pvc = vol.get("persistentVolumeClaim")
            if pvc is not None and not pvc.get("claimName"):
                causes.append(
                    (
                        REQUIRED,
                        f"spec.volumes[{i}].persistentVolumeClaim.claimName",
                        "Required value",
                    )
                )
        if not spec.get("containers"):
            causes.append((REQUIRED, "spec.containers", "Required value"))
        seen = set()
        for field in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(field) or []):
                causes += self._check_container(
                    f"spec.{field}[{i}]", c, seen, vol_names
                )
        policy = spec.get("restartPolicy")
        if policy not in ("Always", "OnFailure", "Never"):
            causes.append(
                (
                    NOT_SUPPORTED,
                    "spec.restartPolicy",
                    f'Unsupported value: {_quote(policy)}: supported values: "Always", "OnFailure", "Never"',
                )
            )
        return causes

    def _check_container(self, path, c, seen, vol_names):
        causes = []
        name = c.get("name", "")
        if not name:
            causes.append((REQUIRED, f"{path}.name", "Required value"))
        else:
            why = dns_label_error(name)
            if why:
                causes.append(
                    (INVALID, f"{path}.name", f"Invalid value: {_quote(name)}: {why}")
                )
            elif name in seen:
                causes.append(
                    (DUPLICATE, f"{path}.name", f"Duplicate value: {_quote(name)}")
                )
            seen.add(name)
        if not c.get("image"):
            causes.append((REQUIRED, f"{path}.image", "Required value"))
        policy = c.get("imagePullPolicy")
        if policy not in ("Always", "IfNotPresent", "Never"):
            causes.append(
                (
                    NOT_SUPPORTED,
                    f"{path}.imagePullPolicy",
                    f'Unsupported value: {_quote(policy)}: supported values: "Always", "IfNotPresent", "Never"',
                )
            )
        for j, port in enumerate(c.get("ports") or []):
            number = port.get("containerPort")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append(
                    (
                        INVALID,
                        f"{path}.ports[{j}].containerPort",
                        f"Invalid value: {_quote(number)}: must be between 1 and 65535, inclusive",
                    )
                )
        mount_paths = set()
        for j, m in enumerate(c.get("volumeMounts") or []):
            mname = m.get("name", "")
            if not mname:
                causes.append(
                    (REQUIRED, f"{path}.volumeMounts[{j}].name", "Required value")
                )
            elif mname not in vol_names:
                causes.append(
                    (
                        NOT_FOUND,
                        f"{path}.volumeMounts[{j}].name",
                        f"Not found: {_quote(mname)}",
                    )
                )
            mpath = m.get("mountPath", "")
            if not mpath:
                causes.append(
                    (REQUIRED, f"{path}.volumeMounts[{j}].mountPath", "Required value")
                )
            elif mpath in mount_paths:
                causes.append(
                    (
                        INVALID,
                        f"{path}.volumeMounts[{j}].mountPath",
                        f"Invalid value: {_quote(mpath)}: must be unique",
                    )
                )
            mount_paths.add(mpath)
            sub = m.get("subPath") or ""
            if sub.startswith("/") or ".." in sub.split("/"):
                causes.append(
                    (
                        INVALID,
                        f"{path}.volumeMounts[{j}].subPath",
                        f"Invalid value: {_quote(sub)}: must be a relative path without '..'",
                    )
                )
        for j, env in enumerate(c.get("env") or []):
            if not env.get("name"):
                causes.append((REQUIRED, f"{path}.env[{j}].name", "Required value"))
        return causes

    def _check_persistentvolumeclaims(self, pvc):
        causes = []
        spec = pvc.get("spec") or {}
        modes = spec.get("accessModes") or []
        if not modes:
            causes.append(
                (
                    REQUIRED,
                    "spec.accessModes",
                    "Required value: at least 1 access mode is required",
                )
            )
        supported = (
            "ReadOnlyMany",
            "ReadWriteMany",
            "ReadWriteOnce",
            "ReadWriteOncePod",
        )
        for mode in modes:
            if mode not in supported:
                causes.append(
                    (
                        NOT_SUPPORTED,
                        "spec.accessModes",
                        f"Unsupported value: {_quote(mode)}: supported values: "
                        + ", ".join(_quote(s) for s in supported),
                    )
                )
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if storage is None:
            causes.append((REQUIRED, "spec.resources[storage]", "Required value"))
        else:
            amount = parse_quantity(storage)
            if amount is None:
                causes.append(
                    (
                        INVALID,
                        "spec.resources.requests[storage]",
                        f"Invalid value: {_quote(storage)}: quantities must match the regular"
                        " expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )
                )
            elif amount <= 0:
                causes.append(
                    (
                        INVALID,
                        "spec.resources[storage]",
                        f"Invalid value: {_quote(storage)}: must be greater than zero",
                    )
                )
        return causes

    def _check_services(self, svc):
        causes = []
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if (
            not ports
            and spec.get("clusterIP") != "None"
            and spec.get("type") != "ExternalName"
        ):
            causes.append((REQUIRED, "spec.ports", "Required value"))
        names = set()
        for i, port in enumerate(ports):
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append(
                    (
                        INVALID,
                        f"spec.ports[{i}].port",
                        f"Invalid value: {_quote(number)}: must be between 1 and 65535, inclusive",
                    )
                )
            pname = port.get("name", "")
            if len(ports) > 1 and not pname:
                causes.append((REQUIRED, f"spec.ports[{i}].name", "Required value"))
            elif pname in names:
                causes.append(
                    (
                        DUPLICATE,
                        f"spec.ports[{i}].name",
                        f"Duplicate value: {_quote(pname)}",
                    )
                )
            names.add(pname)
        svc_type = spec.get("type")
        if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(
                (
                    NOT_SUPPORTED,
                    "spec.type",
                    f'Unsupported value: {_quote(svc_type)}: supported values: "ClusterIP",'
                    ' "ExternalName", "LoadBalancer", "NodePort"',
                )
            )
        return causes

    def _check_data_keys(self, obj, field):
        causes = []
        for key in obj.get(field) or {}:
            if not _CONFIG_KEY_RE.match(key):
                causes.append(
                    (
                        INVALID,
                        f"{field}[{key}]",
                        f"Invalid value: {_quote(key)}: a valid config key must consist of"
                        " alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or"
                        " 'KEY_NAME',  or 'key-name', regex used for validation is"
                        " '[-._a-zA-Z0-9]+')",
                    )
                )
        return causes

    def _check_secrets(self, secret):
        return self._check_data_keys(secret, "data")

    def _check_configmaps(self, cm):
        return self._check_data_keys(cm, "data") + self._check_data_keys(
            cm, "binaryData"
        )

    def _check_events(self, event):
        causes = []
        ns = (event.get("metadata") or {}).get("namespace")
        inv_ns = (event.get("involvedObject") or {}).get("namespace")
        if inv_ns and ns and inv_ns != ns:
            causes.append(
                (
                    INVALID,
                    "involvedObject.namespace",
                    f"Invalid value: {_quote(inv_ns)}: does not match event.namespace",
                )
            )
        return causes

    # ---- update checks ----

    _POD_MUTABLE = (
        "`spec.containers[*].image`,`spec.initContainers[*].image`,"
        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing"
        " tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if"
        " it was previously negative)"
    )

    def _check_update_pods(self, old, new):
        def strip(spec):
            spec = json.loads(json.dumps(spec or {}))
            for field in ("containers", "initContainers"):
                for c in spec.get(field) or []:
                    c.pop("image", None)
            for key in (
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ):
                spec.pop(key, None)
            return spec

        if strip(old.get("spec")) != strip(new.get("spec")):
            return [
                (
                    FORBIDDEN,
                    "spec",
                    f"Forbidden: pod updates may not change fields other than {self._POD_MUTABLE}",
                )
            ]
        return []

    def _check_update_persistentvolumeclaims(self, old, new):
        def strip(spec):
            spec = json.loads(json.dumps(spec or {}))
            (spec.get("resources") or {}).pop("requests", None)
            spec.pop("volumeAttributesClassName", None)
            return spec

        if strip(old.get("spec")) != strip(new.get("spec")):
            return [
                (
                    FORBIDDEN,
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests"
                    " and volumeAttributesClassName for bound claims",
                )
            ]
        return []

    def _check_update_services(self, old, new):
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_ip = (new.get("spec") or {}).get("clusterIP")
        if old_ip and new_ip != old_ip:
            return [
                (
                    INVALID,
                    "spec.clusterIPs[0]",
                    f"Invalid value: {_quote(new_ip)}: may not change once set",
                )
            ]
        return []


def decode_secret_data(secret):
    """Check that ``data`` values are base64 (a 400 decode error otherwise)."""
    for key, value in (secret.get("data") or {}).items():
        try:
            base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            raise errors.bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64'
                f" data at input byte 0 (data[{key}])"
            )
