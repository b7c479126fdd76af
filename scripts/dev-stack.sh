#!/usr/bin/env bash
# Runs the whole chain on this machine: the token service (sts-sidecar issuer, over TLS), the STS/AWS
# emulator moto, and sts-sidecar started with the flags a CF manifest would use; then a boto3 call
# through it. Prints the environment your own app would export. Ctrl-C stops everything.
#
#   scripts/dev-stack.sh           run until Ctrl-C
#   scripts/dev-stack.sh --check   make the SDK call, then stop (exit 0 only if it worked)
#
# Ports: free ones, unless LISTEN or ADMIN_LISTEN (e.g. 127.0.0.1:61679) name them. If the
# sidecar cannot listen there, its own error is printed and the script exits 1.
# Needs Rust and python3; the first run installs moto and boto3 into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 interop/run.py stack "$@"
