#!/usr/bin/env bash
# End-to-end throughput of the release binary on this machine, each figure the median of
# RUNS runs, with baselines in the same invocation:
#   embedded      the embedded default: generator (1% bad) on the cores → local lake
#   file          a pre-generated envelope file (1,000,000 records, 1% bad) → local lake
#   file-no-raw   the same file with the RAW backup off (baseline: what RAW costs)
#   file-no-fsync the same file with lake.fsync = false (baseline: what durability costs)
#   embedded-spill the embedded default with a 16 MiB ring budget per core: most records spill
#   embedded-s3   the embedded default into a local S3-compatible server (s3s-fs on
#                 127.0.0.1, objects on the same disk) instead of the local directory, uploads
#                 with lake.s3.payload_signing = "never" (the default over HTTPS, as on AWS)
#   embedded-s3-signed  the same with payload signing (the default over plain HTTP)
#   *-baseline    with BASELINE_BIN set (another build of sluicegate, e.g. an older commit):
#                 embedded and file through that binary, interleaved with the runs above
# Usage: benches/e2e.sh [RUNS] (default 3). Writes under $WORK (default /tmp/sluicegate-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
WORK="${WORK:-/tmp/sluicegate-bench}"
BIN=target/release/sluicegate
cargo build --release --quiet
mkdir -p "$WORK"
INPUT="$WORK/events.sgf"
[ -f "$INPUT" ] || "$BIN" generate --output "$INPUT" --records 1000000 --seed 42 --bad-ratio 0.01 \
    --start-time 2026-11-26T10:00:00Z

config() { # $1 = extra TOML
    cat <<TOML
[lake]
dir = "$WORK/lake"
[keys]
demo = true
[[sources]]
name = "events-file"
table = "events"
[sources.file]
paths = ["$INPUT"]
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
transforms = [{ op = "ingest_metadata" }]
[partitioning]
event_time_late_max_s = 315360000
$1
TOML
}
config "" > "$WORK/file.toml"
# The embedded default as a config file, for benches/ab.sh (`ab.sh N embedded A=BIN B=BIN`).
sed "s|^dir = .*|dir = \"$WORK/lake\"|" examples/embedded-default.toml > "$WORK/embedded.toml"
config $'[raw]\nenabled = false' > "$WORK/file-no-raw.toml"
{ config ""; } | sed 's/^\[lake\]$/[lake]\nfsync = false/' > "$WORK/file-no-fsync.toml"
cat > "$WORK/embedded-spill.toml" <<TOML
[lake]
dir = "$WORK/lake"
[keys]
demo = true
[[sources]]
name = "generator"
table = "events"
[sources.generator]
records = 1000000
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
[buffer]
memory_bytes_max = 16777216
spill_dir = "$WORK/spill"
TOML

# The embedded default as written out in examples/, with its [lake] pointed at the S3 server.
{ printf '[lake.s3]\nbucket = "lake"\nregion = "us-east-1"\nendpoint = "http://127.0.0.1:18099"\npath_style = true\n'
  grep -v '^\[lake\]$\|^dir = ' examples/embedded-default.toml; } > "$WORK/embedded-s3-signed.toml"
sed 's/^path_style = true$/path_style = true\npayload_signing = "never"/' "$WORK/embedded-s3-signed.toml" > "$WORK/embedded-s3.toml"
S3S_FS="${S3S_FS:-$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")}"
mkdir -p "$WORK/s3/lake"
"$S3S_FS" --host 127.0.0.1 --port 18099 --access-key bench --secret-key bench-secret "$WORK/s3" \
    >/dev/null 2>&1 &
S3_PID=$!
trap 'kill $S3_PID 2>/dev/null' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true

rate() { grep -o '[0-9,]* records/s' | tr -d ', records/s'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A results
variants=(embedded file file-no-raw file-no-fsync embedded-spill embedded-s3 embedded-s3-signed)
[ -n "${BASELINE_BIN:-}" ] && variants+=(embedded-baseline file-baseline)
for i in $(seq "$RUNS"); do
    rm -rf "$WORK/lake"
    results[embedded]+="$("$BIN" run --no-progress --lake "$WORK/lake" | rate) "
    for v in file file-no-raw file-no-fsync embedded-spill; do
        rm -rf "$WORK/lake" "$WORK/spill"
        results[$v]+="$("$BIN" run --no-progress --config "$WORK/$v.toml" | rate) "
    done
    for v in embedded-s3 embedded-s3-signed; do
        rm -rf "$WORK/s3/lake" && mkdir -p "$WORK/s3/lake"
        results[$v]+="$("$BIN" run --no-progress --config "$WORK/$v.toml" | rate) "
    done
    if [ -n "${BASELINE_BIN:-}" ]; then
        rm -rf "$WORK/lake"
        results[embedded-baseline]+="$("$BASELINE_BIN" run --no-progress --lake "$WORK/lake" | rate) "
        rm -rf "$WORK/lake"
        results[file-baseline]+="$("$BASELINE_BIN" run --no-progress --config "$WORK/file.toml" | rate) "
    fi
done
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
for v in "${variants[@]}"; do
    printf '%-14s median %8s records/s   runs: %s\n' "$v" "$(tr ' ' '\n' <<<"${results[$v]}" | grep . | median)" "${results[$v]}"
done
