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
  if [ -d "$root/sandboxes" ] && [ -n "$(ls -A "$root/sandboxes")" ]; then
    echo "check-leaks: sandbox state left in $root/sandboxes: $(ls "$root/sandboxes" | tr '\n' ' ')" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "check-leaks: nothing left behind under $*"
exit "$status"
