#!/usr/bin/env bash
# Fills DIR with the guest's root as the kernel starts it: /init, /dev/console (the kernel opens it
# for init's stdio before anything is mounted) and the empty mount points PID 1 needs, with fixed
# owner and times. Shared by build-initramfs.sh and build-image.sh.
# usage: guest/stage-root.sh INIT_BINARY DIR
set -euo pipefail
init=${1:?usage: stage-root.sh INIT_BINARY DIR}
stage=${2:?usage: stage-root.sh INIT_BINARY DIR}
[ -x "$init" ] || { echo "$(basename "$0"): $init is not an executable file" >&2; exit 1; }
if file "$init" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "$(basename "$0"): $init is dynamically linked; the guest has no libraries" >&2
  exit 1
fi
mkdir -p "$stage"/{dev,proc,sys,run,tmp,etc,mnt}
install -m 0755 "$init" "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1
find "$stage" -exec touch -h -d @0 {} +
