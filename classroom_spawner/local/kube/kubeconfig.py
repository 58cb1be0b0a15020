"""Writing an ordinary kubeconfig that points at the stand-in (or the real
control plane of :mod:`.cluster`, with its CA).

KubeSpawner loads its configuration through kubernetes_asyncio, which reads
``$KUBECONFIG`` *when it is imported* and caches the loaded config; so a hub
process must have ``KUBECONFIG`` in its environment from the start.
"""

import os

import yaml


def kubeconfig_dict(
    server,
    token=None,
    namespace="default",
    name="classroom-standin",
    certificate_authority=None,
):
    user = {"token": token} if token else {}
    cluster = {"server": server}
    if certificate_authority:
        cluster["certificate-authority"] = certificate_authority
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": name, "namespace": namespace},
            }
        ],
        "current-context": name,
    }


def write_kubeconfig(
    path,
    server,
    token=None,
    namespace="default",
    name="classroom-standin",
    certificate_authority=None,
):
    """Write the kubeconfig (mode 0600) and return its path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = yaml.safe_dump(
        kubeconfig_dict(server, token, namespace, name, certificate_authority),
        sort_keys=False,
    )
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return path
