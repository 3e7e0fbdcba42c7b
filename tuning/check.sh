#!/usr/bin/env bash
# tuning/check.sh — report this machine's settings against sluicegate's recommendations
# (tuning/README.md). Reads only: it changes nothing, needs no root, and always exits 0.
#
#   tuning/check.sh [SPILL_DIR] [CORES]
#
# SPILL_DIR: where buffer.spill_dir / state.dir live (default /var/lib/sluicegate, else /).
# CORES: data cores sluicegate will run (default: all online CPUs), for the memlock need.
set -u

SPILL_DIR="${1:-/var/lib/sluicegate}"
[ -e "$SPILL_DIR" ] || SPILL_DIR=/
CORES="${2:-$(nproc)}"
IO_MEMORY_MIB=1        # runtime.io_memory_bytes default, per core

ok=0; warn=0
row() { # status setting current recommended why
    printf '%-5s %-38s %-22s %-22s %s\n' "$1" "$2" "$3" "$4" "$5"
    case "$1" in OK) ok=$((ok + 1)) ;; WARN) warn=$((warn + 1)) ;; esac
}
sysctl_get() { sysctl -n "$1" 2>/dev/null || echo "n/a"; }
# at_least NAME MIN WHY: the first number of the value must be >= MIN.
at_least() {
    local v first; v="$(sysctl_get "$1")"; first="${v%%[[:space:]]*}"
    if [ "$v" = "n/a" ]; then row INFO "$1" "n/a" ">= $2" "$3"
    elif [ "$first" -ge "$2" ] 2>/dev/null; then row OK "$1" "$v" ">= $2" "$3"
    else row WARN "$1" "$v" ">= $2" "$3"; fi
}
at_most() {
    local v; v="$(sysctl_get "$1")"
    if [ "$v" = "n/a" ]; then row INFO "$1" "n/a" "<= $2" "$3"
    elif [ "$v" -le "$2" ] 2>/dev/null; then row OK "$1" "$v" "<= $2" "$3"
    else row WARN "$1" "$v" "<= $2" "$3"; fi
}
equals() {
    local v; v="$(sysctl_get "$1")"
    if [ "$v" = "$2" ]; then row OK "$1" "$v" "$2" "$3"
    else row WARN "$1" "$v" "$2" "$3"; fi
}

printf '%-5s %-38s %-22s %-22s %s\n' "" "setting" "current" "recommended" "why"
echo "== CPU"
model="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
row INFO "cpus online" "$(nproc)" "-" "${model:-unknown model}"
cmdline="$(cat /proc/cmdline 2>/dev/null)"
if grep -qE '(^| )isolcpus=' <<<"$cmdline"; then
    row OK "isolcpus (kernel command line)" "$(grep -oE 'isolcpus=[^ ]+' <<<"$cmdline")" "data cores isolated" "keeps the scheduler's other work off the data cores"
else
    row INFO "isolcpus (kernel command line)" "not set" "isolcpus=1-N nohz_full" "optional: on a dedicated host, isolate the data cores"
fi
gov=/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor
if [ -r "$gov" ]; then
    g="$(cat "$gov")"
    if [ "$g" = performance ]; then row OK "cpufreq governor" "$g" "performance" "no ramp-up latency"
    else row WARN "cpufreq governor" "$g" "performance" "cores that sleep between batches ramp up slowly"; fi
else
    row INFO "cpufreq governor" "n/a (virtualized)" "performance" "set by the hypervisor on EC2"
fi

echo "== memory"
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [ -r "$thp" ]; then
    t="$(grep -oE '\[[a-z]+\]' "$thp" | tr -d '[]')"
    if [ "$t" = never ]; then row WARN "transparent_hugepage" "$t" "madvise" "see tuning/README.md (THP)"
    else row OK "transparent_hugepage" "$t" "madvise or always" "see tuning/README.md (THP)"; fi
