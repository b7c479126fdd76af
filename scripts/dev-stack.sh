#!/usr/bin/env bash
# Runs the whole chain on this machine: the dev CF Identity Token Service (mTLS), the STS/AWS
# emulator moto, and sts-sidecar started with the flags a CF manifest would use; then a boto3 call
# through it. Prints the environment your own app would export. Ctrl-C stops everything.
#
#   scripts/dev-stack.sh           run until Ctrl-C
#   scripts/dev-stack.sh --check   make the SDK call, then stop (exit 0 only if it worked)
#
# Ports: LISTEN (default 127.0.0.1:61679), ADMIN_LISTEN (default 127.0.0.1:61680).
# Needs Rust and python3; the first run installs moto and boto3 into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 interop/run.py stack "$@"
