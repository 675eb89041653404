#!/usr/bin/env bash
# make bench-docker: `docker run --rm busybox true` with cocoon (a VM per container, through the runc
# command line) next to the same with runc, on a private dockerd and containerd, in the same run.
# usage: scripts/bench-docker.sh COCOON COCOON_CONFIG [RUNS]
set -euo pipefail
cocoon=${1:?usage: bench-docker.sh COCOON COCOON_CONFIG [RUNS]}
config=${2:?usage: bench-docker.sh COCOON COCOON_CONFIG [RUNS]}
runs=${3:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cocoon-bench-docker.XXXXXX)
sock=$work/containerd.sock
cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd-root"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
TOML
cat > "$work/daemon.json" <<JSON
{
  "runtimes": { "cocoon": { "path": "$cocoon", "runtimeArgs": ["--config", "$config"] } },
  "iptables": false, "bridge": "none", "ip-forward": false, "ip-masq": false,
  "data-root": "$work/docker-data", "exec-root": "$work/docker-exec", "pidfile": "$work/docker.pid",
  "hosts": ["unix://$work/docker.sock"], "containerd": "$sock", "storage-driver": "vfs"
}
JSON
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctd=$!
dockerd_pid=
cleanup() {
  [ -n "$dockerd_pid" ] && { command docker -H "unix://$work/docker.sock" rm -f $(command docker -H "unix://$work/docker.sock" ps -aq) >/dev/null 2>&1 || true; kill "$dockerd_pid" 2>/dev/null || true; wait "$dockerd_pid" 2>/dev/null || true; }
  kill "$ctd" 2>/dev/null || true
  wait "$ctd" 2>/dev/null || true
  grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
dockerd --config-file "$work/daemon.json" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
docker() { command docker -H "unix://$work/docker.sock" "$@"; }
for _ in $(seq 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
bash "$here/tests/fixtures/make-busybox-rootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -c . | docker import - busybox:cocoon >/dev/null

# Prints the median wall time in seconds of RUNS `docker run --rm busybox true` with the given runtime.
measure() {
  local runtime=$1 times=() i start end
  for i in $(seq "$runs"); do
    start=$(date +%s%N)
    docker run --rm --runtime "$runtime" --network none busybox:cocoon true </dev/null >/dev/null
    end=$(date +%s%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.4f", (b - a) / 1e9}')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
# One unmeasured run each: first-use costs (page cache, image layers) are not counted.
docker run --rm --runtime runc --network none busybox:cocoon true </dev/null >/dev/null
docker run --rm --runtime cocoon --network none busybox:cocoon true </dev/null >/dev/null
runc=$(measure runc)
vm=$(measure cocoon)
accel=$(grep -ho 'accel=[a-z]*' "$work"/docker-exec/runtime-cocoon/moby/*/daemon.log 2>/dev/null | tail -1 || true)
printf 'docker run --rm busybox true, median of %d\n' "$runs"
printf '  runc:                         %6.3f s\n' "$runc"
printf '  cocoon (VM per container):    %6.3f s   ratio %.2f\n' "$vm" "$(awk -v a="$vm" -v b="$runc" 'BEGIN {print a / b}')"
