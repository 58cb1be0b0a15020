"""The ``jupyterhub_config.py`` text the Zero to JupyterHub (Z2JH) chart's hub config
would produce for a set of chart values, for tests that run the hub the way most
admins run it.

::

    from classroom_spawner.local.z2jh import hub_config_text

    text = hub_config_text({"singleuser": {"storage": {"type": "static",
                                                       "static": {"pvcName": "home-nfs"}}}})
    text += 'c.JupyterHub.spawner_class = "classroom"\\n'   # as an admin's hub.extraConfig would

Written from the chart's documented behaviour (its ``values.yaml`` defaults, its
``values.schema.yaml`` descriptions and what its ``files/hub/jupyterhub_config.py``
sets at 4.4.0); no chart file is copied. Only the values that matter to
classroom-spawner are handled:

- ``singleuser.storage``: ``type`` dynamic (a PVC per user: ``storage_pvc_ensure``,
  ``storage_class``, ``storage_access_modes``, ``storage_capacity``,
  ``pvc_name_template`` when set), static (one existing PVC ``static.pvcName``
  mounted with ``static.subPath``, ``{username}`` by default) or none (no home
  volume); the home mount at ``homeMountPath`` (a template such as
  ``/home/{username}`` too); ``extraVolumes`` / ``extraVolumeMounts`` (lists, or
  dicts as the chart also accepts) and ``extraLabels``;
- ``singleuser.cloudMetadata``: ``blockWithIptables`` *appends* the privileged
  ``block-cloud-metadata`` init container (a ``kubernetes_asyncio`` ``V1Container``,
  as the chart builds it) after ``singleuser.initContainers``;
- ``singleuser.extraFiles``: one Secret volume ``files`` with a subPath mount per file;
- the passthroughs ``uid``, ``fsGid``, ``startTimeout``, ``image``, ``cmd``,
  ``defaultUrl``, ``extraEnv``, ``extraLabels``, ``memory``/``cpu``, ``profileList``,
  ``events``, ``allowPrivilegeEscalation`` and the user pods' tolerations and
  node-purpose affinity from ``scheduling.userPods``;
- ``hub.concurrentSpawnLimit`` (64), ``hub.consecutiveFailureLimit`` (5, set on
  ``c.Spawner`` as the chart does), ``hub.activeServerLimit``,
  ``hub.allowNamedServers``;
- ``cull.*``: the ``jupyterhub-idle-culler`` managed service and its role with the
  chart's scopes (``admin:users`` added with ``cull.users``);
- ``hub.services`` / ``hub.loadRoles`` (dicts keyed by name);
- then ``hub.config`` (``c.<Class>.<trait> = <value>`` per entry) and
  ``hub.extraConfig`` snippets in sorted key order, as the chart loads them last.

Volumes and volume mounts are assigned as **dicts**, as the chart does with
KubeSpawner 7: the home volume under the key ``home`` (named
``dynamic.volumeNameTemplate``, ``volume-{user_server}`` by default, with
``claimName: "{pvc_name}"``; or named ``home`` for static storage), extraFiles under
``files``, list entries of ``extraVolumes``/``extraVolumeMounts`` under their
``name`` (a mount under ``<index>-<name>``, as one volume may be mounted twice).

Left out, because the local launcher (:class:`~classroom_spawner.local.hub.HubProcess`)
sets them for this machine: the hub's and proxy's addresses and ports, the
database, the cookie secret, the curl HTTP client. Where the chart *assigns*
``c.JupyterHub.services`` and ``load_roles`` from empty lists, this text
*appends*, so the launcher's own admin service stays. ``get_config()`` of the
chart's ``z2jh`` module is not available to ``hub.extraConfig`` snippets here.

Test tool only: nothing on the production code path imports it.
"""

from __future__ import annotations

import copy
from typing import Any

#: The chart version whose behaviour this module follows.
CHART_VERSION = "4.4.0"

