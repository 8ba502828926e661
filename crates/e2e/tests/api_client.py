"""A second API client for the lab's API server: the Python `kubernetes` package.

Run by crates/e2e/tests/api_faults.rs as `python3 api_client.py KUBECONFIG NAMESPACE COUNT`.
It lists pods, then watches the ConfigMaps of NAMESPACE (from the list's resourceVersion) in a
thread, resuming from the last resourceVersion it saw whenever the stream breaks, while it
creates COUNT ConfigMaps before, during and after an API server restart:

  1. creates before-0..COUNT-1, waits until the watch has seen them, prints `READY-TO-KILL`;
  2. the test SIGKILLs the API server and writes a line to our stdin;
  3. creates during-0..COUNT-1 at once, retrying each until the (restarted) server takes it;
  4. creates after-0..COUNT-1 against the server that is back;
  5. waits until the watch has seen them all (or 30 s), prints `RESULT <json>` and exits.

The JSON says what the watch saw (type, name, resourceVersion of every event), where it
resumed, what was created with which resourceVersion, and how many attempts each create took:
the Rust test asserts on it.
"""

import json
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main():
    kubeconfig, namespace, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()
    result = {
        "pods": [],
        "list_rv": None,
        "created": {},
        "attempts": {},
        "create_errors": {},
        "events": [],
        "resumes": [],
        "watch_errors": [],
        "gone": False,
    }

    pods = v1.list_pod_for_all_namespaces(_request_timeout=10)
    result["pods"] = sorted(
        f"{p.metadata.namespace}/{p.metadata.name}" for p in pods.items
    )
    v1.create_namespace({"metadata": {"name": namespace}}, _request_timeout=10)
    listed = v1.list_namespaced_config_map(namespace, _request_timeout=10)
    result["list_rv"] = listed.metadata.resource_version

    lock = threading.Lock()
    seen = {}  # name -> number of ADDED events

    def watcher():
        rv = result["list_rv"]
        first = True
        while True:
            if not first:
                with lock:
                    result["resumes"].append(rv)
            first = False
            try:
                w = watch.Watch()
                for event in w.stream(
                    v1.list_namespaced_config_map,
                    namespace,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                    _request_timeout=(3, 15),
                ):
                    kind = event["type"]
                    obj = event["object"]
                    if kind == "BOOKMARK":
                        new_rv = obj["metadata"]["resourceVersion"] if isinstance(obj, dict) else obj.metadata.resource_version
                        rv = new_rv
                        continue
                    name = obj.metadata.name
                    rv = obj.metadata.resource_version
                    with lock:
                        result["events"].append([kind, name, rv])
                        if kind == "ADDED":
                            seen[name] = seen.get(name, 0) + 1
            except ApiException as e:
                with lock:
                    result["watch_errors"].append(f"{e.status} {e.reason}")
                    if e.status == 410:
                        result["gone"] = True
                        return
                time.sleep(0.2)
            except Exception as e:  # the server went away mid-stream, or refused
                with lock:
                    result["watch_errors"].append(type(e).__name__)
                time.sleep(0.2)

    threading.Thread(target=watcher, daemon=True).start()

    def create(name):
        body = {"metadata": {"name": name}, "data": {"name": name}}
        attempts = 0
        deadline = time.time() + 30
        while True:
            attempts += 1
            try:
                made = v1.create_namespaced_config_map(
                    namespace, body, _request_timeout=(2, 5)
                )
                result["created"][name] = made.metadata.resource_version
                break
            except ApiException as e:
                if e.status == 409 and attempts > 1:
                    # A try that the old server stored before it died: read what is there.
                    got = v1.read_namespaced_config_map(name, namespace, _request_timeout=5)
                    result["created"][name] = got.metadata.resource_version
                    break
                result["create_errors"].setdefault(name, []).append(f"{e.status} {e.reason}")
            except Exception as e:
                result["create_errors"].setdefault(name, []).append(type(e).__name__)
            if time.time() > deadline:
                break
            time.sleep(0.1)
        result["attempts"][name] = attempts

    def wait_seen(names, secs):
        deadline = time.time() + secs
        while time.time() < deadline:
            with lock:
                if all(seen.get(n, 0) >= 1 for n in names):
                    return True
            time.sleep(0.05)
        return False

    before = [f"before-{i}" for i in range(count)]
    for name in before:
        create(name)
    wait_seen(before, 15)
    print("READY-TO-KILL", flush=True)
    sys.stdin.readline()

    during = [f"during-{i}" for i in range(count)]
    for name in during:
        create(name)
    after = [f"after-{i}" for i in range(count)]
    for name in after:
        create(name)
    wait_seen(before + during + after, 30)
    # A little longer, so a duplicate delivered late is seen too.
    time.sleep(1)
    with lock:
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
