#!/usr/bin/env bash
# Packs an init binary into a newc cpio initramfs: /init plus the empty mount points PID 1 needs.
# Reproducible: fixed owner and mtime, sorted entries.
# usage: guest/build-initramfs.sh INIT_BINARY OUTPUT.cpio
set -euo pipefail
init=${1:?usage: build-initramfs.sh INIT_BINARY OUTPUT}
out=${2:?usage: build-initramfs.sh INIT_BINARY OUTPUT}
[ -x "$init" ] || { echo "build-initramfs: $init is not an executable file" >&2; exit 1; }
if file "$init" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "build-initramfs: $init is dynamically linked; the guest has no libraries" >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{dev,proc,sys,run,tmp,etc,mnt}
install -m 0755 "$init" "$stage/init"
# The kernel opens /dev/console for init's stdio before anything is mounted.
mknod -m 0600 "$stage/dev/console" c 5 1
find "$stage" -exec touch -h -d @0 {} +
mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out $(stat -c %s "$out") bytes (init $(stat -c %s "$init") bytes)"
