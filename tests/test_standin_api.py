"""API semantics of the Kubernetes stand-in that KubeSpawner relies on,
exercised with kubernetes_asyncio's real client."""

import asyncio
import json

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from classroom_spawner.local.kube import KubeStandin
from classroom_spawner.local.kube.testing import (
    api_exception_status,
    core_client,
    pod_manifest,
    pvc_manifest,
)

NS = "default"


@pytest.fixture
async def k8s(tmp_path):
    async with KubeStandin(tmp_path / "k8s", history_size=1000) as standin:
        yield standin


@pytest.fixture
async def v1(k8s):
    async with core_client(k8s.kubeconfig_path) as api:
        yield api


async def raw(k8s, method, path, body=None, headers=None):
    headers = dict(headers or {})
    headers["Authorization"] = f"Bearer {k8s.token}"
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    req = HTTPRequest(
        k8s.url + path,
        method=method,
        body=body,
        headers=headers,
        allow_nonstandard_methods=True,
    )
    return await AsyncHTTPClient().fetch(req, raise_error=False)


def sleeper(name, labels=None, **kw):
    # never scheduled (the claim does not exist), so no process runs
    pod = pod_manifest(name, ["sleep", "600"], labels=labels, **kw)
    pod["spec"]["volumes"] = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "missing"}}
    ]
    return pod


async def test_discovery_and_auth(k8s, v1):
    version = await client.VersionApi(v1.api_client).get_code()
    assert version.major == "1"
    resources = await v1.get_api_resources()
    names = {r.name for r in resources.resources}
    assert {
        "pods",
        "persistentvolumeclaims",
        "services",
        "secrets",
        "events",
        "namespaces",
    } <= names
    r = await AsyncHTTPClient().fetch(k8s.url + "/api/v1/pods", raise_error=False)
    assert r.code == 401
    assert json.loads(r.body)["reason"] == "Unauthorized"


async def test_create_get_defaults(v1):
    pod = await v1.create_namespaced_pod(NS, sleeper("p1"))
    meta = pod.metadata
    assert meta.uid and meta.creation_timestamp and int(meta.resource_version) > 0
    assert pod.spec.restart_policy == "OnFailure"
    c = pod.spec.containers[0]
    assert c.termination_message_path == "/dev/termination-log"
    assert c.termination_message_policy == "File"
    assert c.image_pull_policy == "IfNotPresent"
    assert pod.status.phase == "Pending"
    got = await v1.read_namespaced_pod("p1", NS)
    assert got.metadata.uid == meta.uid

    pvc = await v1.create_namespaced_persistent_volume_claim(
        NS, pvc_manifest("c1", storage_class="")
    )
    assert pvc.status.phase == "Pending"
    assert "kubernetes.io/pvc-protection" in pvc.metadata.finalizers

    svc = await v1.create_namespaced_service(
        NS,
        {
            "metadata": {"name": "s1"},
            "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}},
        },
    )
    assert svc.spec.cluster_ip.startswith("10.96.")
    assert svc.spec.ports[0].target_port == 80

    secret = await v1.create_namespaced_secret(
        NS, {"metadata": {"name": "sec"}, "stringData": {"token": "abc"}}
    )
    assert secret.data == {"token": "YWJj"} and secret.type == "Opaque"


async def test_generate_name(v1):
    pod = sleeper("")
    del pod["metadata"]["name"]
    pod["metadata"]["generateName"] = "gen-"
    created = await v1.create_namespaced_pod(NS, pod)
    assert created.metadata.name.startswith("gen-") and len(created.metadata.name) == 9


async def test_not_found_status(k8s, v1):
    with pytest.raises(ApiException) as e:
        await v1.read_namespaced_pod("nope", NS)
    assert e.value.status == 404
    assert api_exception_status(e.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }
    with pytest.raises(ApiException) as e:
        await v1.delete_namespaced_pod("nope", NS)
    assert e.value.status == 404
    # creating in a namespace that does not exist
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod("nowhere", sleeper("p"))
    assert e.value.status == 404
    assert api_exception_status(e.value)["message"] == 'namespaces "nowhere" not found'
    # listing in a namespace that does not exist is just empty
    assert (await v1.list_namespaced_pod("nowhere")).items == []
    r = await raw(k8s, "GET", "/api/v1/namespaces/default/widgets")
    assert r.code == 404


