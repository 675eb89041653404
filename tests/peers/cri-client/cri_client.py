#!/usr/bin/python3
"""The project's CRI test client: runs a pod of two busybox containers through a CRI endpoint
(containerd's CRI plugin), the way the kubelet would, and prints what happened as JSON.

usage: cri_client.py --socket PATH --handler NAME --image REF --logs DIR [--timeout SECONDS]
                     [--network pod|node] [--probe URL]
With --network pod the pod gets a network namespace from CNI; each container prints its eth0
address ("addr ...") and, with --probe, what it fetched from URL ("probe ...").
Needs Debian's python3-grpcio and python3-protobuf, and protoc (the messages are compiled from
cri_subset.proto at start)."""
import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))


def load_messages():
    out = tempfile.mkdtemp(prefix="cri-client-")
    subprocess.run(["protoc", "-I", HERE, "--python_out", out, "cri_subset.proto"], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("cri_subset_pb2")


class Runtime:
    def __init__(self, socket, pb, timeout):
        self.channel = grpc.insecure_channel("unix://" + socket)
        self.pb = pb
        self.timeout = timeout

    def call(self, method, request, response):
        rpc = self.channel.unary_unary(
            "/runtime.v1.RuntimeService/" + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=getattr(self.pb, response).FromString)
        return rpc(request, timeout=self.timeout)


def wait_for(what, condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError("timed out waiting for " + what)


def log_text(path):
    """The messages of a CRI log file ("<time> <stream> <tag> <message>" lines)."""
    try:
        with open(path) as f:
            return "\n".join(line.rstrip("\n").split(" ", 3)[3] for line in f if line.count(" ") >= 3)
    except FileNotFoundError:
        return ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--network", choices=["pod", "node"], default="node")
    parser.add_argument("--probe", default="")
    args = parser.parse_args()
    pb = load_messages()
    rt = Runtime(args.socket, pb, args.timeout)
    result = {"steps": []}

    def step(name):
        result["steps"].append(name)

    version = rt.call("Version", pb.VersionRequest(version="v1"), "VersionResponse")
    result["runtime"] = version.runtime_name + " " + version.runtime_version
    pod_network = args.network == "pod"
    namespaces = pb.NamespaceOption(network=pb.POD if pod_network else pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="cocoon-pod", uid=str(uuid.uuid4()), namespace="default"),
        # The kubelet leaves the hostname empty for host-network pods (no UTS namespace of their own).
        hostname="cocoon-pod" if pod_network else "", log_directory=args.logs,
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=namespaces)))
    pod = rt.call("RunPodSandbox", pb.RunPodSandboxRequest(config=sandbox_config, runtime_handler=args.handler),
                  "RunPodSandboxResponse").pod_sandbox_id
    result["pod"] = pod
    step("RunPodSandbox")
    if pod_network:
        status = rt.call("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=pod), "PodSandboxStatusResponse").status
        result["pod_ip"] = status.network.ip
    containers = {}
    try:
        for name in ("app1", "app2"):
            config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=args.image),
                command=["sh", "-c", 'echo "hello from $NAME"; echo "boot $(cat /proc/sys/kernel/random/boot_id)"; '
                                     + ('echo "addr $(ip -o -4 addr show dev eth0 | awk \'{print $4}\')"; ' if pod_network else '')
                                     + ('echo "probe $(wget -q -O - %s)"; ' % args.probe if args.probe else '')
                                     + 'echo "ipc $(readlink /proc/self/ns/ipc)"; exec sleep 1000'],
                envs=[pb.KeyValue(key="NAME", value=name)], log_path=name + ".log",
                linux=pb.LinuxContainerConfig(
                    resources=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20),
                    security_context=pb.LinuxContainerSecurityContext(namespace_options=namespaces)))
            containers[name] = rt.call("CreateContainer", pb.CreateContainerRequest(
                pod_sandbox_id=pod, config=config, sandbox_config=sandbox_config), "CreateContainerResponse").container_id
        step("CreateContainer x2")
        for cid in containers.values():
            rt.call("StartContainer", pb.StartContainerRequest(container_id=cid), "StartContainerResponse")
        step("StartContainer x2")
        result["logs"] = {}
        for name in containers:
            path = os.path.join(args.logs, name + ".log")
            result["logs"][name] = wait_for(name + "'s log", lambda: (t := log_text(path)) and "ipc " in t and t, 60)
        step("logs")
        # ExecSync in the VM, and a new memory limit (64 MiB at create) that the guest cgroup then shows.
        app1 = containers["app1"]
        limit_file = "/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup | tail -1)/memory.max"
        show = ["sh", "-c", "cat " + limit_file + "; echo to-stderr >&2; exit 3"]
        before = rt.call("ExecSync", pb.ExecSyncRequest(container_id=app1, cmd=show, timeout=60), "ExecSyncResponse")
        rt.call("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
            container_id=app1, linux=pb.LinuxContainerResources(memory_limit_in_bytes=48 << 20)),
            "UpdateContainerResourcesResponse")
        after = rt.call("ExecSync", pb.ExecSyncRequest(container_id=app1, cmd=show, timeout=60), "ExecSyncResponse")
        result["exec"] = [{"stdout": r.stdout.decode(), "stderr": r.stderr.decode(), "exit_code": r.exit_code}
                          for r in (before, after)]
        step("ExecSync, UpdateContainerResources")
        result["running"] = {name: pb.ContainerState.Name(rt.call(
            "ContainerStatus", pb.ContainerStatusRequest(container_id=cid), "ContainerStatusResponse").status.state)
            for name, cid in containers.items()}
        for cid in containers.values():
            rt.call("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=5), "StopContainerResponse")
        step("StopContainer x2")
        result["stopped"] = {}
        for name, cid in containers.items():
            status = rt.call("ContainerStatus", pb.ContainerStatusRequest(container_id=cid), "ContainerStatusResponse").status
            result["stopped"][name] = {"state": pb.ContainerState.Name(status.state), "exit_code": status.exit_code}
        for cid in containers.values():
            rt.call("RemoveContainer", pb.RemoveContainerRequest(container_id=cid), "RemoveContainerResponse")
        containers.clear()
        step("RemoveContainer x2")
    finally:
        # Always tear the pod down, also after a failure above, so the test leaves nothing behind.
        for cid in containers.values():
            try:
                rt.call("RemoveContainer", pb.RemoveContainerRequest(container_id=cid), "RemoveContainerResponse")
            except grpc.RpcError as e:
                result.setdefault("cleanup_errors", []).append(str(e.details()))
        rt.call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod), "StopPodSandboxResponse")
        rt.call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod), "RemovePodSandboxResponse")
        step("StopPodSandbox, RemovePodSandbox")
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        print("cri_client: %s: %s" % (e.code(), e.details()), file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - the test prints whatever went wrong
        print("cri_client: %s" % e, file=sys.stderr)
        sys.exit(1)
