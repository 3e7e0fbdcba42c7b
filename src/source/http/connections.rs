//! The receiver's open connections on one core: each one's phase and deadline, the table that
//! keeps them within `connections_max`, and the socket adapter under hyper that notices a
//! request's first byte.
//!
//! A connection is in one phase at a time, and each phase has its deadline, enforced by the
//! connection's watchdog (one timer per connection, moved as the phase changes):
//!
//! | phase       | from                                      | closed after        |
//! |-------------|-------------------------------------------|---------------------|
//! | `Idle`      | the accept, or the last answer            | `idle_timeout`      |
//! | `Headers`   | the first byte of a request               | `header_timeout`    |
//! | `Body`      | the headers (deadline from the first byte)| `request_timeout`   |
//! | `Committing`| the body appended to the inbox            | never (the fsync is ours to finish) |
//!
//! The per-read timeout on the socket (`idle_timeout`, SO_RCVTIMEO) still closes a connection
//! that stalls inside one read. A client that trickles its headers (slowloris) or its body is
//! closed by its deadline however often it sends a byte.
//!
//! The table: at most `connections_max` connections per core. When a new connection arrives at
//! a full table, the connection that has waited longest without being served (`Idle` or
//! `Headers`, oldest phase start first) is closed to make room; a client being served (`Body`,
//! `Committing`) is never closed for another. When every connection is being served, the new
//! one waits (in the listen backlog) for one to end.

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Most bytes one socket read may fill (hyper's buffer may offer more: zeroing it all first
/// would cost more than the read).
const READ_WINDOW_BYTES: usize = 64 << 10;

/// The deadlines of a connection's phases.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub idle: Duration,
    pub header: Duration,
    pub request: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Headers,
    Body,
    Committing,
    /// Chosen to make room: its watchdog closes it at once.
    Evicted,
}

/// One open connection's phase and its watchdog's wake-up.
pub struct Conn {
    phase: Cell<Phase>,
    /// When the phase began.
    since: Cell<Instant>,
    /// When the current request's first byte arrived.
    request_start: Cell<Instant>,
    deadlines: Deadlines,
    /// Wakes the watchdog when the deadline moved earlier (or appeared).
    nudge: LocalSender<()>,
}

impl Conn {
    fn deadline(&self) -> Option<Instant> {
        match self.phase.get() {
            Phase::Idle => Some(self.since.get() + self.deadlines.idle),
            Phase::Headers => Some(self.since.get() + self.deadlines.header),
            Phase::Body => Some(self.request_start.get() + self.deadlines.request),
            Phase::Committing => None,
            Phase::Evicted => Some(self.since.get()),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Move to `phase` now.
    pub fn enter(&self, phase: Phase) {
        if self.phase.get() == Phase::Evicted {
            return; // already being closed
        }
        let old = self.deadline();
        let now = Instant::now();
        // A request starts at its first byte; a pipelined one, whose bytes hyper had already
        // read, at its headers.
        if phase == Phase::Headers || (phase == Phase::Body && self.phase.get() == Phase::Idle) {
            self.request_start.set(now);
        }
        self.phase.set(phase);
        self.since.set(now);
        let new = self.deadline();
        if matches!((old, new), (None, Some(_))) || matches!((old, new), (Some(o), Some(n)) if n < o) {
            let _ = self.nudge.try_send(()); // full: a wake-up is already on its way
        }
    }

    /// Close the connection as soon as its watchdog runs. Never used on a connection being
    /// served: the table only evicts `Idle` and `Headers`.
    fn evict(&self) {
        self.phase.set(Phase::Evicted);
        self.since.set(Instant::now());
        let _ = self.nudge.try_send(());
    }

    /// Resolves when the connection's deadline passes: the caller then drops the connection.
    pub async fn watchdog(&self, nudged: LocalReceiver<()>) {
        loop {
            match self.deadline() {
                None => {
                    nudged.recv().await;
                }
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return;
                    }
                    futures_lite::future::or(glommio::timer::sleep(at - now), async {
                        nudged.recv().await;
                    })
                    .await;
                }
            }
        }
    }
}

/// The core's open connections.
pub struct Table {
    open: RefCell<HashMap<u64, Rc<Conn>>>,
    next_id: Cell<u64>,
    deadlines: Deadlines,
}

