"""Server-side defaulting, as the real API server (and its default admission
plugins) applies it on create.

Covered: the pod spec and container defaults (``restartPolicy``,
``terminationMessagePath``/``Policy``, ``imagePullPolicy``, the default
``serviceAccountName`` and not-ready/unreachable tolerations, volume
``defaultMode``, ...), the PVC default storage class, ``volumeMode`` and the
``kubernetes.io/pvc-protection`` finalizer, a service's cluster IP, a secret's
``stringData`` folded into ``data``, and a namespace's ``kubernetes`` finalizer
and name label. ``status`` starts the way the real server starts it (Pending
for pods and PVCs, Active for namespaces).
"""

import base64

PVC_PROTECTION = "kubernetes.io/pvc-protection"
DEFAULT_STORAGE_CLASS = "standard"
_NOT_READY_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


def _image_pull_policy(image):
    """``Always`` for ``:latest`` or untagged images, else ``IfNotPresent``."""
    name = image or ""
    if "@" in name:
        return "IfNotPresent"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_container(c):
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _image_pull_policy(c.get("image")))
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if probe:
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            http = probe.get("httpGet")
            if http:
                http.setdefault("path", "/")
                http.setdefault("scheme", "HTTP")


def _qos_class(spec):
    containers = spec.get("containers") or []
    requests = limits = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests = requests or bool(req)
        limits = limits or bool(lim)
        for key in ("cpu", "memory"):
            if key not in lim or (key in req and req[key] != lim[key]):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and limits:
        return "Guaranteed"
    return "Burstable"


def default_pod(pod):
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    for tol in _NOT_READY_TOLERATIONS:
        if not any(t.get("key") == tol["key"] for t in tolerations):
            tolerations.append(dict(tol))
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            _default_container(c)
    for vol in spec.get("volumes") or []:
        sources = set(vol) - {"name"}
        if not sources:
            vol["emptyDir"] = {}
        for kind in ("secret", "configMap"):
            if kind in vol:
                vol[kind].setdefault("defaultMode", 0o644)
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}


def default_pvc(pvc):
    spec = pvc.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    if "storageClassName" not in spec:
        annotations = (pvc.get("metadata") or {}).get("annotations") or {}
        beta = annotations.get("volume.beta.kubernetes.io/storage-class")
        if beta is None:
            spec["storageClassName"] = DEFAULT_STORAGE_CLASS
    finalizers = pvc["metadata"].setdefault("finalizers", [])
    if PVC_PROTECTION not in finalizers:
        finalizers.append(PVC_PROTECTION)
    pvc["status"] = {"phase": "Pending"}


def default_service(svc, allocate_ip):
    spec = svc.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("type") != "ExternalName":
        if not spec.get("clusterIP"):
            spec["clusterIP"] = allocate_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    svc["status"] = {"loadBalancer": {}}


def default_secret(secret):
    secret.setdefault("type", "Opaque")
    fold_string_data(secret)


def fold_string_data(secret):
    """``stringData`` is write-only: it is merged into ``data`` (base64)."""
    string_data = secret.pop("stringData", None)
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def default_namespace(ns):
    meta = ns["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns["status"] = {"phase": "Active"}


def apply_defaults(plural, obj, allocate_service_ip=None):
    if plural == "pods":
        default_pod(obj)
    elif plural == "persistentvolumeclaims":
        default_pvc(obj)
    elif plural == "services":
        default_service(obj, allocate_service_ip)
    elif plural == "secrets":
        default_secret(obj)
    elif plural == "namespaces":
        default_namespace(obj)