fi
at_most vm.swappiness 10 "buffers must not be swapped out; the spill is the overflow"
memlock="$(ulimit -l)"
need_kib=$((CORES * 3 * IO_MEMORY_MIB * 1024))
if [ "$(id -u)" = 0 ]; then
    row OK "memlock (ulimit -l, KiB)" "$memlock (root)" ">= $need_kib" "root holds CAP_IPC_LOCK: io_uring registration needs no limit"
elif [ "$memlock" = unlimited ] || [ "$memlock" -ge "$need_kib" ] 2>/dev/null; then
    row OK "memlock (ulimit -l, KiB)" "$memlock" ">= $need_kib" "glommio registers 3 x io_memory per core"
else
    row WARN "memlock (ulimit -l, KiB)" "$memlock" ">= $need_kib" "glommio registers 3 x io_memory per core (LimitMEMLOCK in the unit)"
fi
equals kernel.io_uring_disabled 0 "sluicegate runs on io_uring"

echo "== network"
at_least net.core.somaxconn 4096 "HTTP receiver accept backlog under connection bursts"
at_least net.ipv4.tcp_max_syn_backlog 4096 "same, for half-open connections"
at_least net.core.netdev_max_backlog 16384 "packets queued per CPU before the stack drops them"
at_least net.core.rmem_max 16777216 "large receive windows for 1 MiB request bodies"
at_least net.core.wmem_max 16777216 "large send windows for S3 multipart uploads"
equals net.ipv4.tcp_slow_start_after_idle 0 "keep-alive S3 and client connections keep their window"
at_least fs.file-max 1048576 "connections + segment files"
nofile="$(ulimit -n)"
if [ "$nofile" = unlimited ] || [ "$nofile" -ge 65536 ] 2>/dev/null; then
    row OK "nofile (ulimit -n)" "$nofile" ">= 65536" "connections_max per core x cores + files"
else
    row WARN "nofile (ulimit -n)" "$nofile" ">= 65536" "connections_max per core x cores + files (LimitNOFILE)"
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet irqbalance 2>/dev/null; then
    row INFO "irqbalance" "active" "off when pinning IRQs" "pin NIC queue IRQs to the non-data CPU(s) instead"
else
    row INFO "irqbalance" "not active" "-" "NIC IRQs: see /proc/interrupts; pin them off the data cores"
fi
for dev in /sys/class/net/*; do
    name="$(basename "$dev")"
    [ "$name" = lo ] && continue
    [ -d "$dev/device" ] || continue
    rx="$(ls -d "$dev"/queues/rx-* 2>/dev/null | wc -l)"
    row INFO "NIC $name rx queues" "$rx" ">= data cores (ENA: up to 32)" "one queue per core spreads receive work"
done

echo "== disk ($SPILL_DIR)"
src="$(df -P "$SPILL_DIR" 2>/dev/null | awk 'NR==2 {print $1}')"
fstype="$(df -PT "$SPILL_DIR" 2>/dev/null | awk 'NR==2 {print $2}')"
row INFO "filesystem" "${fstype:-?} on ${src:-?}" "xfs or ext4 on local NVMe" "spill and inbox: O_DIRECT writes + fdatasync"
blk="$(basename "${src:-}" 2>/dev/null)"
base="$(sed -E 's/p?[0-9]+$//' <<<"$blk")"
for b in "$blk" "$base"; do
    if [ -r "/sys/block/$b/queue/rotational" ]; then
        rot="$(cat "/sys/block/$b/queue/rotational")"
        sched="$(grep -oE '\[[^]]+\]' "/sys/block/$b/queue/scheduler" 2>/dev/null | tr -d '[]')"
        if [ "$rot" = 0 ]; then row OK "$b rotational" "0" "0 (SSD/NVMe)" "spill writes are sequential but fsynced often"
        else row WARN "$b rotational" "1" "0 (SSD/NVMe)" "a spinning disk cannot hold the spill's fsync rate"; fi
        row INFO "$b I/O scheduler" "${sched:-?}" "none (NVMe)" "io_uring queues its own order"
        break
    fi
done

echo "== summary: $ok OK, $warn WARN (nothing was changed; see tuning/README.md)"
exit 0