/// A connection's place in the table: dropping it frees the place.
pub struct Entry {
    table: Rc<Table>,
    id: u64,
    pub conn: Rc<Conn>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.table.open.borrow_mut().remove(&self.id);
    }
}

impl Table {
    pub fn new(deadlines: Deadlines) -> Table {
        Table {
            open: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            deadlines,
        }
    }

    /// Close the connection that has waited longest without being served; false if every
    /// connection is being served.
    pub fn evict_oldest_unserved(&self) -> bool {
        let open = self.open.borrow();
        let oldest = open
            .values()
            .filter(|c| matches!(c.phase.get(), Phase::Idle | Phase::Headers))
            .min_by_key(|c| c.since.get());
        match oldest {
            Some(c) => {
                c.evict();
                true
            }
            None => false,
        }
    }

    /// Add a new connection (the caller made room first) and its watchdog's receiver.
    pub fn insert(self: &Rc<Self>) -> (Entry, LocalReceiver<()>) {
        let (nudge, nudged) = local_channel::new_bounded(1);
        let now = Instant::now();
        let conn = Rc::new(Conn {
            phase: Cell::new(Phase::Idle),
            since: Cell::new(now),
            request_start: Cell::new(now),
            deadlines: self.deadlines,
            nudge,
        });
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.open.borrow_mut().insert(id, conn.clone());
        let entry = Entry {
            table: self.clone(),
            id,
            conn,
        };
        (entry, nudged)
    }
}

/// glommio's socket (or a TLS stream over it) under hyper's I/O traits; the first byte read
/// while `Idle` starts a request's `Headers` phase.
pub struct Io<S> {
    pub stream: S,
    pub conn: Rc<Conn>,
}

/// What a connection's bytes travel on: glommio's socket, or TLS over it.
pub trait Stream: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin {}
impl<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> Stream for S {}

impl<S: Stream> hyper::rt::Read for Io<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper hands a fresh uninitialised window each time: zero only what one read may fill.
        let want = buf.remaining().min(READ_WINDOW_BYTES);
        let dst = buf.initialize_unfilled_to(want);
        match futures_lite::AsyncRead::poll_read(Pin::new(&mut this.stream), cx, dst) {
            Poll::Ready(Ok(n)) => {
                if n > 0 && this.conn.phase() == Phase::Idle {
                    this.conn.enter(Phase::Headers);
                }
                // SAFETY: `initialize_unfilled` initialised every byte of `dst`, and `poll_read`
                // reported writing `n <= dst.len()` of them, so the first `n` unfilled bytes are
                // initialised and filled. Exercised by every request in source::http::tests.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: Stream> hyper::rt::Write for Io<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().stream), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().stream), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::AsyncWrite::poll_close(Pin::new(&mut self.get_mut().stream), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Deadlines = Deadlines {
        idle: Duration::from_secs(30),
        header: Duration::from_secs(10),
        request: Duration::from_secs(120),
    };

    #[test]
    fn each_phase_has_its_deadline_and_only_unserved_connections_are_evicted() {
        let table = Rc::new(Table::new(D));
        let (a, _a_nudged) = table.insert();
        let (b, _b_nudged) = table.insert();
        let c = &a.conn;
        let left = |c: &Conn| c.deadline().map(|d| d.saturating_duration_since(Instant::now()));
        assert!(left(c).unwrap() > Duration::from_secs(29), "idle");
        c.enter(Phase::Headers);
        assert!(left(c).unwrap() <= D.header, "headers");
        let started = c.request_start.get();
        c.enter(Phase::Body);
        assert_eq!(
            c.request_start.get(),
            started,
            "the body's deadline counts from the first byte"
        );
        assert!(left(c).unwrap() > D.header, "body");
        c.enter(Phase::Committing);
        assert_eq!(c.deadline(), None, "a commit is ours to finish");
        c.enter(Phase::Idle);
        std::thread::sleep(Duration::from_millis(5));
        c.enter(Phase::Body); // pipelined: its headers were read with the previous request
        assert!(c.request_start.get() > started);
        // `a` is being served: the table evicts `b`, then finds nothing more to evict.
        assert!(table.evict_oldest_unserved());
        assert_eq!(b.conn.phase(), Phase::Evicted);
        assert_eq!(b.conn.deadline().map(|d| d <= Instant::now()), Some(true));
        assert!(!table.evict_oldest_unserved(), "a served connection is never evicted");
        drop(b);
        assert_eq!(table.open.borrow().len(), 1);
    }
}
