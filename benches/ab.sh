#!/usr/bin/env bash
# A/B throughput of sluicegate binaries on one bench config, runs alternating so that both see
# the same minutes of this VM (whose speed drifts by tens of percent from hour to hour):
# median records/s and median user + system CPU-s of each binary, and every run.
# Usage: benches/ab.sh RUNS CONFIG LABEL=BIN [LABEL=BIN ...]
#   CONFIG  a config written by benches/e2e.sh under $WORK (file, file-no-raw, ...), by name
#   BIN     a sluicegate binary, or a wrapper script that sets an environment and execs one
# Example: benches/ab.sh 4 file base=/tmp/sg-base new=target/release/sluicegate
set -euo pipefail
RUNS="$1"; CONFIG="$2"; shift 2
WORK="${WORK:-/tmp/sluicegate-bench}"
[ -f "$WORK/$CONFIG.toml" ] || { echo "no $WORK/$CONFIG.toml: run benches/e2e.sh once first" >&2; exit 2; }
declare -A rate cpu
for _ in $(seq "$RUNS"); do
    for lb in "$@"; do
        label="${lb%%=*}"; bin="${lb#*=}"
        rm -rf "$WORK/lake" "$WORK/spill"
        out=$( { /usr/bin/time -f "CPU %U %S" "$bin" run --no-progress --config "$WORK/$CONFIG.toml"; } 2>&1 )
        rate[$label]+="$(grep -o '[0-9,]* records/s' <<<"$out" | tr -d ', records/s') "
        cpu[$label]+="$(awk '/^CPU /{printf "%.2f", $2 + $3}' <<<"$out") "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%dT%H:%MZ)"
for lb in "$@"; do
    label="${lb%%=*}"
    printf '%-10s median %8s records/s %6s CPU-s   runs: %s  CPU: %s\n' "$label" \
        "$(median <<<"${rate[$label]}")" "$(median <<<"${cpu[$label]}")" "${rate[$label]}" "${cpu[$label]}"
done
