#!/usr/bin/env bash
# Installs every Debian package cocoon needs to build, test and run. Idempotent: installs only
# what is missing, and runs apt-get update only then.
set -euo pipefail

packages=(
  # cocoon itself: libseccomp for seccomp profiles (static library for cocoon-init and the agent)
  libseccomp-dev
  # guest kernel build
  linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev xz-utils cpio file e2fsprogs
  # running VMs
  qemu-system-x86 qemu-system-common
  # host tools the tests and benchmarks use
  procps iproute2 util-linux
  # container test fixtures, and the runtimes the benchmarks compare with
  busybox-static runc crun
  # real clients in the tests: containerd and ctr, and umoci to build the offline busybox image
  containerd umoci docker.io podman
  # protobuf code generation (make protos), and the Go ttrpc library the tests use as an independent peer
  protobuf-compiler golang-go golang-github-containerd-ttrpc-dev golang-github-gogo-protobuf-dev
  # containerd's own protos, for the shim's generated Swift (make protos)
  golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev
  # the project's CRI test client (tests/peers/cri-client), run with Debian's python3
  python3-grpcio python3-protobuf
  # the systemd cgroup driver's tests: a real systemd (booted by the test in namespaces of its own) and a
  # private dbus-daemon for the D-Bus client's tests
  systemd dbus-daemon
  # pod networking: CNI plugins (bridge, host-local) for the CRI test, iperf3 for make bench-net
  containernetworking-plugins iperf3
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or install them) and retry" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
