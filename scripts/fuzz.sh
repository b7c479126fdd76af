#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) and prints one line per
# target: executions, speed, corpus size, findings. Exits non-zero if any target crashed, hung
# or leaked; the input is then in fuzz/artifacts/<target>/ (turn it into a regression test).
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600 config # one target, 10 minutes
#
# FUZZ_FEATURES=sts also builds and runs sts_response, which feeds STS answers through the AWS
# SDK's parser: the SDK is a third of the build, so CI leaves it out.
# Installs cargo-fuzz (pinned) into .tools/ when missing. Builds with the stable toolchain and
# RUSTC_BOOTSTRAP=1 (in case cargo-fuzz passes a -Z flag); FUZZ_TOOLCHAIN=nightly uses rustup's
# nightly instead.
# Targets are built without a sanitizer (-s none): the crate forbids unsafe code, and the C in
# aws-lc is not instrumented either way; debug assertions (overflow checks) stay on.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
CARGO_FUZZ_VERSION=0.13.2

if ! .tools/bin/cargo-fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root .tools >/dev/null
fi
export PATH="$PWD/.tools/bin:$PATH"
if [ "${FUZZ_TOOLCHAIN:-stable}" = nightly ]; then
    cargo=(cargo +nightly)
    toolchain="nightly ($(rustup run nightly rustc --version))"
else
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
    toolchain="stable with RUSTC_BOOTSTRAP=1 ($(rustc --version))"
fi

cd fuzz
features=${FUZZ_FEATURES:-}
feature_args=()
if [ -n "$features" ]; then
    feature_args=(--features "$features")
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi
if [[ ",$features," != *",sts,"* ]]; then
    # Needs the sts feature (required-features): left out of this run.
    mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -vx sts_response)
fi
echo "== building ${#targets[@]} fuzz targets with $toolchain${features:+ (features: $features)}"
"${cargo[@]}" fuzz build -s none --debug-assertions "${feature_args[@]}" >/dev/null

failed=0
report=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    echo "== fuzzing $t for ${secs}s"
    set +e
    "${cargo[@]}" fuzz run -s none --debug-assertions "${feature_args[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -max_len=8192 -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    code=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    findings=$(find "artifacts/$t" -type f ! -name last-run.log | wc -l)
    if [ "$code" -ne 0 ] || [ "$findings" -ne 0 ]; then
        failed=1
        tail -40 "$log"
    fi
    report+=("$(printf '%-18s exit %-3s runs %-9s exec/s %-7s corpus %-5s peak RSS %-5s MB findings %s' \
        "$t" "$code" "${runs:-?}" "${speed:-?}" "$corpus" "${peak:-?}" "$findings")")
done
echo "== fuzz report (${secs}s per target)"
printf '%s\n' "${report[@]}"
exit "$failed"
