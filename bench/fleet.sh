#!/usr/bin/env bash
# The fleet simulation (bench/fleet.rs): N simulated sidecars running the real refresher and
# token cache against shared STS and token-service fakes with a capacity, in paused time.
# Writes bench/fleet.md, bench/fleet.json and bench/fleet.svg. Arguments go to the simulation
# (--quick, --sizes, --sts-rate, --token-service-rate, ...; --help lists them).
# The first build compiles the AWS SDK with optimizations (several minutes); a run of every
# scenario at 1k, 10k and 100k takes a few minutes more.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --locked --quiet --profile fleet --example fleet -- "$@"