async def test_already_exists(v1):
    await v1.create_namespaced_pod(NS, sleeper("dup"))
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, sleeper("dup"))
    assert e.value.status == 409
    status = api_exception_status(e.value)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'pods "dup" already exists'
    assert status["details"] == {"name": "dup", "kind": "pods"}


async def test_invalid_object_422(v1):
    pod = sleeper("bad")
    del pod["spec"]["containers"][0]["image"]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "nosuch", "mountPath": "/x"}
    ]
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, pod)
    assert e.value.status == 422
    status = api_exception_status(e.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Pod" and status["details"]["name"] == "bad"
    fields = {c["field"]: c["reason"] for c in status["details"]["causes"]}
    assert fields["spec.containers[0].image"] == "FieldValueRequired"
    assert fields["spec.containers[0].volumeMounts[0].name"] == "FieldValueNotFound"
    assert status["message"].startswith('Pod "bad" is invalid: [')
    assert "spec.containers[0].image: Required value" in status["message"]

    # a schema violation: containers is required
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, {"metadata": {"name": "empty"}, "spec": {}})
    assert e.value.status == 422
    assert api_exception_status(e.value)["message"] == (
        'Pod "empty" is invalid: spec.containers: Required value'
    )

    # an invalid name
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, sleeper("Not_Valid"))
    assert e.value.status == 422
    assert (
        "metadata.name: Invalid value: \"Not_Valid\""
        in api_exception_status(e.value)["message"]
    )

    # a PVC without a storage request
    pvc = pvc_manifest("c")
    del pvc["spec"]["resources"]
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_persistent_volume_claim(NS, pvc)
    assert e.value.status == 422
    assert (
        "spec.resources[storage]: Required value"
        in api_exception_status(e.value)["message"]
    )


async def test_decoding_errors_400(k8s, v1):
    pod = sleeper("typo")
    pod["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, pod)
    assert e.value.status == 400
    assert api_exception_status(e.value)["message"] == (
        'strict decoding error: unknown field "spec.containers[0].imagePullPolcy"'
    )
    # with fieldValidation=Warn the field is dropped and a warning returned
    r = await raw(
        k8s, "POST", "/api/v1/namespaces/default/pods?fieldValidation=Warn", pod
    )
    assert r.code == 201
    assert "imagePullPolcy" in r.headers["Warning"]
    assert "imagePullPolcy" not in json.loads(r.body)["spec"]["containers"][0]
    pod = sleeper("wrongtype")
    pod["spec"]["terminationGracePeriodSeconds"] = "soon"
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, pod)
    assert e.value.status == 400
    r = await raw(k8s, "POST", "/api/v1/namespaces/default/pods", "{not json")
    assert r.code == 400 and json.loads(r.body)["reason"] == "BadRequest"
    other_ns = sleeper("x")
    other_ns["metadata"]["namespace"] = "kube-system"
    with pytest.raises(ApiException) as e:
        await v1.create_namespaced_pod(NS, other_ns)
    assert e.value.status == 400


async def test_label_selectors(v1):
    for name, labels in [
        ("a", {"component": "singleuser-server", "course": "ds101"}),
        ("b", {"component": "singleuser-server", "course": "ds102"}),
        ("c", {"component": "other"}),
    ]:
        await v1.create_namespaced_pod(NS, sleeper(name, labels))

    async def names(selector):
        pods = await v1.list_namespaced_pod(NS, label_selector=selector)
        return sorted(p.metadata.name for p in pods.items)

    assert await names("component=singleuser-server") == ["a", "b"]
    assert await names("component==singleuser-server,course=ds102") == ["b"]
    assert await names("course!=ds101") == ["b", "c"]
    assert await names("course in (ds101, ds103)") == ["a"]
    assert await names("course notin (ds101)") == ["b", "c"]
    assert await names("course") == ["a", "b"]
    assert await names("!course") == ["c"]
    assert await names("") == ["a", "b", "c"]
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod(NS, label_selector="course in ()")
    assert e.value.status == 400
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod(NS, label_selector="bad key!=x")
    assert e.value.status == 400