#: The chart's defaults for the values this module handles (its values.yaml at 4.4.0).
DEFAULTS: dict[str, Any] = {
    "hub": {
        "concurrentSpawnLimit": 64,
        "consecutiveFailureLimit": 5,
        "activeServerLimit": None,
        "allowNamedServers": False,
        "namedServerLimitPerUser": None,
        "config": {},
        "extraConfig": {},
        "services": {},
        "loadRoles": {},
    },
    "singleuser": {
        "image": {
            "name": "quay.io/jupyterhub/k8s-singleuser-sample",
            "tag": CHART_VERSION,
        },
        "networkTools": {
            "image": {
                "name": "quay.io/jupyterhub/k8s-network-tools",
                "tag": CHART_VERSION,
            },
            "resources": {},
        },
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "events": True,
        "extraAnnotations": {},
        "extraLabels": {"hub.jupyter.org/network-access-hub": "true"},
        "extraFiles": {},
        "extraEnv": {},
        "lifecycleHooks": {},
        "initContainers": [],
        "extraContainers": [],
        "allowPrivilegeEscalation": False,
        "uid": 1000,
        "fsGid": 100,
        "serviceAccountName": None,
        "storage": {
            "type": "dynamic",
            "extraLabels": {},
            "extraVolumes": [],
            "extraVolumeMounts": [],
            "static": {"pvcName": None, "subPath": "{username}"},
            "capacity": "10Gi",
            "homeMountPath": "/home/jovyan",
            "dynamic": {
                "storageClass": None,
                "pvcNameTemplate": None,
                "volumeNameTemplate": "volume-{user_server}",
                "storageAccessModes": ["ReadWriteOnce"],
            },
        },
        "startTimeout": 300,
        "cpu": {"limit": None, "guarantee": None},
        "memory": {"limit": None, "guarantee": "1G"},
        "extraResource": {"limits": {}, "guarantees": {}},
        "cmd": "jupyterhub-singleuser",
        "defaultUrl": None,
        "extraPodConfig": {},
        "profileList": [],
    },
    "scheduling": {
        "userPods": {
            "tolerations": [
                {
                    "key": "hub.jupyter.org/dedicated",
                    "operator": "Equal",
                    "value": "user",
                    "effect": "NoSchedule",
                },
                {
                    "key": "hub.jupyter.org_dedicated",
                    "operator": "Equal",
                    "value": "user",
                    "effect": "NoSchedule",
                },
            ],
            "nodeAffinity": {"matchNodePurpose": "prefer"},
        },
    },
    "cull": {
        "enabled": True,
        "users": False,
        "adminUsers": True,
        "removeNamedServers": False,
        "timeout": 3600,
        "every": 600,
        "concurrency": 10,
        "maxAge": 0,
    },
}

STORAGE_TYPES = ("dynamic", "static", "none")

#: The scopes the chart gives the culler's role (admin:users is added with cull.users).
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


class ChartValuesError(ValueError):
    """Chart values this module cannot turn into a hub config."""


def merge_values(values: dict | None) -> dict:
    """The chart's defaults with ``values`` merged in as Helm merges ``-f`` files:
    mappings are merged key by key, everything else (lists too) is replaced;
    a ``None`` (YAML ``null``) replaces as well; a mapping of the chart's given as
    anything else is an error, as the chart's schema makes it."""
    merged = copy.deepcopy(DEFAULTS)
    _merge_into(merged, copy.deepcopy(values or {}), "")
    return merged


def _merge_into(base: dict, new: dict, where: str) -> None:
    if not isinstance(new, dict):
        raise ChartValuesError(f"{where or 'values'}: expected a mapping, got {new!r}")
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value, f"{where}{key}.")
        elif isinstance(base.get(key), dict) and value is not None:
            raise ChartValuesError(f"{where}{key}: expected a mapping, got {value!r}")
        else:
            base[key] = value


def _get(values: dict, path: str, default: Any = None) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _keyed(entries: Any, where: str, mounts: bool) -> dict:
    """extraVolumes/extraVolumeMounts as a dict: a dict is taken as it is, a list
    entry goes under its name (a mount under '<index>-<name>')."""
    if not entries:
        return {}
    if isinstance(entries, dict):
        return dict(entries)
    if not isinstance(entries, list):
        raise ChartValuesError(
            f"{where}: expected a list or a mapping, got {entries!r}"
        )
    keyed = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ChartValuesError(f"{where}[{i}]: every entry needs a name")
        key = f"{i}-{entry['name']}" if mounts else entry["name"]
        keyed[key] = entry
    return keyed


