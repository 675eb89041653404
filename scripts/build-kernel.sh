#!/usr/bin/env bash
# Builds the guest kernel from Debian's linux-source-6.1 plus kernel-config/*.config,
# cached by the hash of every input, outside the git tree. A second run (or a CI run
# on the same machine) with unchanged inputs only copies the cached result.
#
# usage: scripts/build-kernel.sh OUTDIR     -> OUTDIR/vmlinux, OUTDIR/bzImage, OUTDIR/kernel.config
set -euo pipefail

out=${1:?usage: build-kernel.sh OUTDIR}
top=$(cd "$(dirname "$0")/.." && pwd)
tarball=/usr/src/linux-source-6.1.tar.xz
cache_root=${COCOON_CACHE_DIR:-/var/cache/cocoon}/kernel

[ -f "$tarball" ] || { echo "build-kernel: $tarball is missing; run 'make deps' (installs linux-source-6.1)" >&2; exit 1; }

# Everything that changes the output goes into the key: the source, our fragments,
# this script, and the compiler.
key=$( {
  sha256sum "$tarball" | cut -d' ' -f1
  cat "$top"/kernel-config/*.config
  cat "$0"
  gcc --version | head -n1
} | sha256sum | cut -c1-16)
cached=$cache_root/$key

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9

if [ ! -f "$cached/vmlinux" ]; then
  echo "build-kernel: no cached kernel for key $key; building (about 8 minutes on 2 cores)"
  start=$(date +%s)
  work=$(mktemp -d "$cache_root/.work.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -C "$work" -xf "$tarball"
  src=$work/linux-source-6.1
  make -C "$src" -s ARCH=x86_64 tinyconfig
  "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$top"/kernel-config/*.config >/dev/null
  make -C "$src" -s ARCH=x86_64 olddefconfig
  # Kconfig silently drops options whose dependencies are unmet: refuse such a kernel.
  missing=0
  while IFS= read -r line; do
    case "$line" in CONFIG_*=*) ;; *) continue ;; esac
    if ! grep -qx -- "$line" "$src/.config"; then
      echo "build-kernel: $line from kernel-config/ did not survive olddefconfig (unmet dependency?)" >&2
      missing=1
    fi
  done < <(cat "$top"/kernel-config/*.config)
  [ "$missing" = 0 ] || exit 1
  make -C "$src" -s ARCH=x86_64 -j"$(nproc)" vmlinux bzImage
  mkdir -p "$work/result"
  cp "$src/vmlinux" "$work/result/vmlinux"
  strip --strip-debug "$work/result/vmlinux" 2>/dev/null || true
  cp "$src/arch/x86/boot/bzImage" "$work/result/bzImage"
  cp "$src/.config" "$work/result/kernel.config"
  echo "$(( $(date +%s) - start ))" > "$work/result/build-seconds"
  rm -rf "$cached"
  mv "$work/result" "$cached"
  echo "build-kernel: built in $(cat "$cached/build-seconds") s"
else
  echo "build-kernel: using cached kernel $cached"
fi

mkdir -p "$out"
for f in vmlinux bzImage kernel.config; do
  cp --reflink=auto "$cached/$f" "$out/$f.tmp" && mv "$out/$f.tmp" "$out/$f"
done
ls -l "$out/vmlinux" "$out/bzImage" | awk '{print "build-kernel: " $NF " " $5 " bytes"}'
