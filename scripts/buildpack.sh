#!/usr/bin/env bash
# Builds the Cloud Foundry sidecar buildpack, offline: sts-sidecar-buildpack-<version>.zip with
# bin/detect, bin/supply, bin/finalize, manifest.yml (the binary's sha256 and stacks) and the
# glibc-2.17 binary itself, so staging downloads nothing. The zip is reproducible: fixed
# timestamps, sorted entries, modes kept (CF's lifecycle keeps the executable bits).
#
#   scripts/buildpack.sh                    binary from scripts/release.sh (built if missing)
#   scripts/buildpack.sh BINARY OUT_DIR     another binary; the zip goes to OUT_DIR
#                                           (default target/buildpack)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/x86_64-unknown-linux-gnu/release/sts-sidecar}
out=${2:-target/buildpack}
if [ ! -x "$bin" ]; then
  if [ $# -ge 1 ]; then
    echo "scripts/buildpack.sh: $bin is not an executable file" >&2
    exit 1
  fi
  scripts/release.sh --x86_64
fi
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
mkdir -p "$out"
python3 - "$bin" "$out" "$version" <<'PY'
import hashlib
import os
import sys
import zipfile

binary, out, version = sys.argv[1:]
root = "buildpack"
dep = f"dependencies/sts-sidecar-{version}-linux-x86_64"
data = open(binary, "rb").read()
manifest = f"""---
language: sts-sidecar
default_versions:
- name: sts-sidecar
  version: {version}
dependencies:
- name: sts-sidecar
  version: {version}
  file: {dep}
  sha256: {hashlib.sha256(data).hexdigest()}
  cf_stacks:
  - cflinuxfs3
  - cflinuxfs4
"""
entries = {
    "VERSION": (version + "\n").encode(),
    "manifest.yml": manifest.encode(),
    dep: data,
}
for name in ["bin/detect", "bin/supply", "bin/finalize", "README.md"]:
    entries[name] = open(os.path.join(root, name), "rb").read()
executable = {"bin/detect", "bin/supply", "bin/finalize", dep}
path = os.path.join(out, f"sts-sidecar-buildpack-{version}.zip")
with zipfile.ZipFile(path + ".partial", "w", zipfile.ZIP_DEFLATED) as z:
    for name in sorted(entries):
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3  # Unix: external_attr carries the mode
        info.external_attr = ((0o100755 if name in executable else 0o100644) << 16)
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, entries[name])
os.replace(path + ".partial", path)
print(path)
PY
