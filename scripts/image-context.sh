#!/usr/bin/env bash
# Lays out the release binaries as the build context of the Dockerfile's last stage with
# BINARY_FROM=release: rootfs-<docker arch>/usr/local/bin/sts-sidecar and the empty
# rootfs-<docker arch>/run/sts-sidecar, for each architecture the release folder holds.
#
#   scripts/image-context.sh target/dist/sts-sidecar-VERSION target/image
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: scripts/image-context.sh RELEASE_DIR OUT_DIR" >&2
  exit 64
fi
dist=$1 out=$2
version=$(basename "$dist")
version=${version#sts-sidecar-}
rm -rf "$out"
found=0
for pair in x86_64:amd64 aarch64:arm64; do
  arch=${pair%%:*} docker_arch=${pair##*:}
  bin=$dist/sts-sidecar-$version-linux-$arch
  [ -f "$bin" ] || continue
  mkdir -p "$out/rootfs-$docker_arch/usr/local/bin" "$out/rootfs-$docker_arch/run/sts-sidecar"
  install -m 0755 "$bin" "$out/rootfs-$docker_arch/usr/local/bin/sts-sidecar"
  echo "==> $out/rootfs-$docker_arch: $(basename "$bin")" >&2
  found=$((found + 1))
done
if [ "$found" -eq 0 ]; then
  echo "scripts/image-context.sh: no sts-sidecar-$version-linux-{x86_64,aarch64} in $dist" >&2
  exit 1
fi
