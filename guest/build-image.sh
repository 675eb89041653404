#!/usr/bin/env bash
# Packs an init binary into a small read-only ext4 image: /init plus the empty mount points PID 1
# needs and /dev/console (the kernel opens it for init's stdio before anything is mounted). The guest
# boots it from a read-only virtio-blk disk and pages in only what it runs; the host's page cache
# holds one copy for every VM. Reproducible: fixed UUID, hash seed, owner and times.
# usage: guest/build-image.sh INIT_BINARY OUTPUT.img
set -euo pipefail
init=${1:?usage: build-image.sh INIT_BINARY OUTPUT}
out=${2:?usage: build-image.sh INIT_BINARY OUTPUT}
[ -x "$init" ] || { echo "build-image: $init is not an executable file" >&2; exit 1; }
if file "$init" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "build-image: $init is dynamically linked; the guest has no libraries" >&2
  exit 1
fi
command -v mkfs.ext4 >/dev/null || { echo "build-image: mkfs.ext4 not found (Debian's e2fsprogs; make deps installs it)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$out.tmp"' EXIT
mkdir -p "$stage"/{dev,proc,sys,run,tmp,etc,mnt}
install -m 0755 "$init" "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1
find "$stage" -exec touch -h -d @0 {} +
# The binary plus a quarter and 2 MiB for metadata, in MiB.
size_mib=$(( ($(stat -c %s "$init") * 5 / 4 + (2 << 20)) >> 20 ))
mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -d "$stage" -L cocoon-agent -b 4096 -m 0 -O ^has_journal,^resize_inode \
  -U 6c6f636f-6f6e-4167-8e74-000000000001 -E root_owner=0:0,hash_seed=6c6f636f-6f6e-4167-8e74-000000000002 \
  "$out.tmp" "${size_mib}M" >/dev/null
mv "$out.tmp" "$out"
echo "build-image: $out $(stat -c %s "$out") bytes (init $(stat -c %s "$init") bytes)"
