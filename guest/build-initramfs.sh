#!/usr/bin/env bash
# Packs an init binary into a newc cpio initramfs (the root guest/stage-root.sh lays out).
# Reproducible: fixed owner and mtime, sorted entries.
# usage: guest/build-initramfs.sh INIT_BINARY OUTPUT.cpio
set -euo pipefail
init=${1:?usage: build-initramfs.sh INIT_BINARY OUTPUT}
out=${2:?usage: build-initramfs.sh INIT_BINARY OUTPUT}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
bash "$(dirname "$0")/stage-root.sh" "$init" "$stage"
mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out $(stat -c %s "$out") bytes (init $(stat -c %s "$init") bytes)"
