//! Runtime: the cores, what the kernel must allow them, placement, the I/O edge, time.
//!
//! One glommio `LocalExecutor` per configured CPU, pinned to it (thread-per-core,
//! shared-nothing): a core owns its partitions, buffers and writers in `Rc`/`RefCell` and
//! never shares them. Threads meet only over bounded lock-free queues (`crossbeam`), passing
//! buffers by ownership: cores → I/O edge (files to store), edge → core (acknowledgements).
//!
//! What the kernel must allow (checked at start, with an error that says what to change):
//! - io_uring (Linux ≥ 5.8, not disabled by `kernel.io_uring_disabled` or a seccomp profile);
//! - locked memory: glommio registers `runtime.io_memory_bytes` with io_uring per executor, and
//!   needs `RLIMIT_MEMLOCK` ≥ ~3x that per core unless the process holds `CAP_IPC_LOCK` (root
//!   does). The soft limit is raised to what is needed when the hard limit allows.

pub mod context;
pub mod core;
pub mod edge;
mod encoder;
pub mod nudge;
pub mod outbox;
pub mod placement;
mod pump;
mod spilling;

use crate::config::CoresConfig;

/// CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is a valid empty set, and `sched_getaffinity`
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size matches the set passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(format!("sched_getaffinity failed: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: CPU_ISSET only reads the initialised set, for indices below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// The CPUs to run executors on.
pub fn resolve_cores(cfg: &CoresConfig) -> Result<Vec<usize>, String> {
    let allowed = allowed_cpus()?;
    match cfg {
        CoresConfig::List(list) => {
            for c in list {
                if !allowed.contains(c) {
                    return Err(format!(
                        "runtime.cores: CPU {c} is not available to this process (allowed: {allowed:?}); \
                         check taskset/cgroup cpusets or the list"
                    ));
                }
            }
            Ok(list.clone())
        }
        CoresConfig::Named(_) => Ok(allowed),
    }
}

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu has no preconditions; it returns -1 on error.
    let c = unsafe { libc::sched_getcpu() };
    c.max(0) as u32
}

/// What to do about RLIMIT_MEMLOCK.
#[derive(Debug, PartialEq, Eq)]
pub enum Memlock {
    Enough,
    /// Raise the soft limit to this (the hard limit allows it).
    Raise(u64),
    /// Cannot get enough: the message says what to change.
    Fail(String),
}

/// Decide on the memlock limit for `cores` executors registering `io_memory` bytes each.
/// Pure, so every branch is tested.
pub fn decide_memlock(soft: u64, hard: u64, cores: usize, io_memory: u64, cap_ipc_lock: bool) -> Memlock {
    let needed = memlock_needed(cores, io_memory);
    if cap_ipc_lock || soft >= needed {
        return Memlock::Enough;
    }
    if hard >= needed {
        return Memlock::Raise(needed);
    }
    let kib = |b: u64| {
        if b == u64::MAX {
            "unlimited".to_string()
        } else {
            format!("{} KiB", b / 1024)
        }
    };
    Memlock::Fail(format!(
        "locked-memory limit too low: io_uring needs {} ({cores} core(s) × 3 × runtime.io_memory_bytes \
         {}), but RLIMIT_MEMLOCK is {} (hard {}). Raise it (`ulimit -l {}` as root, LimitMEMLOCK= in \
         the systemd unit, or memlock in /etc/security/limits.conf), run with CAP_IPC_LOCK, or lower \
         runtime.io_memory_bytes or runtime.cores",
        kib(needed),
        kib(io_memory),
        kib(soft),
        kib(hard),
        needed.div_ceil(1024),
    ))
}

/// Locked memory needed for `cores` executors with `io_memory` bytes each.
pub fn memlock_needed(cores: usize, io_memory: u64) -> u64 {
    cores as u64 * 3 * io_memory
}

fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Make sure the executors can register their I/O memory; raise the soft limit if allowed.
pub fn ensure_memlock(cores: usize, io_memory: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    match decide_memlock(lim.rlim_cur, lim.rlim_max, cores, io_memory, has_cap_ipc_lock()) {
        Memlock::Enough => Ok(()),
        Memlock::Raise(to) => {
            let new = libc::rlimit {
                rlim_cur: to,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we pass; raising soft up to hard is permitted.
            if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } != 0 {
                return Err(format!(
                    "cannot raise RLIMIT_MEMLOCK to {to}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        }
        Memlock::Fail(m) => Err(m),
    }
}

/// Refuse to start when io_uring is switched off system-wide.
pub fn check_io_uring() -> Result<(), String> {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|s| s.trim().to_string()) {
        Ok(v) if v == "2" => Err("io_uring is disabled on this machine (kernel.io_uring_disabled = 2): \
             set `sysctl kernel.io_uring_disabled=0`"
            .into()),
        _ => Ok(()),
    }
}

/// An executor failed to start: say what is likely wrong.
pub fn executor_start_hint(err: &str) -> String {
    format!(
        "cannot start a glommio executor: {err}. sluicegate needs io_uring (Linux ≥ 5.8, not blocked by \
         kernel.io_uring_disabled or a container seccomp profile — Docker needs \
         --security-opt seccomp=unconfined) and enough locked memory (RLIMIT_MEMLOCK ≥ 3 × \
         runtime.io_memory_bytes per core, or CAP_IPC_LOCK)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_decisions() {
        let mib = 1 << 20;
        assert_eq!(decide_memlock(8 * mib, 8 * mib, 2, mib, false), Memlock::Enough);
        assert_eq!(decide_memlock(0, 0, 2, mib, true), Memlock::Enough);
        assert_eq!(decide_memlock(mib, u64::MAX, 2, mib, false), Memlock::Raise(6 * mib));
        let Memlock::Fail(m) = decide_memlock(mib, 2 * mib, 2, mib, false) else {
            panic!("must fail")
        };
        assert!(
            m.contains("needs 6144 KiB (2 core(s) × 3 × runtime.io_memory_bytes 1024 KiB)"),
            "{m}"
        );
        assert!(m.contains("RLIMIT_MEMLOCK is 1024 KiB (hard 2048 KiB)"), "{m}");
        assert!(m.contains("ulimit -l 6144"), "{m}");
        assert!(m.contains("runtime.io_memory_bytes"), "{m}");
    }

    #[test]
    fn cores_resolve_against_the_affinity_mask() {
        let all = resolve_cores(&CoresConfig::Named("all".into())).unwrap();
        assert!(!all.is_empty());
        assert_eq!(resolve_cores(&CoresConfig::List(vec![all[0]])).unwrap(), vec![all[0]]);
        let e = resolve_cores(&CoresConfig::List(vec![100_000])).unwrap_err();
        assert!(e.contains("CPU 100000 is not available"), "{e}");
    }
}
