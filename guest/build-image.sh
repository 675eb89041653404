#!/usr/bin/env bash
# Packs an init binary into a small read-only ext4 image (the root guest/stage-root.sh lays out). The
# guest boots it from a read-only virtio-blk disk and pages in only what it runs; the host's page cache
# holds one copy for every VM. Fixed UUID, hash seed, owner and times (mke2fs still picks inode
# generation numbers at random, so two builds differ in a few bytes).
# usage: guest/build-image.sh INIT_BINARY OUTPUT.img
set -euo pipefail
init=${1:?usage: build-image.sh INIT_BINARY OUTPUT}
out=${2:?usage: build-image.sh INIT_BINARY OUTPUT}
command -v mkfs.ext4 >/dev/null || { echo "build-image: mkfs.ext4 not found (Debian's e2fsprogs; make deps installs it)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$out.tmp"' EXIT
bash "$(dirname "$0")/stage-root.sh" "$init" "$stage"
# The binary plus a quarter and 2 MiB for metadata, in MiB.
size_mib=$(( ($(stat -c %s "$init") * 5 / 4 + (2 << 20)) >> 20 ))
mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -d "$stage" -L cocoon-agent -b 4096 -m 0 -O ^has_journal,^resize_inode \
  -U 6c6f636f-6f6e-4167-8e74-000000000001 -E root_owner=0:0,hash_seed=6c6f636f-6f6e-4167-8e74-000000000002 \
  "$out.tmp" "${size_mib}M" >/dev/null
mv "$out.tmp" "$out"
echo "build-image: $out $(stat -c %s "$out") bytes (init $(stat -c %s "$init") bytes)"