async def test_field_selectors(v1):
    await v1.create_namespaced_pod(NS, sleeper("f1"))
    await v1.create_namespaced_pod(NS, sleeper("f2"))
    await v1.create_namespace({"metadata": {"name": "other"}})
    await v1.create_namespaced_pod("other", sleeper("f3"))
    pods = await v1.list_namespaced_pod(NS, field_selector="metadata.name=f2")
    assert [p.metadata.name for p in pods.items] == ["f2"]
    pods = await v1.list_pod_for_all_namespaces(
        field_selector="metadata.namespace!=default"
    )
    assert [p.metadata.name for p in pods.items] == ["f3"]
    pods = await v1.list_pod_for_all_namespaces(
        field_selector="status.phase=Pending,spec.nodeName="
    )
    assert sorted(p.metadata.name for p in pods.items) == ["f1", "f2", "f3"]
    # the scheduler could not place them: events about pods, by involved object
    evs = await v1.list_namespaced_event(
        NS, field_selector="involvedObject.kind=Pod,involvedObject.name=f1"
    )
    assert evs.items and all(e.involved_object.name == "f1" for e in evs.items)
    assert evs.items[0].reason == "FailedScheduling"
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod(NS, field_selector="spec.containers=x")
    assert e.value.status == 400
    assert (
        api_exception_status(e.value)["message"]
        == "field label not supported: spec.containers"
    )


def cm(name, labels=None):
    # ConfigMaps: no controller writes to them, so every change below is ours
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "data": {"k": name},
    }


async def collect(v1, timeout=1, **kwargs):
    seen = []
    w = watch.Watch()
    async with w.stream(
        v1.list_namespaced_config_map, NS, timeout_seconds=timeout, **kwargs
    ) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
    return seen


async def test_resource_versions_and_watch_resumption(v1):
    created = [
        await v1.create_namespaced_config_map(NS, cm(f"w{i}", {"app": "w"}))
        for i in range(3)
    ]
    rvs = [int(c.metadata.resource_version) for c in created]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    listing = await v1.list_namespaced_config_map(NS, label_selector="app=w")
    list_rv = listing.metadata.resource_version
    assert int(list_rv) >= rvs[-1]

    await v1.patch_namespaced_config_map("w0", NS, {"data": {"k": "changed"}})
    await v1.delete_namespaced_config_map("w1", NS)
    await v1.create_namespaced_config_map(NS, cm("w3", {"app": "w"}))

    # resume from the list's resourceVersion: exactly the later changes, in order
    seen = await collect(v1, label_selector="app=w", resource_version=list_rv)
    assert seen == [("MODIFIED", "w0"), ("DELETED", "w1"), ("ADDED", "w3")]

    # resume from the middle: only what came after
    w = watch.Watch()
    async with w.stream(
        v1.list_namespaced_config_map,
        NS,
        label_selector="app=w",
        resource_version=list_rv,
        timeout_seconds=1,
    ) as stream:
        async for event in stream:
            mid = event["object"].metadata.resource_version
            break
    seen = await collect(v1, label_selector="app=w", resource_version=mid)
    assert seen == [("DELETED", "w1"), ("ADDED", "w3")]

    # resourceVersion "0" (what KubeSpawner's reflector starts with): current state as ADDED
    seen = await collect(v1, label_selector="app=w", resource_version="0")
    assert seen == [("ADDED", "w0"), ("ADDED", "w2"), ("ADDED", "w3")]

    # the reflector's re-list: resourceVersion + NotOlderThan gives the current state
    listing = await v1.list_namespaced_config_map(
        NS,
        label_selector="app=w",
        resource_version=mid,
        resource_version_match="NotOlderThan",
    )
    assert [c.metadata.name for c in listing.items] == ["w0", "w2", "w3"]
    # an exact list shows the past
    listing = await v1.list_namespaced_config_map(
        NS,
        label_selector="app=w",
        resource_version=list_rv,
        resource_version_match="Exact",
    )
    assert [c.metadata.name for c in listing.items] == ["w0", "w1", "w2"]
    assert listing.items[0].data == {"k": "w0"}
    assert listing.metadata.resource_version == list_rv


