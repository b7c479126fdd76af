#!/usr/bin/env bash
# Builds the book (docs/, mdBook) into target/book, failing on any warning mdBook prints, then
# checks every link of the README and the book that stays in the repository
# (scripts/check-docs.py). mdBook is built from crates.io once per machine, into a cache folder
# keyed by its version (about 3 minutes the first time).
#
#   scripts/book.sh          build and check
#   scripts/book.sh --open   and print where the book is
set -euo pipefail
cd "$(dirname "$0")/.."
MDBOOK_VERSION=0.5.4
tools=${XDG_CACHE_HOME:-$HOME/.cache}/sts-sidecar/tools/mdbook-$MDBOOK_VERSION
if [ "$("$tools/bin/mdbook" --version 2>/dev/null | awk '{print $2}')" != "v$MDBOOK_VERSION" ]; then
  echo "==> installing mdBook $MDBOOK_VERSION into $tools (about 3 minutes, once per machine)" >&2
  cargo install --locked --root "$tools" --no-default-features --features search "mdbook@$MDBOOK_VERSION"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$tools/bin/mdbook" build docs 2>"$log"; then
  cat "$log" >&2
  exit 1
fi
if grep -E "WARN|ERROR" "$log" >&2; then
  echo "scripts/book.sh: mdBook warned (above)" >&2
  exit 1
fi
python3 scripts/check-docs.py
if [ "${1:-}" = "--open" ]; then
  echo "target/book/index.html"
fi
