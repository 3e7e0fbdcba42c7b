#!/usr/bin/env bash
# Resident memory of the release binary through an S3 outage. Starts s3s-fs on 127.0.0.1 (see
# tests/support/s3.rs), runs `sluicegate run` over a rate-limited generator (the config of
# tests/s3.rs's outage test: 4 partitions at 4,000 records/s, 1% bad, 16 MiB ring and RAW
# budgets per core, 200 ms RAW/quarantine/audit intervals), SIGKILLs the server 10 s in,
# prints the process's VmRSS and the spill directory's size every 5 s, restarts the server
# after DOWN seconds, then stops the run with SIGTERM (drain) and prints its report.
# Usage: benches/outage.sh [DOWN_S] (default 40). RAW=false turns RAW off; RECORDS (default
# 800,000) bounds the run; BIN (default target/release/sluicegate); WORK (default
# /tmp/sluicegate-outage).
set -euo pipefail
cd "$(dirname "$0")/.."
DOWN="${1:-40}"
BIN="${BIN:-target/release/sluicegate}"
WORK="${WORK:-/tmp/sluicegate-outage}"
S3S_FS="${S3S_FS:-${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs}"
PORT=19555
rm -rf "$WORK" && mkdir -p "$WORK/s3/lake"
s3() { "$S3S_FS" --host 127.0.0.1 --port $PORT --access-key k --secret-key s "$WORK/s3" >/dev/null 2>&1 & echo $!; }
S3=$(s3)
trap 'kill $S3 $SG 2>/dev/null || true' EXIT
sleep 0.5
cat > "$WORK/c.toml" <<TOML
[lake.s3]
bucket = "lake"
region = "us-east-1"
endpoint = "http://127.0.0.1:$PORT"
path_style = true
[state]
dir = "$WORK/state"
[keys]
demo = true
[[sources]]
name = "generator"
table = "events"
[sources.generator]
partitions = 4
records = ${RECORDS:-800000}
rate_per_s = 4000
bad_ratio = 0.01
start_time = "2026-11-26T10:00:00Z"
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
transforms = [{ op = "ingest_metadata" }]
[partitioning]
event_time_late_max_s = 315360000
[buffer]
memory_bytes_max = 16777216
flush_bytes_max = 4194304
flush_interval_ms = 1000
[raw]
segment_interval_ms = 200
segment_bytes_max = 4194304
memory_bytes_max = 16777216
enabled = ${RAW:-true}
[quarantine]
interval_ms = 200
[audit]
interval_ms = 200
TOML
export AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
"$BIN" run --no-progress --config "$WORK/c.toml" > "$WORK/report.txt" 2> "$WORK/log.txt" &
SG=$!
sample() { echo "$1 rss=$(awk '/VmRSS/ {print $2}' /proc/$SG/status) kB spill=$(du -sm "$WORK/state/spill" | cut -f1) MB"; }
sleep 10
kill -9 $S3; wait $S3 2>/dev/null || true
echo "store down"
for i in $(seq 5 5 "$DOWN"); do sleep 5; sample "down+${i}s"; done
S3=$(s3)
echo "store up"
for i in 5 10 15 20; do sleep 5; sample "up+${i}s"; done
kill -TERM $SG; wait $SG || true
cat "$WORK/report.txt"
