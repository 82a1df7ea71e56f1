"""The Python `kubernetes` client against the apiserver: CRUD, lists, watch, errors and scale.

Usage: client_crud.py KUBECONFIG

Runs each scenario with the client's typed APIs and prints `ok <scenario>` when it passes.
Stops at the first failure with its traceback and exit code 1. The last line is `N passed, F failed`.
"""

import json
import sys
import threading
import time
import traceback

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"
# Every object this script makes has this label, so cleanup and lists can find them.
OWNER = {"created-by": "client-crud-py"}
# Upper bound for one request, so a stuck server fails the run instead of hanging it.
REQUEST_TIMEOUT = 30


def meta(name, **labels):
    return client.V1ObjectMeta(name=name, labels={**OWNER, **labels})


def configmap(name, data, **labels):
    return client.V1ConfigMap(metadata=meta(name, **labels), data=data)


def pod(name, image="nginx:1.27", **labels):
    return client.V1Pod(
        metadata=meta(name, **labels),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="web",
                    image=image,
                    ports=[client.V1ContainerPort(container_port=80)],
                )
            ]
        ),
    )


def status_of(err):
    """The Status object in an ApiException's body, as a dict."""
    try:
        return json.loads(err.body)
    except (TypeError, ValueError) as e:
        raise AssertionError(f"HTTP {err.status} body is not a JSON Status: {err.body!r}") from e


def expect_api_error(call, code, reason, what):
    """Runs `call`, which must raise ApiException `code` with a Status of `reason`; returns the Status."""
    try:
        got = call()
    except ApiException as e:
        assert e.status == code, f"{what}: want HTTP {code}, got {e.status}: {e.body}"
        status = status_of(e)
        assert status.get("kind") == "Status", f"{what}: body kind: {status}"
        assert status.get("status") == "Failure", f"{what}: body status: {status}"
        assert status.get("code") == code, f"{what}: body code: {status}"
        assert status.get("reason") == reason, f"{what}: want reason {reason}: {status}"
        return status
    raise AssertionError(f"{what}: want HTTP {code} {reason}, the call succeeded with {got!r}")


