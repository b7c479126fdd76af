#!/usr/bin/env bash
# The issuer's capacity (bench/issuer.rs), then the fleet simulation's mass restart of 100,000
# instances with that capacity per issuer instance and one, two and four instances.
# Writes bench/issuer.md and bench/issuer.json; the fleet runs go to bench/issuer-fleet/.
#
#   bench/issuer.sh [--secs 4] [--concurrency 32] [--before-bin OLDER_BUILD]
#
# The issuer is the release build, as shipped (the cryptography's build depends on the
# profile: see .cargo/config.toml); the load generator and the fleet simulation are built
# with the `fleet` profile (release optimizations without LTO: minutes, not tens).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=fleet
cargo build --locked --quiet --release --bin sts-sidecar
cargo build --locked --quiet --profile "$profile" --features test-util \
  --example issuer_bench --example dev_upstreams --example fleet
base=${CARGO_TARGET_DIR:-target}
target=$base/$profile
"$target/examples/issuer_bench" --bin "$base/release/sts-sidecar" \
  --dev-upstreams "$target/examples/dev_upstreams" --out bench "$@"

# The capacity of one issuer instance with one core: tokens per CPU-second for assertions with
# ES256, the slower of the two instance key kinds (P-256 or RSA 3072; Diego's RSA 2048 costs
# less than RSA 3072).
capacity=$(python3 -c '
import json
runs = json.load(open("bench/issuer.json"))["runs"]
rates = [r["tokens_per_cpu_sec"] for r in runs
         if r["service"] == "sts-sidecar issuer" and r["proof"] == "assertion" and r["signing"] == "ES256"]
print(int(min(rates)))')
echo "==> fleet: mass restart of 100,000 instances, $capacity tokens/s per issuer instance (one core)" >&2
rows=()
for n in 1 2 4; do
  out=bench/issuer-fleet/x$n
  "$target/examples/fleet" --scenarios restart --now-only --sizes 100000 \
    --token-service-rate $((capacity * n)) --token-service-latency-ms 20 \
    --jwt-lifetime-secs 3600 --out "$out" >/dev/null
  rows+=("$(python3 -c '
import json, sys
n, capacity, out = sys.argv[1:4]
o = json.load(open(out + "/fleet.json"))["outcomes"][0]
s = o["to_serve_secs"]
fmt = lambda v: "-" if v is None else f"{v:.0f} s"
with503, throttled = o["instances_with_503"], o["token_service"]["throttled"]
print(f"| {n} | {int(capacity) * int(n):,} | {fmt(s[0])} | {fmt(s[1])} | {fmt(s[2])} | {with503:,} | {throttled:,} |")
' "$n" "$capacity" "$out")")
done
{
  echo
  echo "## A mass restart of 100,000 instances (bench/fleet.rs)"
  echo
  echo "The fleet simulation's mass restart (every instance starts within one minute with no"
  echo "token) with the token service's capacity set to what one issuer instance with one core"
  echo "does ($capacity tokens/s: assertions, ES256, the slower of P-256 and RSA 3072 instance keys), times the number of"
  echo "instances; 20 ms per call; 1 h tokens; STS at its assumed 600 calls/s. Before: the"
  echo "existing service at an assumed 200 tokens/s, 9.6 minutes until the last instance was"
  echo "served and 99,000 instances answering 503 meanwhile (bench/fleet.md)."
  echo
  echo "| issuer instances | tokens/s | 50 % served | 99 % served | all served | instances that answered 503 | token requests throttled |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "*Served* counts from the first start; STS (600 calls/s for the account) is what bounds"
  echo "the tail once the token service keeps up: 100,000 first calls take at least 167 s."
} >> bench/issuer.md
cat bench/issuer.md
