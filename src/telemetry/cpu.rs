//! CPU time as the kernel accounts it (`getrusage`): of the whole process, or of the calling
//! thread. Benches measure cost this way rather than by wall time, which on a shared 2-CPU
//! machine says more about the neighbours than about the code.

use std::time::Duration;

/// User + system CPU time of every thread of the process so far.
pub fn process() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User + system CPU time of the calling thread so far.
pub fn thread() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct we own, which is valid zeroed; `who` is one of
    // the two targets above.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut u) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_is_charged_and_counted_in_the_process() {
        let (t0, p0) = (thread(), process());
        let mut x = 0u64;
        while thread() - t0 < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        assert!(process() - p0 >= Duration::from_millis(20));
    }
}
