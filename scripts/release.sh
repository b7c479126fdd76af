#!/usr/bin/env bash
# Builds the release binary for Cloud Foundry stacks: x86_64 Linux against a glibc 2.17 floor,
# so one binary starts on cflinuxfs3 (glibc 2.27) and cflinuxfs4 (glibc 2.35). Uses
# cargo-zigbuild with zig from PyPI (both pinned, installed on first use), then checks the
# highest GLIBC_ symbol version the binary needs.
#
#   scripts/release.sh        -> target/x86_64-unknown-linux-gnu/release/sts-sidecar
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
FLOOR=${GLIBC_FLOOR:-2.17}
MAX_ALLOWED=${GLIBC_MAX:-2.27}   # cflinuxfs3

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

echo "==> cargo zigbuild --release --target x86_64-unknown-linux-gnu.$FLOOR" >&2
PATH="$PWD/.venv-build/bin:$PATH" cargo zigbuild --quiet --release --locked \
  --target "x86_64-unknown-linux-gnu.$FLOOR" --bin sts-sidecar
bin=target/x86_64-unknown-linux-gnu/release/sts-sidecar
scripts/check-glibc.sh "$bin" "$MAX_ALLOWED"
ls -l "$bin" | awk '{printf "==> %s: %.1f MiB\n", $NF, $5 / 1048576}' >&2
