#!/usr/bin/env bash
# make bench-net: TCP throughput (iperf3, 5 s) and round-trip latency (ping, 20 echoes) between a VM-mode
# container that took over a pod network namespace and a peer namespace, next to the same between two
# plain namespaces (what a runc pod gets), in the same run, as ratios. Addresses from 198.18.0.0/15 only.
# usage: scripts/bench-net.sh COCOON COCOON_CONFIG
set -euo pipefail
cocoon=${1:?usage: bench-net.sh COCOON COCOON_CONFIG}
config=${2:?usage: bench-net.sh COCOON COCOON_CONFIG}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v iperf3 >/dev/null || { echo "bench-net: iperf3 not found (make deps)" >&2; exit 1; }
work=$(mktemp -d /tmp/cocoon-bench-net.XXXXXX)
peer=cocoon-bn-peer-$$ pod=cocoon-bn-pod-$$
root=/run/cocoon-bench
cleanup() {
  ip netns pids "$peer" 2>/dev/null | xargs -r kill -9 || true
  ip netns del "$peer" 2>/dev/null || true
  ip netns del "$pod" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$peer"; ip netns add "$pod"
ip link add bn-peer netns "$peer" type veth peer name eth0 netns "$pod"
ip -n "$peer" link set lo up; ip -n "$peer" link set bn-peer up; ip -n "$pod" link set lo up; ip -n "$pod" link set eth0 up
ip -n "$peer" addr add 198.18.20.1/24 dev bn-peer; ip -n "$pod" addr add 198.18.20.2/24 dev eth0

# The container's rootfs: busybox plus iperf3 and the libraries it links.
rootfs=$work/bundle/rootfs
bash "$here/tests/fixtures/make-busybox-rootfs.sh" "$rootfs" >/dev/null
for f in /usr/bin/iperf3 $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$f")"
  cp -L "$f" "$rootfs$f"
done
(cd "$work/bundle" && "$cocoon" spec)
python3 - "$work/bundle/config.json" "/var/run/netns/$pod" <<'PY'
import json, sys
path, netns = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "iperf3 -c 198.18.20.1 -t 5 -J > /tmp/iperf.json; "
                        "grep -A8 '\"sum_received\"' /tmp/iperf.json | grep bits_per_second; ping -c 20 -i 0.2 198.18.20.1 | tail -1"]
c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
# busybox ping needs a raw socket.
for kind in c["process"]["capabilities"]:
    c["process"]["capabilities"][kind].append("CAP_NET_RAW")
for ns in c["linux"]["namespaces"]:
    if ns["type"] == "network":
        ns["path"] = netns
json.dump(c, open(path, "w"))
PY

# "bits_per_second": N  -> Mbit/s; "... = min/avg/max ms" -> avg ms
mbits() { grep -o '"bits_per_second":[[:space:]]*[0-9.e+]*' | head -1 | awk -F: '{printf "%.1f", $2 / 1e6}'; }
rtt() { grep -o '= [0-9.]*/[0-9.]*/' | awk -F/ '{print $2}'; }

echo "bench-net: baseline, two plain namespaces (a veth pair)"
ip netns exec "$peer" iperf3 -s -1 -B 198.18.20.1 >/dev/null 2>&1 &
sleep 0.5
base_out=$(ip netns exec "$pod" sh -c "iperf3 -c 198.18.20.1 -t 5 -J | grep -A8 '\"sum_received\"' | grep bits_per_second; busybox ping -c 20 -i 0.2 198.18.20.1 | tail -1")
wait
base_tput=$(echo "$base_out" | mbits); base_rtt=$(echo "$base_out" | rtt)

echo "bench-net: cocoon VM, the container in a VM that took over the pod namespace"
ip netns exec "$peer" iperf3 -s -1 -B 198.18.20.1 >/dev/null 2>&1 &
sleep 0.5
vm_out=$(COCOON_CONFIG=$config "$cocoon" --root "$root" run --bundle "$work/bundle" "bench-net-$$" </dev/null)
wait
vm_tput=$(echo "$vm_out" | mbits); vm_rtt=$(echo "$vm_out" | rtt)
[ -n "$vm_tput" ] && [ -n "$vm_rtt" ] || { echo "bench-net: no result from the VM: $vm_out" >&2; exit 1; }

echo "bench-net: cocoon VM with runtime.network_model = \"macvtap\""
if grep -q '^\[runtime\]' "$config"; then
  sed '/^\[runtime\]/a network_model = "macvtap"' "$config" > "$work/macvtap.toml"
else
  { cat "$config"; printf '\n[runtime]\nnetwork_model = "macvtap"\n'; } > "$work/macvtap.toml"
fi
ip netns exec "$peer" iperf3 -s -1 -B 198.18.20.1 >/dev/null 2>&1 &
sleep 0.5
mv_out=$(COCOON_CONFIG=$work/macvtap.toml "$cocoon" --root "$root" run --bundle "$work/bundle" "bench-net-mv-$$" </dev/null)
wait
mv_tput=$(echo "$mv_out" | mbits); mv_rtt=$(echo "$mv_out" | rtt)
[ -n "$mv_tput" ] && [ -n "$mv_rtt" ] || { echo "bench-net: no result from the macvtap VM: $mv_out" >&2; exit 1; }

awk -v bt="$base_tput" -v vt="$vm_tput" -v br="$base_rtt" -v vr="$vm_rtt" -v mt="$mv_tput" -v mr="$mv_rtt" 'BEGIN {
  printf "%-34s %12s %12s\n", "", "Mbit/s", "RTT ms"
  printf "%-34s %12.1f %12.3f\n", "plain namespaces (runc-like)", bt, br
  printf "%-34s %12.1f %12.3f\n", "cocoon VM (tap + tc redirect)", vt, vr
  printf "%-34s %12.1f %12.3f\n", "cocoon VM (macvtap passthru)", mt, mr
  printf "%-34s %12.3f %12.1f\n", "ratio cocoon tcfilter / plain", vt / bt, vr / br
  printf "%-34s %12.3f %12.1f\n", "ratio cocoon macvtap / plain", mt / bt, mr / br
}'
