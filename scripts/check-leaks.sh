#!/usr/bin/env bash
# Fails when a test run left a VM process or state behind. Run after the tests, by make test.
# usage: scripts/check-leaks.sh STATE_ROOT...
set -u
status=0
for root in "$@"; do
  left=$(pgrep -a -f "qemu-system.*$root" || true)
  if [ -n "$left" ]; then
    echo "check-leaks: processes left running under $root:" >&2
    echo "$left" | sed 's/^/  /' >&2
    status=1
  fi
  containers=$(ls "$root"/*/state.json 2>/dev/null | xargs -r -n1 dirname | xargs -r -n1 basename | tr '\n' ' ')
  if [ -n "$containers" ]; then
    echo "check-leaks: container state left in $root: $containers" >&2
    status=1
  fi
  for sub in containers bundles; do
    # An empty `daemons` directory (the runc command line's control sockets) stays between runs.
    left=$(ls -A "$root/$sub" 2>/dev/null | grep -vx daemons | tr '\n' ' ')
    [ -n "$(ls -A "$root/$sub/daemons" 2>/dev/null)" ] && left="$left daemons/: $(ls -A "$root/$sub/daemons" | tr '\n' ' ')"
    if [ -n "$left" ]; then
      echo "check-leaks: $sub left in $root/$sub: $left" >&2
      status=1
    fi
  done
  left=$(pgrep -a -f "(cocoon-agent|virtiofsd).*$root" || true)
  if [ -n "$left" ]; then
    echo "check-leaks: agent or virtiofsd processes left running for $root:" >&2
    echo "$left" | sed 's/^/  /' >&2
    status=1
  fi
  mounts=$(awk -v r="$root/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo)
  if [ -n "$mounts" ]; then
    echo "check-leaks: mounts left under $root: $mounts" >&2
    status=1
  fi
  if [ -d "$root/sandboxes" ] && [ -n "$(ls -A "$root/sandboxes")" ]; then
    echo "check-leaks: sandbox state left in $root/sandboxes: $(ls "$root/sandboxes" | tr '\n' ' ')" >&2
    status=1
  fi
done
left=$(pgrep -a -f "^[^ ]*containerd-shim-cocoon-v2 " || true)
if [ -n "$left" ]; then
  echo "check-leaks: cocoon shims left running:" >&2
  echo "$left" | sed 's/^/  /' >&2
  status=1
fi
# VM isolation through the runc command line: per-sandbox daemons and stand-ins.
left=$(pgrep -a -f "cocoon .*(sandbox-daemon|stand-in) " || true)
if [ -n "$left" ]; then
  echo "check-leaks: cocoon sandbox daemons or stand-ins left running:" >&2
  echo "$left" | sed 's/^/  /' >&2
  status=1
fi
# Pod networking tests make their own namespaces, bridges and taps, all named cocoon-*.
left=$(ip netns list 2>/dev/null | awk '$1 ~ /^cocoon-/ {print $1}' | tr '\n' ' ')
if [ -n "$left" ]; then
  echo "check-leaks: network namespaces left: $left" >&2
  status=1
fi
left=$(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^cocoon-/ {print $2}' | tr '\n' ' ')
if [ -n "$left" ]; then
  echo "check-leaks: network devices left: $left" >&2
  status=1
fi
left=$(pgrep -a -f "busybox httpd .*cocoon-" || true)
if [ -n "$left" ]; then
  echo "check-leaks: test web servers left running:" >&2
  echo "$left" | sed 's/^/  /' >&2
  status=1
fi
# Containers' cgroups (cgroupsPath left empty: /cocoon/<id>) and the systemd tests' subtrees.
left=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d \( -path '*/cocoon/*' -o -name 'cocoon-test-*' \) 2>/dev/null | tr '\n' ' ')
if [ -n "$left" ]; then
  echo "check-leaks: cgroups left: $left" >&2
  status=1
fi
[ "$status" = 0 ] && echo "check-leaks: nothing left behind under $*"
exit "$status"
