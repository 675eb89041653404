#!/usr/bin/env bash
# make bench-shim: `ctr run --rm` of busybox `true` end to end through containerd-shim-cocoon-v2 (a VM per
# run), next to the same through containerd's runc shim, on a private containerd, in the same run.
# usage: scripts/bench-shim.sh SHIM_DIR COCOON_CONFIG [RUNS]
set -euo pipefail
shim_dir=${1:?usage: bench-shim.sh SHIM_DIR COCOON_CONFIG [RUNS]}
config=${2:?usage: bench-shim.sh SHIM_DIR COCOON_CONFIG [RUNS]}
runs=${3:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cocoon-bench-shim.XXXXXX)
sock=$work/containerd.sock
cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
TOML
PATH="$shim_dir:$PATH" COCOON_CONFIG=$config containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctd=$!
cleanup() {
  kill "$ctd" 2>/dev/null || true
  wait "$ctd" 2>/dev/null || true
  grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
bash "$here/tests/fixtures/make-busybox-image.sh" "$work/busybox.tar" >/dev/null
ctr -a "$sock" images import "$work/busybox.tar" >/dev/null
image=docker.io/library/busybox:cocoon

# Prints the median wall time in seconds of RUNS `ctr run --rm` of `true` with the given runtime.
measure() {
  local runtime=$1 times=() i start end
  for i in $(seq "$runs"); do
    start=$(date +%s%N)
    ctr -a "$sock" run --rm --runtime "$runtime" "$image" "bench-$i" true </dev/null >/dev/null
    end=$(date +%s%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.4f", (b - a) / 1e9}')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
# One unmeasured run each, so that first-use costs (page cache, snapshot unpack) are not counted.
ctr -a "$sock" run --rm --runtime io.containerd.runc.v2 "$image" warm-runc true </dev/null >/dev/null
ctr -a "$sock" run --rm --runtime io.containerd.cocoon.v2 "$image" warm-cocoon true </dev/null >/dev/null
runc=$(measure io.containerd.runc.v2)
cocoon=$(measure io.containerd.cocoon.v2)
accel=$(grep -o 'accel="[a-z]*"' "$work/containerd.log" | tail -1 || true)
printf 'ctr run --rm busybox true, median of %d (%s)\n' "$runs" "${accel:-accel unknown}"
printf '  runc shim (io.containerd.runc.v2):      %6.3f s\n' "$runc"
printf '  cocoon shim (io.containerd.cocoon.v2):  %6.3f s   ratio %.2f\n' "$cocoon" "$(awk -v a="$cocoon" -v b="$runc" 'BEGIN {print a / b}')"
