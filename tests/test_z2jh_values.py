"""The example Zero to JupyterHub values files (examples/z2jh/) use only keys the chart
documents, only traits our classes have, and give the hub config docs/z2jh.md describes.
"""

import fnmatch
import os

import pytest
import yaml

from classroom_spawner.local.z2jh import hub_config_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples", "z2jh")
VALUES_FILES = ["values-dynamic.yaml", "values-nfs-home.yaml"]

# Key paths the Zero to JupyterHub chart documents, from its values schema
# (jupyterhub/zero-to-jupyterhub-k8s, jupyterhub/values.schema.yaml, the schema behind
# https://z2jh.jupyter.org/en/stable/resources/reference.html), for the sections the
# examples use. "*" is a key of the admin's choosing (a free-form mapping such as
# hub.config, or a named entry such as prePuller.extraImages.<name>); a path that ends
# in "*" takes anything below it. Lists (extraVolumes, egress, initContainers, ...) are
# Kubernetes-native and not looked into.
DOCUMENTED = """
hub.config.*
hub.extraConfig.*
hub.extraEnv.*
hub.extraFiles.*
hub.extraVolumes
hub.extraVolumeMounts
hub.extraContainers
hub.initContainers
hub.image.name
hub.image.tag
hub.image.pullPolicy
hub.image.pullSecrets
hub.baseUrl
hub.command
hub.args
hub.cookieSecret
hub.concurrentSpawnLimit
hub.consecutiveFailureLimit
hub.activeServerLimit
hub.allowNamedServers
hub.namedServerLimitPerUser
hub.authenticatePrometheus
hub.redirectToServer
hub.shutdownOnLogout
hub.templatePaths
hub.templateVars.*
hub.services.*
hub.loadRoles.*
hub.db.type
hub.db.url
hub.db.password
hub.db.upgrade
hub.db.pvc.storage
hub.db.pvc.storageClassName
hub.db.pvc.accessModes
hub.labels.*
hub.annotations.*
hub.nodeSelector.*
hub.tolerations
hub.resources.*
hub.networkPolicy.enabled
hub.networkPolicy.ingress
hub.networkPolicy.egress
hub.networkPolicy.egressAllowRules.cloudMetadataServer
hub.networkPolicy.egressAllowRules.dnsPortsCloudMetadataServer
hub.networkPolicy.egressAllowRules.dnsPortsKubeSystemNamespace
hub.networkPolicy.egressAllowRules.dnsPortsPrivateIPs
hub.networkPolicy.egressAllowRules.nonPrivateIPs
hub.networkPolicy.egressAllowRules.privateIPs
hub.networkPolicy.interNamespaceAccessLabels
hub.networkPolicy.allowedIngressPorts
hub.serviceAccount.create
hub.serviceAccount.name
hub.serviceAccount.annotations.*
hub.existingSecret
hub.extraPodSpec.*
hub.podSecurityContext.*
hub.containerSecurityContext.*
singleuser.image.name
singleuser.image.tag
singleuser.image.pullPolicy
singleuser.image.pullSecrets
singleuser.podNameTemplate
singleuser.cpu.limit
singleuser.cpu.guarantee
singleuser.memory.limit
singleuser.memory.guarantee
singleuser.extraResource.limits.*
singleuser.extraResource.guarantees.*
singleuser.initContainers
singleuser.extraContainers
singleuser.profileList
singleuser.extraFiles.*
singleuser.extraEnv.*
singleuser.extraLabels.*
singleuser.extraAnnotations.*
singleuser.extraPodConfig.*
singleuser.extraTolerations
singleuser.nodeSelector.*
singleuser.extraNodeAffinity.required
singleuser.extraNodeAffinity.preferred
singleuser.extraPodAffinity.required
singleuser.extraPodAffinity.preferred
singleuser.extraPodAntiAffinity.required
singleuser.extraPodAntiAffinity.preferred
singleuser.lifecycleHooks.*
singleuser.cloudMetadata.blockWithIptables
singleuser.cloudMetadata.ip
singleuser.networkTools.image.name
singleuser.networkTools.image.tag
singleuser.networkTools.resources.*
singleuser.networkPolicy.enabled
singleuser.networkPolicy.ingress
singleuser.networkPolicy.egress
singleuser.networkPolicy.egressAllowRules.cloudMetadataServer
singleuser.networkPolicy.egressAllowRules.dnsPortsCloudMetadataServer
singleuser.networkPolicy.egressAllowRules.dnsPortsKubeSystemNamespace
singleuser.networkPolicy.egressAllowRules.dnsPortsPrivateIPs
singleuser.networkPolicy.egressAllowRules.nonPrivateIPs
singleuser.networkPolicy.egressAllowRules.privateIPs
singleuser.networkPolicy.interNamespaceAccessLabels
singleuser.networkPolicy.allowedIngressPorts
singleuser.cmd
singleuser.defaultUrl
singleuser.events
singleuser.fsGid
singleuser.uid
singleuser.allowPrivilegeEscalation
singleuser.serviceAccountName
singleuser.startTimeout
singleuser.storage.type
singleuser.storage.capacity
singleuser.storage.homeMountPath
singleuser.storage.extraLabels.*
singleuser.storage.extraVolumes
singleuser.storage.extraVolumeMounts
singleuser.storage.static.pvcName
singleuser.storage.static.subPath
singleuser.storage.dynamic.storageClass
singleuser.storage.dynamic.pvcNameTemplate
singleuser.storage.dynamic.volumeNameTemplate
singleuser.storage.dynamic.storageAccessModes
cull.enabled
cull.users
cull.adminUsers
cull.removeNamedServers
cull.timeout
cull.every
cull.concurrency
cull.maxAge
prePuller.hook.enabled
prePuller.hook.pullOnlyOnChanges
prePuller.continuous.enabled
prePuller.pullProfileListImages
prePuller.extraImages.*.name
prePuller.extraImages.*.tag
prePuller.extraTolerations
scheduling.userScheduler.enabled
scheduling.userScheduler.replicas
scheduling.podPriority.enabled
scheduling.podPriority.globalDefault
scheduling.podPriority.defaultPriority
scheduling.podPriority.imagePullerPriority
scheduling.podPriority.userPlaceholderPriority
scheduling.userPlaceholder.enabled
scheduling.userPlaceholder.replicas
scheduling.userPlaceholder.resources.*
scheduling.corePods.nodeAffinity.matchNodePurpose
scheduling.corePods.tolerations
scheduling.userPods.nodeAffinity.matchNodePurpose
scheduling.userPods.tolerations
proxy.secretToken
proxy.service.type
proxy.service.loadBalancerIP
proxy.https.enabled
proxy.https.type
proxy.https.hosts
proxy.https.letsencrypt.contactEmail
ingress.enabled
ingress.hosts
ingress.tls
ingress.annotations.*
ingress.ingressClassName
custom.*
debug.enabled
""".split()