class _Writer:
    def __init__(self):
        self.lines: list[str] = []

    def comment(self, text: str) -> None:
        self.lines.append("")
        self.lines.extend(f"# {line}".rstrip() for line in text.splitlines())

    def set(self, target: str, value: Any) -> None:
        self.lines.append(f"{target} = {value!r}")

    def raw(self, text: str) -> None:
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def hub_config_text(
    values: dict | None = None,
    *,
    namespace: str = "default",
    culler_command: list[str] | None = None,
) -> str:
    """The ``jupyterhub_config.py`` text the chart's hub config gives for ``values``.

    - ``values``: chart values (the ``config.yaml`` an admin passes to ``helm``),
      merged over the chart's defaults (:data:`DEFAULTS`).
    - ``namespace``: where the user pods go (the chart uses the hub pod's namespace).
    - ``culler_command``: how to start the idle culler (default: the chart's
      ``python3 -m jupyterhub_idle_culler``; its ``--url`` is left out, so the culler
      reads the ``JUPYTERHUB_API_URL`` the hub gives its managed services, where the
      chart names its fixed port 8081).
    """
    v = merge_values(values)
    w = _Writer()
    w.raw(
        f"# Zero to JupyterHub {CHART_VERSION} hub config, by classroom_spawner.local.z2jh"
    )
    w.raw("c = get_config()  # noqa")

    w.comment("the chart's fixed hub settings")
    w.set("c.JupyterHub.spawner_class", "kubespawner.KubeSpawner")
    w.set("c.JupyterHub.cleanup_servers", False)
    w.set("c.JupyterHub.last_activity_interval", 60)
    w.set("c.JupyterHub.tornado_settings", {"slow_spawn_timeout": 0})

    w.comment("hub.* passthroughs")
    for trait, key in (
        ("concurrent_spawn_limit", "concurrentSpawnLimit"),
        ("active_server_limit", "activeServerLimit"),
        ("allow_named_servers", "allowNamedServers"),
        ("named_server_limit_per_user", "namedServerLimitPerUser"),
    ):
        value = _get(v, f"hub.{key}")
        if value is not None:
            w.set(f"c.JupyterHub.{trait}", value)
    w.set(
        "c.KubeSpawner.common_labels", {"app": "jupyterhub", "heritage": "jupyterhub"}
    )
    w.set("c.KubeSpawner.namespace", namespace)
    limit = _get(v, "hub.consecutiveFailureLimit")
    if limit is not None:
        w.set("c.Spawner.consecutive_failure_limit", limit)

    _singleuser(w, v)
    _storage(w, v)
    _extra_files(w, v)
    _services(w, v, culler_command)
    _cloud_metadata(w, v)
    _admin_config(w, v)
    return w.text()


def _singleuser(w: _Writer, v: dict) -> None:
    w.comment("singleuser.* passthroughs")
    for trait, key in (
        ("start_timeout", "startTimeout"),
        ("events_enabled", "events"),
        ("extra_labels", "extraLabels"),
        ("extra_annotations", "extraAnnotations"),
        ("uid", "uid"),
        ("fs_gid", "fsGid"),
        ("service_account", "serviceAccountName"),
        ("storage_extra_labels", "storage.extraLabels"),
        ("lifecycle_hooks", "lifecycleHooks"),
        ("init_containers", "initContainers"),
        ("extra_containers", "extraContainers"),
        ("mem_limit", "memory.limit"),
        ("mem_guarantee", "memory.guarantee"),
        ("cpu_limit", "cpu.limit"),
        ("cpu_guarantee", "cpu.guarantee"),
        ("extra_resource_limits", "extraResource.limits"),
        ("extra_resource_guarantees", "extraResource.guarantees"),
        ("environment", "extraEnv"),
        ("profile_list", "profileList"),
        ("extra_pod_config", "extraPodConfig"),
    ):
        value = _get(v, f"singleuser.{key}")
        if value is not None:
            w.set(f"c.KubeSpawner.{trait}", value)
    image = _get(v, "singleuser.image.name")
    if image:
        tag = _get(v, "singleuser.image.tag")
        w.set("c.KubeSpawner.image", f"{image}:{tag}" if tag else image)
    w.set(
        "c.KubeSpawner.allow_privilege_escalation",
        _get(v, "singleuser.allowPrivilegeEscalation"),
    )
    tolerations = list(_get(v, "scheduling.userPods.tolerations") or []) + list(
        _get(v, "singleuser.extraTolerations") or []
    )
    if tolerations:
        w.set("c.KubeSpawner.tolerations", tolerations)
    purpose = _get(v, "scheduling.userPods.nodeAffinity.matchNodePurpose")
    term = {
        "matchExpressions": [
            {
                "key": "hub.jupyter.org/node-purpose",
                "operator": "In",
                "values": ["user"],
            }
        ]
    }
    if purpose == "prefer":
        preferred = {"weight": 100, "preference": term}
        w.raw(f"c.KubeSpawner.node_affinity_preferred.append({preferred!r})")
    elif purpose == "require":
        w.raw(f"c.KubeSpawner.node_affinity_required.append({term!r})")
    elif purpose not in (None, "ignore"):
        raise ChartValuesError(
            f"scheduling.userPods.nodeAffinity.matchNodePurpose: {purpose!r} is not"
            " ignore, prefer or require"
        )
    cmd = _get(v, "singleuser.cmd", "jupyterhub-singleuser")
    w.set("c.Spawner.cmd", cmd)
    default_url = _get(v, "singleuser.defaultUrl")
    if default_url is not None:
        w.set("c.Spawner.default_url", default_url)