def wait_gone(read, what, timeout=10.0):
    """Polls `read` until it raises 404."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            read()
        except ApiException as e:
            if e.status == 404:
                return
            raise
        assert time.monotonic() < deadline, f"{what} still exists {timeout}s after delete"
        time.sleep(0.1)


def delete_quietly(delete, *args):
    try:
        delete(*args)
    except ApiException as e:
        if e.status != 404:
            raise


class Scenarios:
    """One method per scenario, in the order they run."""

    def __init__(self):
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()

    def configmap_crud(self):
        core = self.core
        created = core.create_namespaced_config_map(NS, configmap("py-cm", {"a": "1"}))
        try:
            assert isinstance(created, client.V1ConfigMap), f"create returned {type(created)}"
            assert created.metadata.uid, f"create: no uid: {created.metadata}"
            assert created.metadata.resource_version, f"create: no resourceVersion: {created.metadata}"
            assert created.metadata.creation_timestamp is not None, f"create: {created.metadata}"
            assert created.metadata.namespace == NS, f"create: {created.metadata}"

            got = core.read_namespaced_config_map("py-cm", NS)
            assert isinstance(got, client.V1ConfigMap), f"read returned {type(got)}"
            assert got.data == {"a": "1"}, f"read data: {got.data}"
            assert got.metadata.uid == created.metadata.uid, "read: uid changed"

            got.data = {"a": "2", "b": "x"}
            replaced = core.replace_namespaced_config_map("py-cm", NS, got)
            assert replaced.data == {"a": "2", "b": "x"}, f"replace data: {replaced.data}"
            assert replaced.metadata.resource_version != got.metadata.resource_version, (
                "replace kept the resourceVersion"
            )

            patched = core.patch_namespaced_config_map(
                "py-cm", NS, {"data": {"c": "3"}, "metadata": {"labels": {"patched": "yes"}}}
            )
            assert patched.data == {"a": "2", "b": "x", "c": "3"}, f"patch merges data: {patched.data}"
            assert patched.metadata.labels.get("patched") == "yes", f"patch labels: {patched.metadata}"
            assert core.read_namespaced_config_map("py-cm", NS).data["c"] == "3", "patch not stored"

            core.delete_namespaced_config_map("py-cm", NS)
            wait_gone(lambda: core.read_namespaced_config_map("py-cm", NS), "configmap py-cm")
        finally:
            delete_quietly(core.delete_namespaced_config_map, "py-cm", NS)

    def pod_crud(self):
        core = self.core
        created = core.create_namespaced_pod(NS, pod("py-web", app="py-web"))
        try:
            assert isinstance(created, client.V1Pod), f"create returned {type(created)}"
            got = core.read_namespaced_pod("py-web", NS)
            assert isinstance(got, client.V1Pod), f"read returned {type(got)}"
            c = got.spec.containers[0]
            assert isinstance(c, client.V1Container), f"container is {type(c)}"
            assert c.image == "nginx:1.27", f"image: {c.image}"
            assert c.ports[0].container_port == 80, f"ports: {c.ports}"
            assert got.spec.restart_policy == "Always", f"defaulted restartPolicy: {got.spec.restart_policy}"
            assert got.spec.dns_policy == "ClusterFirst", f"defaulted dnsPolicy: {got.spec.dns_policy}"
            assert c.image_pull_policy == "IfNotPresent", f"defaulted imagePullPolicy: {c.image_pull_policy}"
            assert got.metadata.labels["app"] == "py-web", f"labels: {got.metadata.labels}"
            assert got.status is not None and got.status.phase == "Pending", f"status: {got.status}"

            got.metadata.labels["tier"] = "front"
            replaced = core.replace_namespaced_pod("py-web", NS, got)
            assert replaced.metadata.labels.get("tier") == "front", f"replace labels: {replaced.metadata}"

            patched = core.patch_namespaced_pod(
                "py-web", NS, {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}
            )
            c = patched.spec.containers[0]
            assert len(patched.spec.containers) == 1, f"patch merges containers by name: {patched.spec.containers}"
            assert c.image == "nginx:1.28", f"patched image: {c.image}"
            assert c.ports and c.ports[0].container_port == 80, f"strategic merge keeps the port: {c.ports}"
            assert patched.metadata.labels.get("tier") == "front", f"patch kept labels: {patched.metadata}"

            deleted = core.delete_namespaced_pod("py-web", NS)
            assert isinstance(deleted, client.V1Pod), f"delete returned {type(deleted)}"
            wait_gone(lambda: core.read_namespaced_pod("py-web", NS), "pod py-web")
        finally:
            delete_quietly(core.delete_namespaced_pod, "py-web", NS)

    def list_selectors(self):
        core = self.core
        core.create_namespace(client.V1Namespace(metadata=meta("py-other")))
        try:
            core.create_namespaced_pod(NS, pod("py-a", app="py-list", tier="front"))
            core.create_namespaced_pod(NS, pod("py-b", app="py-list", tier="back"))
            core.create_namespaced_pod("py-other", pod("py-c", app="py-list", tier="back"))

            def names(pods):
                assert isinstance(pods, client.V1PodList), f"list returned {type(pods)}"
                assert isinstance(pods.items, list), f"items: {pods.items!r}"
                return sorted(p.metadata.name for p in pods.items)

            got = names(core.list_namespaced_pod(NS, label_selector="app=py-list"))
            assert got == ["py-a", "py-b"], f"label_selector app=py-list in {NS}: {got}"
            got = names(core.list_namespaced_pod(NS, label_selector="app=py-list,tier=front"))
            assert got == ["py-a"], f"label_selector tier=front: {got}"
            got = names(core.list_namespaced_pod(NS, label_selector="app=py-list,tier!=front"))
            assert got == ["py-b"], f"label_selector tier!=front: {got}"
            got = names(core.list_namespaced_pod(NS, field_selector="metadata.name=py-b"))
            assert got == ["py-b"], f"field_selector metadata.name=py-b: {got}"
            got = names(core.list_namespaced_pod(NS, label_selector="app=nothing-has-this"))
            assert got == [], f"label_selector matching nothing: {got}"

            every = core.list_pod_for_all_namespaces(label_selector="app=py-list")
            placed = sorted((p.metadata.namespace, p.metadata.name) for p in every.items)
            want = [(NS, "py-a"), (NS, "py-b"), ("py-other", "py-c")]
            assert placed == want, f"all namespaces: {placed}"
            assert every.metadata.resource_version, f"list resourceVersion: {every.metadata}"
        finally:
            for ns, name in [(NS, "py-a"), (NS, "py-b"), ("py-other", "py-c")]:
                delete_quietly(core.delete_namespaced_pod, name, ns)
            delete_quietly(core.delete_namespace, "py-other")

    def list_pagination(self):
        core = self.core
        want = [f"py-page-{i}" for i in range(5)]
        try:
            for name in want:
                core.create_namespaced_config_map(NS, configmap(name, {"n": name}, app="py-page"))
            seen, sizes, token = [], [], None
            for _ in range(10):
                page = core.list_namespaced_config_map(
                    NS, label_selector="app=py-page", limit=2, _continue=token
                )
                sizes.append(len(page.items))
                seen += [cm.metadata.name for cm in page.items]
                token = page.metadata._continue
                if not token:
                    break
            assert not token, f"still a continue token after 10 pages: {seen}"
            assert sizes == [2, 2, 1], f"page sizes with limit=2 over 5 configmaps: {sizes}"
            assert sorted(seen) == want, f"each configmap exactly once: {seen}"
        finally:
            for name in want:
                delete_quietly(core.delete_namespaced_config_map, name, NS)

    def watch_from_resource_version(self):
        core = self.core
        core.create_namespaced_config_map(NS, configmap("py-before", {"k": "v"}))
        events, errors = [], []
        done = threading.Event()
        w = watch.Watch()
        try:
            rv = core.list_namespaced_config_map(NS).metadata.resource_version
            assert rv, "list has no resourceVersion to watch from"

            def consume():
                try:
                    for ev in w.stream(
                        core.list_namespaced_config_map,
                        NS,
                        resource_version=rv,
                        timeout_seconds=5,
                        _request_timeout=REQUEST_TIMEOUT,
                    ):
                        obj = ev["object"]
                        if ev["type"] == "BOOKMARK":
                            continue
                        assert isinstance(obj, client.V1ConfigMap), f"watch object: {type(obj)}: {ev['raw_object']}"
                        events.append((ev["type"], obj.metadata.name, obj.data))
                        if ev["type"] == "DELETED" and obj.metadata.name == "py-watched":
                            w.stop()
                except Exception as e:  # reported by the main thread
                    errors.append(e)
                finally:
                    done.set()

            consumer = threading.Thread(target=consume, daemon=True)
            consumer.start()
            core.create_namespaced_config_map(NS, configmap("py-watched", {"step": "1"}))
            core.patch_namespaced_config_map("py-watched", NS, {"data": {"step": "2"}})
            core.delete_namespaced_config_map("py-watched", NS)
            assert done.wait(REQUEST_TIMEOUT), "watch did not end"
            if errors:
                raise errors[0]
            mine = [(t, d) for t, n, d in events if n == "py-watched"]
            assert [t for t, _ in mine] == ["ADDED", "MODIFIED", "DELETED"], f"events for py-watched: {events}"
            assert mine[0][1] == {"step": "1"} and mine[1][1] == {"step": "2"}, f"event objects: {mine}"
            assert all(n != "py-before" for _, n, _ in events), (
                f"a watch from the list's resourceVersion replays older objects: {events}"
            )

            rv = core.list_namespaced_config_map(NS).metadata.resource_version
            # The server must end this watch at timeoutSeconds (the e2e test bounds the whole run).
            quiet = [
                ev["type"]
                for ev in watch.Watch().stream(
                    core.list_namespaced_config_map,
                    NS,
                    resource_version=rv,
                    timeout_seconds=1,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            ]
            assert set(quiet) <= {"BOOKMARK"}, f"events on a quiet watch: {quiet}"
        finally:
            w.stop()
            delete_quietly(core.delete_namespaced_config_map, "py-watched", NS)
            delete_quietly(core.delete_namespaced_config_map, "py-before", NS)

    def stale_update_conflict(self):
        core = self.core
        core.create_namespaced_config_map(NS, configmap("py-stale", {"v": "0"}))
        try:
            old = core.read_namespaced_config_map("py-stale", NS)
            fresh = core.read_namespaced_config_map("py-stale", NS)
            fresh.data = {"v": "1"}
            core.replace_namespaced_config_map("py-stale", NS, fresh)
            old.data = {"v": "stale"}
            status = expect_api_error(
                lambda: core.replace_namespaced_config_map("py-stale", NS, old),
                409,
                "Conflict",
                "replace with an old resourceVersion",
            )
            assert "the object has been modified" in status.get("message", ""), f"message: {status}"
            got = core.read_namespaced_config_map("py-stale", NS)
            assert got.data == {"v": "1"}, f"the stale update must not be stored: {got.data}"
        finally:
            delete_quietly(core.delete_namespaced_config_map, "py-stale", NS)

    def invalid_object(self):
        core = self.core
        bad = pod("Bad_Name")
        bad.spec.containers[0].image = None
        try:
            status = expect_api_error(
                lambda: core.create_namespaced_pod(NS, bad), 422, "Invalid", "create an invalid pod"
            )
            details = status.get("details") or {}
            assert details.get("kind") == "Pod", f"details.kind: {status}"
            assert details.get("name") == "Bad_Name", f"details.name: {status}"
            causes = details.get("causes") or []
            fields = {c.get("field") for c in causes}
            assert {"metadata.name", "spec.containers[0].image"} <= fields, f"details.causes: {causes}"
            image = next(c for c in causes if c.get("field") == "spec.containers[0].image")
            assert image.get("reason") == "FieldValueRequired", f"image cause: {image}"
            assert "is invalid" in status.get("message", ""), f"message: {status}"
        finally:
            delete_quietly(core.delete_namespaced_pod, "Bad_Name", NS)

    def not_found_and_already_exists(self):
        core = self.core
        status = expect_api_error(
            lambda: core.read_namespaced_config_map("py-missing", NS), 404, "NotFound", "read a missing configmap"
        )
        assert status.get("message") == 'configmaps "py-missing" not found', f"message: {status}"
        assert (status.get("details") or {}).get("kind") == "configmaps", f"details: {status}"
        expect_api_error(
            lambda: core.delete_namespaced_config_map("py-missing", NS), 404, "NotFound", "delete a missing configmap"
        )
        core.create_namespaced_config_map(NS, configmap("py-dup", {"k": "v"}))
        try:
            status = expect_api_error(
                lambda: core.create_namespaced_config_map(NS, configmap("py-dup", {"k": "v"})),
                409,
                "AlreadyExists",
                "create a duplicate configmap",
            )
            assert status.get("message") == 'configmaps "py-dup" already exists', f"message: {status}"
        finally:
            delete_quietly(core.delete_namespaced_config_map, "py-dup", NS)

    def deployment_scale(self):
        apps = self.apps
        labels = {"app": "py-deploy"}
        body = client.V1Deployment(
            metadata=meta("py-deploy", **labels),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
                ),
            ),
        )
        created = apps.create_namespaced_deployment(NS, body)
        try:
            assert isinstance(created, client.V1Deployment), f"create returned {type(created)}"
            got = apps.read_namespaced_deployment("py-deploy", NS)
            assert got.spec.replicas == 1, f"replicas: {got.spec.replicas}"
            assert got.spec.strategy.type == "RollingUpdate", f"defaulted strategy: {got.spec.strategy}"
            assert got.spec.revision_history_limit == 10, f"defaulted revisionHistoryLimit: {got.spec}"
            assert got.spec.template.spec.containers[0].image == "nginx:1.27", f"template: {got.spec.template}"

            containers = [{"name": "web", "image": "nginx:1.28"}]
            patched = apps.patch_namespaced_deployment(
                "py-deploy", NS, {"spec": {"template": {"spec": {"containers": containers}}}}
            )
            assert patched.spec.template.spec.containers[0].image == "nginx:1.28", f"patch: {patched.spec.template}"

            scale = apps.patch_namespaced_deployment_scale("py-deploy", NS, {"spec": {"replicas": 3}})
            assert isinstance(scale, client.V1Scale), f"patch scale returned {type(scale)}"
            assert scale.spec.replicas == 3, f"patched scale: {scale.spec}"
            scale = apps.read_namespaced_deployment_scale("py-deploy", NS)
            assert isinstance(scale, client.V1Scale), f"read scale returned {type(scale)}"
            assert scale.metadata.name == "py-deploy", f"scale metadata: {scale.metadata}"
            assert scale.spec.replicas == 3, f"read scale: {scale.spec}"
            assert apps.read_namespaced_deployment("py-deploy", NS).spec.replicas == 3, "scale not stored"
        finally:
            delete_quietly(apps.delete_namespaced_deployment, "py-deploy", NS)


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} KUBECONFIG", file=sys.stderr)
        return 2
    config.load_kube_config(config_file=argv[1])
    scenarios = Scenarios()
    order = [
        "configmap_crud",
        "pod_crud",
        "list_selectors",
        "list_pagination",
        "watch_from_resource_version",
        "stale_update_conflict",
        "invalid_object",
        "not_found_and_already_exists",
        "deployment_scale",
    ]
    passed = 0
    for name in order:
        try:
            getattr(scenarios, name)()
        except Exception as err:
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            traceback.print_exc()
            print(f"{passed} passed, 1 failed", flush=True)
            return 1
        passed += 1
        print(f"ok {name}", flush=True)
    print(f"{passed} passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
