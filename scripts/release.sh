#!/usr/bin/env bash
# Builds the release: Linux binaries against a glibc 2.17 floor (one binary starts on Cloud
# Foundry's cflinuxfs3 and cflinuxfs4, and on any glibc distribution of the last ten years),
# the Cloud Foundry buildpack zip, SHA256SUMS and RELEASE.md, in one folder. Uses
# cargo-zigbuild with zig from PyPI (both pinned, installed on first use), then checks the
# highest GLIBC_ symbol version each binary needs.
#
#   scripts/release.sh             x86_64 and aarch64 -> target/dist/sts-sidecar-<version>/
#   scripts/release.sh --x86_64    x86_64 only (what CI builds: the buildpack and the glibc check)
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
FLOOR=${GLIBC_FLOOR:-2.17}
MAX_ALLOWED=${GLIBC_MAX:-2.27}   # cflinuxfs3

arches=(x86_64 aarch64)
if [ "${1:-}" = "--x86_64" ]; then
  arches=(x86_64)
elif [ $# -gt 0 ]; then
  echo "usage: scripts/release.sh [--x86_64]" >&2
  exit 64
fi

if [ ! -x .venv-build/bin/python ]; then
  python3 -m venv .venv-build
fi
if ! .venv-build/bin/python -c "import ziglang" 2>/dev/null \
   || [ "$(.venv-build/bin/pip show ziglang 2>/dev/null | awk '/^Version:/ {print $2}')" != "$ZIG_VERSION" ]; then
  echo "==> installing zig $ZIG_VERSION (PyPI package ziglang) into .venv-build" >&2
  .venv-build/bin/pip install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi
if [ "$(cargo-zigbuild --version 2>/dev/null | awk '{print $2}')" != "$ZIGBUILD_VERSION" ]; then
  echo "==> installing cargo-zigbuild $ZIGBUILD_VERSION" >&2
  cargo install --quiet --locked "cargo-zigbuild@$ZIGBUILD_VERSION"
fi

version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
dist=target/dist/sts-sidecar-$version
rm -rf "$dist"
mkdir -p "$dist"
for arch in "${arches[@]}"; do
  target="$arch-unknown-linux-gnu"
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "==> rustup target add $target" >&2
    rustup target add "$target" >&2
  fi
  echo "==> cargo zigbuild --release --target $target.$FLOOR" >&2
  PATH="$PWD/.venv-build/bin:$PATH" cargo zigbuild --quiet --release --locked \
    --target "$target.$FLOOR" --bin sts-sidecar
  bin=target/$target/release/sts-sidecar
  scripts/check-glibc.sh "$bin" "$MAX_ALLOWED"
  cp "$bin" "$dist/sts-sidecar-$version-linux-$arch"
  ls -l "$bin" | awk '{printf "==> %s: %.1f MiB\n", $NF, $5 / 1048576}' >&2
done
scripts/buildpack.sh "target/x86_64-unknown-linux-gnu/release/sts-sidecar" "$dist" >/dev/null

{
  echo "# sts-sidecar $version"
  echo
  echo "| file | what it is for |"
  echo "|---|---|"
  for arch in "${arches[@]}"; do
    echo "| \`sts-sidecar-$version-linux-$arch\` | the binary for $arch Linux, glibc 2.17 or later: Cloud Foundry (cflinuxfs3, cflinuxfs4; put it in the directory you push, or use the buildpack), a container image, a VM. Every subcommand: \`serve\`, \`exec\`, \`credential-process\`, \`check\`, \`issuer\` |"
  done
  echo "| \`sts-sidecar-buildpack-$version.zip\` | the Cloud Foundry supply buildpack (x86_64 binary inside, no download at staging): \`cf create-buildpack sts-sidecar-buildpack sts-sidecar-buildpack-$version.zip 1\`, then \`buildpacks: [sts-sidecar-buildpack, java_buildpack]\` |"
  echo "| \`SHA256SUMS\` | \`sha256sum -c SHA256SUMS\` checks every file above |"
  echo
  echo "The container image is built from the repository's \`Dockerfile\` (\`docker build -t sts-sidecar .\`); see the README for Cloud Foundry, Kubernetes and the token service (\`sts-sidecar issuer\`)."
} >"$dist/RELEASE.md"
(cd "$dist" && sha256sum sts-sidecar-* >SHA256SUMS)
echo "==> $dist:" >&2
ls -l "$dist" | awk 'NR > 1 {printf "      %10d  %s\n", $5, $NF}' >&2