def _storage(w: _Writer, v: dict) -> None:
    storage = _get(v, "singleuser.storage") or {}
    kind = storage.get("type")
    if kind not in STORAGE_TYPES:
        raise ChartValuesError(
            f"singleuser.storage.type: {kind!r} is not one of {', '.join(STORAGE_TYPES)}"
        )
    home = storage.get("homeMountPath")
    volumes: dict[str, dict] = {}
    mounts: dict[str, dict] = {}
    w.comment(f"singleuser.storage.type: {kind}")
    if kind == "dynamic":
        dynamic = storage.get("dynamic") or {}
        if dynamic.get("pvcNameTemplate") is not None:
            w.set("c.KubeSpawner.pvc_name_template", dynamic["pvcNameTemplate"])
        w.set("c.KubeSpawner.storage_pvc_ensure", True)
        for trait, value in (
            ("storage_class", dynamic.get("storageClass")),
            ("storage_access_modes", dynamic.get("storageAccessModes")),
            ("storage_capacity", storage.get("capacity")),
        ):
            if value is not None:
                w.set(f"c.KubeSpawner.{trait}", value)
        name = dynamic.get("volumeNameTemplate") or "volume-{user_server}"
        volumes["home"] = {
            "name": name,
            "persistentVolumeClaim": {"claimName": "{pvc_name}"},
        }
        mounts["home"] = {"name": name, "mountPath": home}
    elif kind == "static":
        static = storage.get("static") or {}
        if not static.get("pvcName"):
            raise ChartValuesError(
                "singleuser.storage.static.pvcName: static storage needs the name of an"
                " existing PersistentVolumeClaim"
            )
        volumes["home"] = {
            "name": "home",
            "persistentVolumeClaim": {"claimName": static["pvcName"]},
        }
        mount = {"name": "home", "mountPath": home}
        if static.get("subPath") is not None:
            mount["subPath"] = static["subPath"]
        mounts["home"] = mount
    volumes.update(
        _keyed(storage.get("extraVolumes"), "singleuser.storage.extraVolumes", False)
    )
    mounts.update(
        _keyed(
            storage.get("extraVolumeMounts"),
            "singleuser.storage.extraVolumeMounts",
            True,
        )
    )
    w.set("c.KubeSpawner.volumes", volumes)
    w.set("c.KubeSpawner.volume_mounts", mounts)


def _extra_files(w: _Writer, v: dict) -> None:
    files = _get(v, "singleuser.extraFiles") or {}
    if not files:
        return
    w.comment("singleuser.extraFiles: one Secret volume, a subPath mount per file")
    items = []
    for key, details in files.items():
        if not isinstance(details, dict) or not details.get("mountPath"):
            raise ChartValuesError(f"singleuser.extraFiles.{key}: needs a mountPath")
        item = {"key": key, "path": key}
        if "mode" in details:
            item["mode"] = details["mode"]
        items.append(item)
    volume = {"name": "files", "secret": {"secretName": "singleuser", "items": items}}
    w.raw(f"c.KubeSpawner.volumes['files'] = {volume!r}")
    for key, details in files.items():
        mount = {"mountPath": details["mountPath"], "subPath": key, "name": "files"}
        w.raw(f"c.KubeSpawner.volume_mounts[{('files-' + key)!r}] = {mount!r}")


