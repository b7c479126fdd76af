#!/usr/bin/env bash
# Every check CI runs, on a fresh machine too: formatting, clippy with -D warnings, all tests
# (unit, integration against the in-process fakes, the real aws-config container provider), the
# fleet simulation (a small smoke run; bench/fleet.sh makes the real figures), the interop suite
# (boto3, AWS CLI, AWS SDK for JavaScript v3 and Rust SDK against moto through the real binary),
# the Dockerfile lint and docker-compose file check, the README's YAML checked against the
# binary, the Kubernetes manifests and Helm chart against the API schemas, the release workflow
# linted, the release build against a glibc 2.17 floor with its GLIBC_ symbol check, the CF
# buildpack staged and launched as Cloud Foundry does, the local stack end to end (and on a
# busy port), and every fuzz target for a bounded time (FUZZ_SECS, default 30 s each).
# Needs Rust (cargo), python3, node/npm, a JDK and Debian's apt-get; installs crates, a .venv,
# interop/js/node_modules, and the Go toolchains, Ruby and the Go, Ruby and Java SDKs into
# ~/.cache/sts-sidecar/interop.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  cat <<'HELP'
scripts/test.sh: every check CI runs (.ci/run calls exactly this), in this order:

  1. cargo fmt --check, cargo clippy --all-targets -D warnings           ~2 min cold
  2. cargo test: unit and integration tests against in-process fakes     ~3 min cold, 1 warm
  3. the fleet simulation, a 200-sidecar smoke run                       seconds
  4. the interop suite: boto3, the AWS CLI, the AWS SDKs for JavaScript
     v3 and v2, Java v2, Go v1 and v2, Ruby, Rust and the AWS CRT against
     moto through the real binary                                         ~4 min (10 the first time)
  5. hadolint on the Dockerfile, docker-compose.yml parsed and checked    seconds
  6. the README's and the book's YAML and shell blocks against the binary seconds
     the book built with mdBook, every link in the repository checked    ~3 min once, seconds after
     deploy/: Kubernetes manifests and the Helm chart, rendered by Helm's
     SDK, validated against the Kubernetes 1.29 and 1.37 API schemas     ~10 s
  7. the release build for Cloud Foundry stacks (glibc 2.17 floor)       ~9 min cold, 2 warm
     the release workflow linted (jactionlint, shellcheck), its helpers  seconds
  8. the buildpack staged and launched as Cloud Foundry does             ~1 min
  9. the local stack (scripts/dev-stack.sh --check), and on a busy port  ~1 min
 10. every fuzz target for FUZZ_SECS seconds (default 30)                ~6 min cold, 3 warm

About 25-30 minutes from a fresh clone on 2 cores, 15-20 once the caches are warm.

Needs: Rust (cargo; rustup adds rustfmt and clippy), python3 with venv and pip, node and npm,
a JDK 17 or later (javac), Debian's apt-get and dpkg-deb (they fetch the Go toolchains, Ruby
and the SDKs into ~/.cache/sts-sidecar/interop; nothing is installed into the system),
unshare (util-linux) and ip (iproute2) with user and network namespaces allowed (step 8 stages
the buildpack in a namespace of its own), and the package registries (crates.io, PyPI, npm,
Debian) reachable. Installs into the checkout: .venv, .venv-build, .tools (cargo-fuzz),
interop/js/node_modules; and once per machine into ~/.cache/sts-sidecar (the interop suite's
toolchains and SDKs, cargo-zigbuild, mdBook).

Environment: FUZZ_SECS (seconds per fuzz target, default 30).
HELP
  exit 0
fi
if [ "$#" -gt 0 ]; then
  echo "scripts/test.sh: takes no arguments (got $*); see scripts/test.sh --help" >&2
  exit 2
fi

command -v cargo >/dev/null || { echo "scripts/test.sh: needs Rust (cargo) on PATH" >&2; exit 1; }
command -v python3 >/dev/null || { echo "scripts/test.sh: needs python3 (interop suite, local stack)" >&2; exit 1; }
command -v npm >/dev/null || { echo "scripts/test.sh: needs node and npm (AWS SDK for JavaScript clients)" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  { echo "scripts/test.sh: needs Debian's apt-get and dpkg-deb (they fetch the Go toolchains, Ruby and the SDKs for the interop suite)" >&2; exit 1; }
command -v javac >/dev/null ||
  { echo "scripts/test.sh: needs a JDK (javac, 17 or later) for the AWS SDK for Java v2 client" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked
echo "==> fleet simulation, smoke run at 200 sidecars (debug build; real figures: bench/fleet.sh)"
fleet_out=$(mktemp -d)
cargo run --locked --quiet --example fleet -- --sizes 200 --out "$fleet_out" >/dev/null 2>&1
test -s "$fleet_out/fleet.md" && test -s "$fleet_out/fleet.svg"
rm -rf "$fleet_out"
echo "==> interop suite (python3 interop/run.py test)"
python3 interop/run.py test
echo "==> Dockerfile lint (hadolint) and docker-compose.yml check"
.venv/bin/hadolint Dockerfile
.venv/bin/python interop/check_compose.py
echo "==> README and the book: every YAML and shell block read, its command lines checked against the binary"
.venv/bin/python interop/check_readme.py
echo "==> the book (scripts/book.sh): mdBook builds it without a warning, every link in the repository resolves"
scripts/book.sh
echo "==> deploy/: Kubernetes manifests and the Helm chart (scripts/check-deploy.py)"
.venv/bin/python scripts/check-deploy.py
echo "==> release build for CF stacks, glibc floor check (scripts/release.sh --x86_64)"
scripts/release.sh --x86_64
echo "==> the release workflow and its helpers (scripts/check-release.sh)"
scripts/check-release.sh
echo "==> the CF buildpack, staged and launched as Cloud Foundry does (interop/staging.py)"
buildpack_zip=$(scripts/buildpack.sh)
.venv/bin/python interop/staging.py --buildpack "$buildpack_zip"
echo "==> local stack (scripts/dev-stack.sh --check), and on a busy port"
LISTEN=127.0.0.1:61779 ADMIN_LISTEN=127.0.0.1:61780 scripts/dev-stack.sh --check
python3 interop/check_busy_stack.py
echo "==> fuzzing (scripts/fuzz.sh ${FUZZ_SECS:-30})"
scripts/fuzz.sh "${FUZZ_SECS:-30}"