async def test_live_watch_and_selector_transitions(v1):
    await v1.create_namespaced_config_map(NS, cm("t1", {"app": "t"}))
    listing = await v1.list_namespaced_config_map(NS, label_selector="app=t")
    events = []

    async def consume():
        w = watch.Watch()
        async with w.stream(
            v1.list_namespaced_config_map,
            NS,
            label_selector="app=t",
            resource_version=listing.metadata.resource_version,
            timeout_seconds=10,
        ) as stream:
            async for event in stream:
                events.append((event["type"], event["object"].metadata.name))
                if len(events) == 4:
                    return

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    await v1.create_namespaced_config_map(NS, cm("t2", {"app": "t"}))
    await v1.create_namespaced_config_map(NS, cm("x", {"app": "x"}))  # not selected
    # a label change out of the selector is a DELETED for this watch, and back in an ADDED
    await v1.patch_namespaced_config_map(
        "t1", NS, {"metadata": {"labels": {"app": "other"}}}
    )
    await v1.patch_namespaced_config_map(
        "t1", NS, {"metadata": {"labels": {"app": "t"}}}
    )
    await v1.delete_namespaced_config_map("t2", NS)
    await asyncio.wait_for(task, 10)
    assert events == [
        ("ADDED", "t2"),
        ("DELETED", "t1"),
        ("ADDED", "t1"),
        ("DELETED", "t2"),
    ]


async def test_watch_timeout_seconds_ends_stream(k8s, v1):
    w = watch.Watch()
    seen = []
    async with w.stream(v1.list_namespaced_pod, NS, timeout_seconds=1) as stream:
        async for event in stream:
            seen.append(event)
    assert seen == []
    # and the server forgot the watch
    assert k8s.stats()["watches"] == 0


async def test_stale_watch_410(k8s, v1):
    await v1.create_namespaced_pod(NS, sleeper("s1"))
    old_rv = (await v1.list_namespaced_pod(NS)).metadata.resource_version
    await v1.create_namespaced_pod(NS, sleeper("s2"))
    await asyncio.sleep(0.1)
    k8s.store.compact()  # as etcd compaction does after ~5 minutes
    w = watch.Watch()
    with pytest.raises(ApiException) as e:
        async with w.stream(
            v1.list_namespaced_pod, NS, resource_version=old_rv, timeout_seconds=5
        ) as stream:
            async for _ in stream:
                pass
    assert e.value.status == 410
    assert "Expired: too old resource version" in e.value.reason

    # the raw stream is a 200 with one ERROR event carrying the Status
    r = await raw(
        k8s,
        "GET",
        f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={old_rv}",
    )
    assert r.code == 200
    lines = r.body.decode().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith(
        f"too old resource version: {old_rv} ("
    )

    # an exact list that old is gone too
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_pod(
            NS, resource_version=old_rv, resource_version_match="Exact"
        )
    assert e.value.status == 410


