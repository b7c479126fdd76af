#!/usr/bin/env bash
# Every check CI runs, on a fresh machine too: formatting, clippy with -D warnings, all tests
# (unit, integration against the in-process fakes, the real aws-config container provider), and
# the local dev stack end to end. Needs Rust (cargo) and python3; fetches crates with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "scripts/test.sh: needs Rust (cargo) on PATH" >&2; exit 1; }
command -v python3 >/dev/null || { echo "scripts/test.sh: needs python3 (used by scripts/dev-stack.sh)" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked
echo "==> scripts/dev-stack.sh --check"
LISTEN=127.0.0.1:61779 ADMIN_LISTEN=127.0.0.1:61780 scripts/dev-stack.sh --check