def _services(w: _Writer, v: dict, culler_command: list[str] | None) -> None:
    cull = _get(v, "cull") or {}
    if cull.get("enabled"):
        w.comment(
            "cull.*: jupyterhub-idle-culler as a hub-managed service, with a role of\n"
            "only the scopes it needs"
        )
        scopes = list(CULLER_SCOPES)
        cmd = list(culler_command or ["python3", "-m", "jupyterhub_idle_culler"])
        for flag, key in (
            ("--timeout", "timeout"),
            ("--cull-every", "every"),
            ("--concurrency", "concurrency"),
        ):
            if cull.get(key):
                cmd.append(f"{flag}={cull[key]}")
        if cull.get("users"):
            cmd.append("--cull-users")
            scopes.append("admin:users")
        if not cull.get("adminUsers"):
            cmd.append("--cull-admin-users=false")
        if cull.get("removeNamedServers"):
            cmd.append("--remove-named-servers")
        if cull.get("maxAge"):
            cmd.append(f"--max-age={cull['maxAge']}")
        service = {"name": "jupyterhub-idle-culler", "command": cmd}
        role = {
            "name": "jupyterhub-idle-culler",
            "scopes": scopes,
            "services": ["jupyterhub-idle-culler"],
        }
        w.raw(f"c.JupyterHub.services.append({service!r})")
        w.raw(f"c.JupyterHub.load_roles.append({role!r})")
    for key, service in (_get(v, "hub.services") or {}).items():
        service = dict(service or {})
        service.setdefault("name", key)
        service.pop("apiToken", None)
        w.raw(f"c.JupyterHub.services.append({service!r})")
    for key, role in (_get(v, "hub.loadRoles") or {}).items():
        role = dict(role or {})
        role.setdefault("name", key)
        w.raw(f"c.JupyterHub.load_roles.append({role!r})")


def _cloud_metadata(w: _Writer, v: dict) -> None:
    meta = _get(v, "singleuser.cloudMetadata") or {}
    if meta.get("blockWithIptables") is not True:
        return
    image = _get(v, "singleuser.networkTools.image") or {}
    resources = _get(v, "singleuser.networkTools.resources")
    ip = meta.get("ip") or "169.254.169.254"
    w.comment(
        "singleuser.cloudMetadata.blockWithIptables: a privileged init container,\n"
        "appended after singleuser.initContainers"
    )
    w.raw("from kubernetes_asyncio import client as _z2jh_k8s")
    w.raw(
        "c.KubeSpawner.init_containers.append(\n"
        "    _z2jh_k8s.V1Container(\n"
        '        name="block-cloud-metadata",\n'
        f"        image={(image.get('name', '') + ':' + str(image.get('tag', '')))!r},\n"
        f'        command=["iptables", "-A", "OUTPUT", "-d", {ip!r}, "-j", "DROP"],\n'
        "        security_context=_z2jh_k8s.V1SecurityContext(\n"
        "            privileged=True,\n"
        "            run_as_user=0,\n"
        '            capabilities=_z2jh_k8s.V1Capabilities(add=["NET_ADMIN"]),\n'
        "        ),\n"
        f"        resources={resources!r},\n"
        "    )\n"
        ")"
    )


def _admin_config(w: _Writer, v: dict) -> None:
    config = _get(v, "hub.config") or {}
    if config:
        w.comment("hub.config")
        for section, traits in config.items():
            if not isinstance(traits, dict):
                raise ChartValuesError(
                    f"hub.config.{section}: expected a mapping of traits"
                )
            for trait, value in traits.items():
                w.set(f"c.{section}.{trait}", value)
    extra = _get(v, "hub.extraConfig") or {}
    for key in sorted(extra):
        w.comment(f"hub.extraConfig.{key}")
        w.raw(str(extra[key]).rstrip("\n"))
