#!/usr/bin/env bash
# Builds the release: Linux binaries against a glibc 2.17 floor (one binary starts on Cloud
# Foundry's cflinuxfs3 and cflinuxfs4, and on any glibc distribution of the last ten years),
# the Cloud Foundry buildpack zip, SHA256SUMS and RELEASE.md, in one folder. Uses
# cargo-zigbuild with zig from PyPI (both pinned, installed on first use: zig into the
# checkout's .venv-build, cargo-zigbuild into ~/.cache/sts-sidecar/tools/ keyed by its version,
# never into ~/.cargo/bin), then checks the highest GLIBC_ symbol version each binary needs.
# Also writes the shell completions and the man page.
#
#   scripts/release.sh             this machine's architecture -> target/dist/sts-sidecar-<version>/
#   scripts/release.sh --x86_64    x86_64 only (what CI builds: the buildpack and the glibc check)
#   scripts/release.sh --aarch64   aarch64 only
#   scripts/release.sh --all       x86_64 and aarch64 (what a tagged release publishes; building
#                                  for the other architecture fetches its Rust standard library)
#
# A cold build takes about 9 minutes on 2 cores (the AWS SDK and aws-lc, with LTO), a warm one
# about 2; the first run also installs zig (~1 minute) and cargo-zigbuild (~2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
FLOOR=${GLIBC_FLOOR:-2.17}
MAX_ALLOWED=${GLIBC_MAX:-2.27}   # cflinuxfs3

case "${1:-}" in
  "") arches=("$(uname -m)") ;;
  --x86_64) arches=(x86_64) ;;
  --aarch64) arches=(aarch64) ;;
  --all) arches=(x86_64 aarch64) ;;
  *) echo "usage: scripts/release.sh [--x86_64 | --aarch64 | --all]" >&2; exit 64 ;;
esac
if [ $# -gt 1 ]; then
  echo "usage: scripts/release.sh [--x86_64 | --aarch64 | --all]" >&2
  exit 64
fi
case "${arches[0]}" in
  x86_64|aarch64) ;;
  *) echo "scripts/release.sh: no release for ${arches[0]} (x86_64 and aarch64 only)" >&2; exit 64 ;;
esac

if [ ! -x .venv-build/bin/python ]; then
  python3 -m venv .venv-build
fi
if ! .venv-build/bin/python -c "import ziglang" 2>/dev/null \
   || [ "$(.venv-build/bin/pip show ziglang 2>/dev/null | awk '/^Version:/ {print $2}')" != "$ZIG_VERSION" ]; then
  echo "==> installing zig $ZIG_VERSION (PyPI package ziglang) into .venv-build (about a minute)" >&2
  .venv-build/bin/pip install --progress-bar off --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi
# Built once per machine, into a cache folder of this project's keyed by the version.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/sts-sidecar/tools/cargo-zigbuild-$ZIGBUILD_VERSION
if [ "$("$tools/bin/cargo-zigbuild" --version 2>/dev/null | awk '{print $2}')" != "$ZIGBUILD_VERSION" ]; then
  echo "==> installing cargo-zigbuild $ZIGBUILD_VERSION into $tools (about 2 minutes, once)" >&2
  cargo install --locked --root "$tools" "cargo-zigbuild@$ZIGBUILD_VERSION"
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
  echo "==> cargo zigbuild --release --target $target.$FLOOR (about 9 minutes cold, 2 warm)" >&2
  started=$SECONDS
  PATH="$tools/bin:$PWD/.venv-build/bin:$PATH" cargo zigbuild --release --locked \
    --target "$target.$FLOOR" --bin sts-sidecar
  echo "==> built in $((SECONDS - started)) s" >&2
  bin=target/$target/release/sts-sidecar
  scripts/check-glibc.sh "$bin" "$MAX_ALLOWED"
  cp "$bin" "$dist/sts-sidecar-$version-linux-$arch"
  ls -l "$bin" | awk '{printf "==> %s: %.1f MiB\n", $NF, $5 / 1048576}' >&2
done
built() { [[ " ${arches[*]} " == *" $1 "* ]]; }
if built x86_64; then
  scripts/buildpack.sh "target/x86_64-unknown-linux-gnu/release/sts-sidecar" "$dist" >/dev/null
fi
# Shell completions and the man page, from the binary built here for this machine.
if built "$(uname -m)"; then
  here=target/$(uname -m)-unknown-linux-gnu/release/sts-sidecar
  for shell in bash zsh fish elvish powershell; do
    "$here" completions "$shell" >"$dist/sts-sidecar.$shell-completion"
  done
  "$here" completions man >"$dist/sts-sidecar.1"
fi

{
  echo "# sts-sidecar $version"
  echo
  echo "| file | what it is for |"
  echo "|---|---|"
  for arch in "${arches[@]}"; do
    echo "| \`sts-sidecar-$version-linux-$arch\` | the binary for $arch Linux, glibc 2.17 or later: Cloud Foundry (cflinuxfs3, cflinuxfs4; put it in the directory you push, or use the buildpack), a container image, a VM. Every subcommand: \`serve\`, \`exec\`, \`credential-process\`, \`check\`, \`issuer\` |"
  done
  if built x86_64; then
    echo "| \`sts-sidecar-buildpack-$version.zip\` | the Cloud Foundry supply buildpack (x86_64 binary inside, no download at staging): \`cf create-buildpack sts-sidecar-buildpack sts-sidecar-buildpack-$version.zip 1\`, then \`buildpacks: [sts-sidecar-buildpack, java_buildpack]\` |"
  fi
  if [ -f "$dist/sts-sidecar.1" ]; then
    echo "| \`sts-sidecar.1\` | the man page: \`man ./sts-sidecar.1\`, or copy it to \`/usr/local/share/man/man1/\` |"
    echo "| \`sts-sidecar.{bash,zsh,fish,elvish,powershell}-completion\` | shell completions (also \`sts-sidecar completions SHELL\`) |"
  fi
  echo "| \`SHA256SUMS\` | \`sha256sum -c SHA256SUMS\` checks every file above |"
  echo
  echo "The container image is built from the repository's \`Dockerfile\` (\`docker build -t sts-sidecar .\`); see the README for Cloud Foundry, Kubernetes and the token service (\`sts-sidecar issuer\`)."
} >"$dist/RELEASE.md"
(cd "$dist" && sha256sum sts-sidecar* >SHA256SUMS)
echo "==> $dist:" >&2
ls -l "$dist" | awk 'NR > 1 {printf "      %10d  %s\n", $5, $NF}' >&2
