//! Nudges: a periodic, harmless signal to each core thread, so an executor that went to sleep
//! in `io_uring_enter` and missed its wake-up is woken within [`NUDGE_INTERVAL`].
//!
//! Why: glommio 0.9 sleeps by linking its rings inside `io_uring_enter`, and on some virtual
//! machines that wait can miss the completion or timeout that should end it (glommio issue
//! #547, "hang in an EC2 instance"). Seen here once in a benchmark run: a core with due timers
//! parked for 15 minutes until a debugger's attach interrupted the syscall. A signal does the
//! same: `io_uring_enter` returns `EINTR`, glommio treats that as a normal wake-up, runs its
//! timers and goes back to sleep if nothing is due.
//!
//! The signal is `SIGURG` (ignored by default, so a stray one never kills anything; Go's
//! runtime uses it the same way) with an empty handler installed *without* `SA_RESTART`, so a
//! blocking syscall returns instead of silently restarting. Every other blocking call on a core
//! thread either retries `EINTR` (the standard library's I/O and sleeps) or cannot be interrupted
//! (disk I/O). Bounds: one signal per core per [`NUDGE_INTERVAL`] while the core runs.

use std::time::Duration;

/// How often each core is nudged: the longest a missed wake-up can stall a core.
pub const NUDGE_INTERVAL: Duration = Duration::from_millis(100);

pub const NUDGE_SIGNAL: libc::c_int = libc::SIGURG;

extern "C" fn on_nudge(_: libc::c_int) {}

/// Install the empty `SIGURG` handler (idempotent; once per process is enough).
pub fn install() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid starting value; we set the handler to a function
    // that does nothing (async-signal-safe), an empty mask and no SA_RESTART, and pass valid
    // pointers to sigemptyset and sigaction.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_nudge as *const () as libc::sighandler_t;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(NUDGE_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Nudge one thread. `thread` must be a thread that has not been joined yet.
pub fn nudge<T>(thread: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the pthread_t of a thread that has not been joined stays valid (even once it has
    // exited), and `install` made the signal harmless. The result is ignored: a thread that has
    // exited and not yet been joined returns ESRCH at worst.
    unsafe {
        libc::pthread_kill(thread.as_pthread_t(), NUDGE_SIGNAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_nudge_interrupts_a_blocking_syscall() {
        install().unwrap();
        let (reader, _writer) = std::io::pipe().unwrap();
        let fd = reader.as_raw_fd();
        // A raw read(2) on an empty pipe blocks until a signal interrupts it (no SA_RESTART).
        let blocked = std::thread::spawn(move || {
            let mut b = [0u8; 1];
            // SAFETY: reading into a valid one-byte buffer from an open pipe.
            let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
            (n, std::io::Error::last_os_error().raw_os_error())
        });
        while !blocked.is_finished() {
            nudge(&blocked);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(blocked.join().unwrap(), (-1, Some(libc::EINTR)));
        drop(reader);
    }
}