def load_values(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return yaml.safe_load(f)


def key_paths(node, prefix=""):
    """The dotted key paths of a values mapping, down to leaves and lists."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield path
            yield from key_paths(value, path + ".")
        else:
            yield path


def documented(path):
    """Is ``path`` a documented key, one of their parents, or below a path ending in *?"""
    parts = path.split(".")
    for pattern in DOCUMENTED:
        want = pattern.split(".")
        if want[-1] == "*" and len(parts) > len(want):
            parts_to_match = parts[: len(want)]
        elif len(parts) <= len(want):
            parts_to_match = parts
        else:
            continue
        if all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts_to_match, want)):
            return True
    return False


def test_the_key_check_can_fail():
    assert documented("singleuser.storage.static.subPath")
    assert documented("hub.config.ClassroomSpawner.first_spawn_limit")
    assert documented("prePuller.extraImages.ds101.tag")
    assert not documented("singleuser.storage.static.subpath")
    assert not documented("singleuser.storage.dynamic.subPath")  # not in 4.4.0's schema
    assert not documented("hub.concurrentSpawnLimits")
    assert not documented("prePuller.extraImages.ds101.digest")


@pytest.mark.parametrize("name", VALUES_FILES)
def test_every_key_of_the_examples_is_documented_by_the_chart(name):
    values = load_values(name)
    unknown = [p for p in key_paths(values) if not documented(p)]
    assert unknown == []


@pytest.mark.parametrize("name", VALUES_FILES)
def test_hub_config_names_real_traits(name):
    from jupyterhub.app import JupyterHub
    from kubespawner import KubeSpawner

    from classroom_spawner.auth import ClassroomOAuthenticator
    from classroom_spawner.roster.configurable import ClassroomRoster
    from classroom_spawner.spawner import ClassroomSpawner

    classes = {
        cls.__name__: cls
        for cls in (
            JupyterHub,
            KubeSpawner,
            ClassroomOAuthenticator,
            ClassroomRoster,
            ClassroomSpawner,
        )
    }
    for section, traits in load_values(name)["hub"]["config"].items():
        configurable = classes[section].class_traits(config=True)
        assert sorted(set(traits) - set(configurable)) == [], section


def test_the_examples_give_the_hub_config_the_docs_describe(write_file):
    from classroom_spawner.hubconfig import load_hub_config

    dynamic = load_hub_config(
        write_file("dynamic.py", hub_config_text(load_values("values-dynamic.yaml")))
    )
    assert dynamic.JupyterHub.spawner_class == "classroom"
    assert dynamic.JupyterHub.concurrent_spawn_limit == 0
    assert dynamic.Spawner.consecutive_failure_limit == 5
    assert dynamic.KubeSpawner.storage_pvc_ensure is True
    assert dynamic.KubeSpawner.storage_class == "standard-rwo"
    assert dynamic.ClassroomSpawner.first_spawn_limit == 20

    nfs = load_hub_config(
        write_file("nfs.py", hub_config_text(load_values("values-nfs-home.yaml")))
    )
    assert "storage_pvc_ensure" not in nfs.KubeSpawner
    assert nfs.KubeSpawner.volumes["home"]["persistentVolumeClaim"] == {
        "claimName": "home-nfs"
    }
    assert nfs.KubeSpawner.volume_mounts["home"]["subPath"] == "{username}"
    assert set(nfs.KubeSpawner.volumes) == {"home", "shared-datasets"}
    owner, block = nfs.KubeSpawner.init_containers
    assert (owner["name"], block.name) == ("home-owner", "block-cloud-metadata")