async def test_bookmarks(k8s, v1):
    k8s.bookmark_interval = 0.2
    r = await raw(
        k8s,
        "GET",
        "/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    events = [json.loads(line) for line in r.body.decode().splitlines()]
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[0]["object"]["metadata"]["resourceVersion"] == str(
        k8s.store.resource_version
    )


async def test_limit_and_continue(k8s, v1):
    for i in range(5):
        await v1.create_namespaced_config_map(NS, cm(f"page{i}", {"app": "page"}))
    first = await v1.list_namespaced_config_map(NS, label_selector="app=page", limit=2)
    assert [p.metadata.name for p in first.items] == ["page0", "page1"]
    assert first.metadata.remaining_item_count == 3
    await v1.create_namespaced_config_map(NS, cm("page5", {"app": "page"}))
    second = await v1.list_namespaced_config_map(
        NS, label_selector="app=page", limit=10, _continue=first.metadata._continue
    )
    # a consistent snapshot: page5 came later
    assert [p.metadata.name for p in second.items] == ["page2", "page3", "page4"]
    assert second.metadata.resource_version == first.metadata.resource_version
    assert not second.metadata._continue
    k8s.store.compact()
    with pytest.raises(ApiException) as e:
        await v1.list_namespaced_config_map(
            NS, label_selector="app=page", limit=1, _continue=first.metadata._continue
        )
    assert e.value.status == 410


async def test_updates_patches_and_conflicts(k8s, v1):
    await v1.create_namespaced_pod(NS, sleeper("u1", {"a": "1"}))
    # merge patch (dict body -> strategic merge patch in kubernetes_asyncio)
    pod = await v1.patch_namespaced_pod("u1", NS, {"metadata": {"labels": {"b": "2"}}})
    assert pod.metadata.labels == {"a": "1", "b": "2"}
    # JSON patch
    pod = await v1.patch_namespaced_pod(
        "u1", NS, [{"op": "remove", "path": "/metadata/labels/a"}]
    )
    assert pod.metadata.labels == {"b": "2"}
    # RFC 7386 merge patch with null deleting a key
    r = await raw(
        k8s,
        "PATCH",
        "/api/v1/namespaces/default/pods/u1",
        {"metadata": {"labels": {"b": None, "c": "3"}}},
        {"Content-Type": "application/merge-patch+json"},
    )
    assert r.code == 200 and json.loads(r.body)["metadata"]["labels"] == {"c": "3"}
    # strategic merge: containers merge by name (image is the one mutable field)
    pod = await v1.patch_namespaced_pod(
        "u1",
        NS,
        {"spec": {"containers": [{"name": "main", "image": "standin/test:2"}]}},
    )
    assert pod.spec.containers[0].image == "standin/test:2"
    assert pod.spec.containers[0].command == ["sleep", "600"]
    # other spec changes are forbidden
    with pytest.raises(ApiException) as e:
        await v1.patch_namespaced_pod("u1", NS, {"spec": {"restartPolicy": "Never"}})
    assert e.value.status == 422
    assert (
        "pod updates may not change fields" in api_exception_status(e.value)["message"]
    )
    # status can't be changed through the main resource...
    pod = await v1.patch_namespaced_pod("u1", NS, {"status": {"phase": "Running"}})
    assert pod.status.phase == "Pending"
    # ...only through /status
    pod = await v1.patch_namespaced_pod_status(
        "u1", NS, {"status": {"message": "hello"}}
    )
    assert pod.status.message == "hello"
    # PUT with a stale resourceVersion: 409 Conflict
    stale = await v1.read_namespaced_pod("u1", NS)
    await v1.patch_namespaced_pod("u1", NS, {"metadata": {"labels": {"d": "4"}}})
    stale.metadata.labels = {"e": "5"}
    with pytest.raises(ApiException) as e:
        await v1.replace_namespaced_pod("u1", NS, stale)
    assert e.value.status == 409
    status = api_exception_status(e.value)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    fresh = await v1.read_namespaced_pod("u1", NS)
    fresh.metadata.labels = {"e": "5"}
    replaced = await v1.replace_namespaced_pod("u1", NS, fresh)
    assert replaced.metadata.labels == {"e": "5"}
    assert int(replaced.metadata.resource_version) > int(
        fresh.metadata.resource_version
    )


async def test_finalizers_and_deletion(v1):
    await v1.create_namespaced_config_map(
        NS,
        {
            "metadata": {"name": "cm", "finalizers": ["example.com/keep"]},
            "data": {"k": "v"},
        },
    )
    await v1.delete_namespaced_config_map("cm", NS)
    cm = await v1.read_namespaced_config_map("cm", NS)
    assert cm.metadata.deletion_timestamp is not None
    await v1.patch_namespaced_config_map(
        "cm", NS, [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    with pytest.raises(ApiException) as e:
        await v1.read_namespaced_config_map("cm", NS)
    assert e.value.status == 404
    # preconditions
    await v1.create_namespaced_secret(NS, {"metadata": {"name": "s"}})
    with pytest.raises(ApiException) as e:
        await v1.delete_namespaced_secret(
            "s",
            NS,
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid="wrong")
            ),
        )
    assert e.value.status == 409
    await v1.delete_namespaced_secret("s", NS)
    # an unscheduled pod goes at once, whatever the grace period
    await v1.create_namespaced_pod(NS, sleeper("gone"))
    await v1.delete_namespaced_pod("gone", NS, grace_period_seconds=30)
    with pytest.raises(ApiException) as e:
        await v1.read_namespaced_pod("gone", NS)
    assert e.value.status == 404


async def test_namespace_lifecycle(v1):
    ns = await v1.create_namespace({"metadata": {"name": "course-a"}})
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "course-a"
    await v1.create_namespaced_secret("course-a", {"metadata": {"name": "s"}})
    await v1.delete_namespace("course-a")

    async def gone():
        try:
            await v1.read_namespace("course-a")
        except ApiException as e:
            return e.status == 404
        return False

    for _ in range(100):
        if await gone():
            break
        await asyncio.sleep(0.05)
    assert await gone()
    assert (await v1.list_namespaced_secret("course-a")).items == []


async def test_kubeconfig_is_ordinary(k8s):
    import yaml

    with open(k8s.kubeconfig_path) as f:
        cfg = yaml.safe_load(f)
    assert cfg["clusters"][0]["cluster"]["server"] == k8s.url
    assert cfg["users"][0]["user"]["token"] == k8s.token
    assert cfg["contexts"][0]["context"]["namespace"] == "default"
    assert cfg["current-context"] == cfg["contexts"][0]["name"]


async def test_delete_collection_and_dry_run(k8s, v1):
    for i in range(3):
        await v1.create_namespaced_config_map(
            NS, cm(f"dc{i}", {"app": "dc" if i < 2 else "keep"})
        )
    r = await raw(
        k8s, "POST", "/api/v1/namespaces/default/configmaps?dryRun=All", cm("dry")
    )
    assert r.code == 201 and json.loads(r.body)["metadata"]["name"] == "dry"
    with pytest.raises(ApiException):
        await v1.read_namespaced_config_map("dry", NS)
    await v1.delete_collection_namespaced_config_map(NS, label_selector="app=dc")
    left = await v1.list_namespaced_config_map(NS)
    assert [c.metadata.name for c in left.items] == ["dc2"]


async def test_send_initial_events(k8s, v1):
    await v1.create_namespaced_config_map(NS, cm("i1"))
    r = await raw(
        k8s,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true"
        "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    )
    events = [json.loads(line) for line in r.body.decode().splitlines()]
    assert (
        events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "i1"
    )
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"
    }


def test_cli_flags_build_the_configs():
    from classroom_spawner.local.kube.__main__ import build_parser, configs_from_args

    args = build_parser().parse_args(
        [
            "--state-dir",
            "/tmp/x",
            "--provision-delay",
            "2",
            "--provision-max-in-flight",
            "4",
            "--image-pull-delay",
            "5",
            "--api-error-rate",
            "0.1",
            "--api-error-codes",
            "503,429",
            "--outage",
            "10:5",
            "--outage-mode",
            "refuse",
            "--fail-init-container",
            "lessons",
            "--seed",
            "3",
            "--singleuser",
            "light",
            "--present-image",
            "img:1",
            "--image-entrypoint",
            "img:1=tini -g --",
        ]
    )
    faults, kubelet = configs_from_args(args)
    assert faults.provision_delay == 2 and faults.provision_max_in_flight == 4
    assert faults.image_pull_delay == 5 and faults.api_error_rate == 0.1
    assert faults.api_error_codes == [503, 429] and faults.outages == [(10.0, 5.0)]
    assert faults.outage_mode == "refuse" and faults.fail_init_containers == ["lessons"]
    assert faults.seed == 3
    assert kubelet.singleuser == "light" and kubelet.present_images == ["img:1"]
    assert kubelet.image_entrypoints == {"img:1": ["tini", "-g", "--"]}
