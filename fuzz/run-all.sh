#!/usr/bin/env bash
# Run fuzz targets under libFuzzer (nightly toolchain, cargo-fuzz, AddressSanitizer) for RUNS
# executions or SECONDS_MAX seconds each, whichever ends first, then merge what raised coverage
# into the committed corpus (fuzz/corpus/<target>/: libFuzzer's -merge keeps only inputs that
# add coverage). Prints one line per target: executions, seconds, exit status, crashes
# (artifacts in fuzz/artifacts/<target>/), corpus size. Targets may be named; default: all.
#
#   fuzz/run-all.sh                      # 10,000,000 executions or 30 minutes each
#   RUNS=1000000 SECONDS_MAX=60 fuzz/run-all.sh get_records kpl
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10000000}"
SECONDS_MAX="${SECONDS_MAX:-1800}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(envelope sgf1 raw_lz4 inbox spill kpl get_records md5_lanes base64_lanes http_body json_record)
fi
work="${FUZZ_WORK:-target/fuzz-work}"
# A target directory of its own (the sanitizer build shares nothing with the test build), and
# no LTO: thin LTO re-optimises every dependency into each of the eleven binaries.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-target/fuzz}"
export CARGO_PROFILE_RELEASE_LTO=off
cargo +nightly fuzz build --fuzz-dir fuzz >/dev/null || exit 2
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    log="$work/$t.log"
    extra=()
    # json_record keeps one pipeline across inputs (made anew every 512): libFuzzer would take
    # its growth for a leak and scan the heap after every input.
    [ "$t" = json_record ] && extra=(-detect_leaks=0)
    start=$(date +%s)
    "$bin/$t" "$work/$t" "fuzz/corpus/$t" -runs="$RUNS" -max_total_time="$SECONDS_MAX" \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" "${extra[@]}" >"$log" 2>&1
    status=$?
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
    # Keep what raised coverage: merged into the committed corpus.
    "$bin/$t" -merge=1 "fuzz/corpus/$t" "$work/$t" "${extra[@]}" >>"$log" 2>&1
    echo "$t executions=${execs:-?} seconds=$took exit=$status crashes=$crashes corpus=$(ls "fuzz/corpus/$t" | wc -l) date=$(date -u +%FT%TZ)"
done
