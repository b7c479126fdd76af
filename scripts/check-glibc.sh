#!/usr/bin/env bash
# Prints the highest GLIBC_ symbol version BINARY needs and fails if it is above MAX.
#   scripts/check-glibc.sh BINARY MAX      e.g. scripts/check-glibc.sh target/.../sts-sidecar 2.27
set -euo pipefail
bin=$1
max=$2
need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ -z "$need" ]; then
  echo "glibc check: $bin needs no versioned glibc symbols" >&2
  exit 0
fi
highest=$(printf '%s\n%s\n' "$need" "$max" | sort -V | tail -n 1)
if [ "$highest" != "$max" ]; then
  echo "glibc check FAILED: $bin needs GLIBC_$need, above GLIBC_$max" >&2
  exit 1
fi
echo "glibc check passed: $bin needs at most GLIBC_$need (limit GLIBC_$max)" >&2
