"""Simulated nodes (like kwok): a scheduler and a kubelet for every node.

- Nodes are registered at start with addresses, capacity and a Ready condition.
- The scheduler binds each unscheduled pod (``schedulerName: default-scheduler``) to the
  schedulable node matching its ``nodeSelector`` with the fewest pods.
- The kubelet starts bound pods: pod IP, host IP, a ``containerd://`` id per container, phase
  Running and Ready.  An image whose registry host ends in ``.invalid`` (a name that can never
  resolve, RFC 2606) fails to pull, as it would on a real node: ``ErrImagePull`` then
  ``ImagePullBackOff``.
- On deletion the kubelet stops the containers (terminated state), then deletes the pod with
  grace period 0, honouring finalizers.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import itertools
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from app.quantity import parse_quantity
from app.simcluster.controllers import Deferred
from app.simcluster.errors import ApiError
from app.simcluster.kinds import JSON, ResourceType
from app.simcluster.store import Event, Store, now

log = logging.getLogger(__name__)

POD_KEY = ("", "pods")
NODE_KEY = ("", "nodes")
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


@dataclass
class NodeSettings:
    """How the simulated nodes behave."""

    count: int = 1
    address: str = "127.0.0.1"
    start_delay: float = 0.05
    """Seconds from binding to Running (pulling and starting the containers)."""
    stop_delay: float = 0.05
    """Seconds a deleted pod takes to stop (bounded by its grace period)."""
    cpu: str = "64"
    memory: str = "256Gi"
    pods: str = "110"
    pod_cidr: str = str(POD_CIDR)
    """Pod network; each node gets a /24 of it.  A loopback range (``127.244.0.0/16``) makes
    pod IPs bindable, so forwarded container ports answer (see :mod:`.network`)."""
    proxy_node_ports: bool = False
    """Serve every NodePort on ``address`` like kube-proxy (see :mod:`.network`)."""


def node_name(index: int) -> str:
    return f"sim-node-{index + 1}"


def image_pull_error(image: str) -> str | None:
    """Why pulling ``image`` fails on a simulated node, or None when it succeeds."""
    first = image.split("/", 1)[0] if "/" in image else ""
    host = first.split(":", 1)[0]
    if host.endswith(".invalid"):
        return (
            f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": failed to do request: dial tcp: lookup '
            f"{host}: no such host"
        )
    return None


class NodeSimulator:
    """Scheduler and kubelets of the simulated nodes."""

    def __init__(
        self, store: Store, loop: asyncio.AbstractEventLoop, settings: NodeSettings
    ) -> None:
        self.store = store
        self.loop = loop
        self.settings = settings
        self.work = Deferred(loop, self._process)
        self._timers: dict[str, tuple[Callable[[JSON], object], asyncio.TimerHandle]] = {}
        self._bound: dict[str, str] = {}  # pod uid → node name (the scheduler's cache)
        self._ips: dict[str, str] = {}  # pod uid → pod IP
        self._waiting: set[str] = set()  # pods that did not fit on any node yet
        self._requests: dict[str, tuple[Decimal, Decimal]] = {}  # pod uid → (cpu, memory)
        store.listeners.append(self.on_event)
        for pod in store.objects(POD_KEY):
            self._index(pod, deleted=False)
            self.work.add(pod["metadata"]["uid"])

    def _index(self, pod: JSON, *, deleted: bool) -> None:
        uid = pod["metadata"].get("uid", "")
        node = (pod.get("spec") or {}).get("nodeName")
        ip = (pod.get("status") or {}).get("podIP")
        if deleted:
            self._bound.pop(uid, None)
            self._ips.pop(uid, None)
            self._requests.pop(uid, None)
            self._waiting.discard(uid)
            return
        self._requests[uid] = pod_requests(pod)
        if node:
            self._bound[uid] = node
            self._waiting.discard(uid)
        if ip:
            self._ips[uid] = ip

    def _pods(self) -> ResourceType:
        rt = self.store.types.lookup("", "v1", "pods")
        assert rt is not None
        return rt

    def _nodes_type(self) -> ResourceType:
        rt = self.store.types.lookup("", "v1", "nodes")
        assert rt is not None
        return rt

    def register_nodes(self) -> None:
        """Create the nodes that do not exist yet."""
        for index in range(self.settings.count):
            name = node_name(index)
            if self.store.find(NODE_KEY, "", name) is not None:
                continue
            self.store.create(self._nodes_type(), "", self._node_object(index))

    def _node_cidr(self, index: int) -> str:
        network = ipaddress.ip_network(self.settings.pod_cidr)
        return str(next(itertools.islice(network.subnets(new_prefix=24), index, None)))

    def _node_object(self, index: int) -> JSON:
        name = node_name(index)
        stamp = now()
        capacity = {
            "cpu": self.settings.cpu,
            "memory": self.settings.memory,
            "pods": self.settings.pods,
            "ephemeral-storage": "100Gi",
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                    "type": "simulated",
                },
            },
            "spec": {
                "podCIDR": self._node_cidr(index),
                "podCIDRs": [self._node_cidr(index)],
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": self.settings.address},
                    {"type": "Hostname", "address": name},
                ],
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    },
                ],
                "nodeInfo": {
                    "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                    "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                    "bootID": str(uuid.uuid4()),
                    "kubeletVersion": "v1.20.2",
                    "kubeProxyVersion": "v1.20.2",
                    "containerRuntimeVersion": "containerd://1.6.20",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "osImage": "Devbox simulated node",
                    "kernelVersion": "simulated",
                },
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        }

    # ------------------------------------------------------------------ events

    def on_event(self, event: Event) -> None:
        if event.key == POD_KEY and event.type != "DELETED":
            self._index(event.obj, deleted=False)
            self.work.add(event.obj["metadata"]["uid"])
        elif event.key == POD_KEY:
            self._index(event.obj, deleted=True)
            timer = self._timers.pop(event.obj["metadata"].get("uid", ""), None)
            if timer:
                timer[1].cancel()
            for waiting in self._waiting:  # room freed: retry pods that did not fit
                self.work.add(waiting)
        elif event.key == NODE_KEY:
            for waiting in self._waiting:
                self.work.add(waiting)

    def _process(self, uids: set[str]) -> None:
        for uid in uids:
            pod = self.store.by_uid(uid)
            if pod is None:
                continue
            spec = pod.get("spec") or {}
            node = spec.get("nodeName")
            if not node:
                if not pod["metadata"].get("deletionTimestamp"):
                    self._schedule(pod)
                continue
            if self.store.find(NODE_KEY, "", node) is None or not node.startswith("sim-node-"):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self._later(uid, self._stop_delay(pod), self._stop)
            elif (pod.get("status") or {}).get("phase") == "Pending" and not (
                pod.get("status") or {}
            ).get("startTime"):
                self._later(uid, self.settings.start_delay, self._start)

    def _later(self, uid: str, delay: float, action: Callable[[JSON], object]) -> None:
        """Run ``action`` on the pod after ``delay``; a different pending action is replaced."""
        pending = self._timers.get(uid)
        if pending is not None:
            if pending[0] == action:
                return
            pending[1].cancel()

        def fire() -> None:
            self._timers.pop(uid, None)
            pod = self.store.by_uid(uid)
            if pod is None:
                return
            try:
                action(pod)
            except ApiError as exc:
                log.debug("kubelet: %s", exc.message)
            except Exception:  # a simulated kubelet bug must not take the API down
                log.exception("simulated kubelet failed on pod %s", uid)

        self._timers[uid] = (action, self.loop.call_later(delay, fire))

    def _stop_delay(self, pod: JSON) -> float:
        grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
        return min(float(grace), self.settings.stop_delay)

    # ------------------------------------------------------------------ scheduler

    def _schedule(self, pod: JSON) -> None:
        spec = pod.get("spec") or {}
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        selector = spec.get("nodeSelector") or {}
        load = Counter(self._bound.values())
        used_cpu: dict[str, Decimal] = {}
        used_memory: dict[str, Decimal] = {}
        for bound_uid, bound_node in self._bound.items():
            cpu, memory = self._requests.get(bound_uid, (Decimal(0), Decimal(0)))
            used_cpu[bound_node] = used_cpu.get(bound_node, Decimal(0)) + cpu
            used_memory[bound_node] = used_memory.get(bound_node, Decimal(0)) + memory
        want_cpu, want_memory = pod_requests(pod)
        nodes = self.store.objects(NODE_KEY)
        candidates: list[str] = []
        misfits: Counter[str] = Counter()
        for node in nodes:
            name = node["metadata"]["name"]
            labels = node["metadata"].get("labels") or {}
            if (node.get("spec") or {}).get("unschedulable"):
                misfits["node(s) were unschedulable"] += 1
                continue
            if any(labels.get(k) != v for k, v in selector.items()):
                misfits["node(s) didn't match node selector"] += 1
                continue
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            if load[name] >= int(allocatable.get("pods", 110)):
                misfits["Too many pods"] += 1
                continue
            short = False
            for resource, want, used in (
                ("cpu", want_cpu, used_cpu),
                ("memory", want_memory, used_memory),
            ):
                if want and used.get(name, Decimal(0)) + want > parse_quantity(
                    allocatable.get(resource, "0")
                ):
                    misfits[f"Insufficient {resource}"] += 1
                    short = True
            if not short:
                candidates.append(name)
        if not candidates:
            reasons = ", ".join(sorted(f"{count} {why}" for why, count in misfits.items()))
            self._waiting.add(pod["metadata"]["uid"])
            self._unschedulable(pod, len(nodes), reasons)
            return
        chosen = min(candidates, key=lambda n: (load[n], n))
        self.bind(pod, chosen)

    def bind(self, pod: JSON, node: str) -> JSON:
        """Bind a pod to a node (what the ``pods/binding`` subresource does)."""
        updated = copy.deepcopy(pod)
        updated["spec"]["nodeName"] = node
        status = updated.setdefault("status", {})
        status["conditions"] = _with_condition(
            status.get("conditions") or [],
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
            },
        )
        return self.store.commit_internal(self._pods(), updated, pod)

    def _unschedulable(self, pod: JSON, nodes: int, reasons: str) -> None:
        updated = copy.deepcopy(pod)
        status = updated.setdefault("status", {})
        status["conditions"] = _with_condition(
            status.get("conditions") or [],
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
                "reason": "Unschedulable",
                "message": f"0/{nodes} nodes are available: {reasons}.",
            },
        )
        if updated != pod:
            self.store.commit_internal(self._pods(), updated, pod)

    # ------------------------------------------------------------------ kubelet

    def _start(self, pod: JSON) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._later(pod["metadata"]["uid"], self._stop_delay(pod), self._stop)
            return
        spec = pod["spec"]
        node = self.store.find(NODE_KEY, "", spec["nodeName"])
        if node is None:
            return
        host_ip = next(
            (a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"),
            self.settings.address,
        )
        updated = copy.deepcopy(pod)
        status = updated.setdefault("status", {})
        stamp = now()
        status["hostIP"] = host_ip
        status["podIP"] = self._pod_ip(node)
        status["podIPs"] = [{"ip": status["podIP"]}]
        status["startTime"] = stamp
        statuses = []
        failures = []
        for container in spec.get("containers") or []:
            error = image_pull_error(container.get("image", ""))
            if error:
                failures.append(error)
                statuses.append(
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {"waiting": {"reason": "ErrImagePull", "message": error}},
                        "lastState": {},
                    }
                )
                continue
            statuses.append(
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": container.get("image", "") + "@sha256:" + secrets.token_hex(32),
                    "containerID": "containerd://" + secrets.token_hex(32),
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": stamp}},
                    "lastState": {},
                }
            )
        status["containerStatuses"] = statuses
        ready = "False" if failures else "True"
        conditions = status.get("conditions") or []
        for kind in ("Initialized", "Ready", "ContainersReady"):
            condition = {
                "type": kind,
                "status": "True" if kind == "Initialized" else ready,
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }
            if kind != "Initialized" and failures:
                names = ", ".join(s["name"] for s in statuses if not s["ready"])
                condition["reason"] = "ContainersNotReady"
                condition["message"] = f"containers with unready status: [{names}]"
            conditions = _with_condition(conditions, condition)
        status["conditions"] = conditions
        status["phase"] = "Pending" if failures else "Running"
        self.store.commit_internal(self._pods(), updated, pod)
        if failures:
            uid = pod["metadata"]["uid"]
            self._later(uid, 1.0, self._back_off)

    def _back_off(self, pod: JSON) -> None:
        updated = copy.deepcopy(pod)
        changed = False
        for status in (updated.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") == "ErrImagePull":
                waiting["reason"] = "ImagePullBackOff"
                waiting["message"] = f'Back-off pulling image "{status["image"]}"'
                changed = True
        if changed:
            self.store.commit_internal(self._pods(), updated, pod)

    def _pod_ip(self, node: JSON) -> str:
        cidr = ipaddress.ip_network((node.get("spec") or {}).get("podCIDR") or "10.244.0.0/24")
        used = set(self._ips.values())
        for host in cidr.hosts():
            if str(host) not in used and host != cidr.network_address + 1:
                return str(host)
        raise RuntimeError(f"no pod IPs left on {node['metadata']['name']}")

    def _stop(self, pod: JSON) -> None:
        updated = copy.deepcopy(pod)
        stamp = now()
        for status in (updated.get("status") or {}).get("containerStatuses") or []:
            running = (status.get("state") or {}).get("running")
            if running:
                status["state"] = {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": running.get("startedAt"),
                        "finishedAt": stamp,
                        "containerID": status.get("containerID"),
                    }
                }
                status["ready"] = False
                status["started"] = False
        if updated != pod:
            pod = self.store.commit_internal(self._pods(), updated, pod)
        meta = pod["metadata"]
        self.store.delete(
            self._pods(),
            meta["namespace"],
            meta["name"],
            grace_period=0,
            preconditions={"uid": meta["uid"]},
        )


def pod_requests(pod: JSON) -> tuple[Decimal, Decimal]:
    """The CPU and memory a pod requests (a container's limits stand in for missing requests)."""
    cpu = memory = Decimal(0)
    for container in (pod.get("spec") or {}).get("containers") or []:
        if not isinstance(container, dict):
            continue
        resources = container.get("resources") or {}
        requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        try:
            cpu += parse_quantity(requests.get("cpu", 0))
            memory += parse_quantity(requests.get("memory", 0))
        except ValueError:
            continue
    return cpu, memory


def _with_condition(conditions: list[JSON], condition: JSON) -> list[JSON]:
    result = [c for c in conditions if c.get("type") != condition["type"]]
    previous = next((c for c in conditions if c.get("type") == condition["type"]), None)
    if previous and previous.get("status") == condition.get("status"):
        condition = {**condition, "lastTransitionTime": previous.get("lastTransitionTime")}
    result.append(condition)
    return result
