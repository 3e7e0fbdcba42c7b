//! The inbox: one core's write-ahead log of accepted request bodies, and its reader.
//!
//! The receiver answers 200 only once a request's body is in the inbox and fsynced; the
//! pipeline then reads the inbox like any other source partition, by position, so the delivery
//! contract (intents, audit, checkpoints) covers HTTP input exactly as it covers a file. A body
//! is one frame, checksummed whole: a request is in the inbox entirely or not at all, so a crash
//! never leaves half a request to be delivered and then sent again by the client's retry.
//!
//! ```text
//! segment file "<base position, 20 digits>.sgi" := "SGINBOX1" frame*
//! frame := body length: u32 LE | CRC32C of the body: u32 LE | body (decoded request body)
//! ```
//! Positions are byte offsets in the inbox as one stream over its segments: a frame at position
//! `p` in the segment based at `b` is at file offset `8 + p - b`, and a record at offset `o` of
//! its body has position `p + 8 + o`. Segments roll at about `segment_bytes` (a commit is
//! never split), so each segment ends exactly where the next one begins.
//!
//! Group commit: appends go to one pending buffer; a single commit task writes it and calls
//! `fdatasync`, and every request whose frame that covered is answered; whatever arrived
//! meanwhile goes in the next commit. One fsync in flight per core, no timer to tune.
//!
//! Recovery (at open): the last segment is scanned ([`scan`]) and a **torn tail** — what a
//! crash mid-commit leaves past the last fsync, never acknowledged — is cut off: an incomplete
//! last frame (its header or body runs past the end of the file), or zeros past the written
//! end (a zero length word followed by nothing but zeros: no frame is ever empty, since a
//! request holds at least one record). Anything else that fails is **corruption** of data that
//! may have been acknowledged — a whole frame failing its CRC, an empty frame followed by
//! data — and is never cut: opening the inbox fails with the segment, byte and reason, so the
//! partition stops loudly (log, `source_errors`, `/ready` false, non-zero exit) and nothing is
//! deleted. Earlier segments are scanned as they are read, with the same verdict.
//!
//! Salvage (`sluicegate inbox salvage`, on the operator's say): the offsets of corrupt frames
//! are written to a side file `<segment>.salvage` (one decimal file offset per line, fsynced);
//! the segment is not changed. Recovery and the reader then pass over a listed frame whose
//! length still fits the file, and the reader hands its body, cut into records of at most
//! [`RECORD_BYTES_MAX`] bytes, to the pipeline already rejected (`fetch/framing`, "inbox frame
//! … failed its CRC"): the bytes land in the quarantine, and every frame after it flows on. A
//! corrupt frame whose length runs past the file ends the segment there (the bytes after it
//! cannot be framed); salvage says so before it writes anything.
//!
//! Bounds: accepted bytes not yet read ≤ `inbox_bytes_max` (the receiver answers 429 past it);
//! the pending buffer is part of that; one frame ≤ `body_bytes_max`.

use super::body::{records, Refusal};
use crate::extract::{Reject, Rule, Stage, RECORD_BYTES_MAX};
use crate::source::{Fetch, FetchBatch, SourceError};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::{BufferedFile, Directory, OpenOptions};
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

mod check;
pub use check::{check, salvage, salvage_path, salvaged_offsets, scan, segments_under, Salvaged, Scan, Tail};

pub const SEGMENT_MAGIC: &[u8; 8] = b"SGINBOX1";
pub const FRAME_HEADER_BYTES: u64 = 8;
/// No frame is longer than the largest `body_bytes_max` the configuration allows: a longer
/// length word is corruption, not a frame cut short.
pub const FRAME_BYTES_CEILING: u64 = 256 << 20;
const SEGMENT_SUFFIX: &str = ".sgi";
/// After a write fails (a full disk), the inbox refuses requests (503) and probes the disk
/// after this long, doubling up to [`WRITE_RETRY_MAX`], until a probe finds room again.
pub const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two probes: a freed disk is in use again within 5 s.
pub const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Room a probe must find on the disk (allocated and given back) before requests are taken
/// again: one request body of the default `body_bytes_max`.
pub const WRITE_PROBE_BYTES: u64 = 8 << 20;
/// How long the reader waits before looking again when everything durable has been read.
pub const READ_IDLE_POLL: Duration = Duration::from_millis(2);

/// The settings an inbox needs.
#[derive(Debug, Clone)]
pub struct InboxLimits {
    pub segment_bytes: u64,
    pub inbox_bytes_max: u64,
}

pub struct Inbox {
    dir: PathBuf,
    limits: InboxLimits,
    state: RefCell<State>,
    /// Set when the run stops: nothing more is appended.
    closed: std::cell::Cell<bool>,
}

struct State {
    /// Base positions of the segment files, ascending; the last one is appended to.
    segments: Vec<u64>,
    /// End of the frames appended (written or still pending).
    end: u64,
    /// End of the frames written and fsynced.
    durable: u64,
    /// Frames appended since the last commit took the buffer; they start at `end - pending.len()`.
    pending: Vec<u8>,
    /// Requests waiting for their frame to be durable: (frame end, where to say so).
    waiters: Vec<(u64, LocalSender<Result<(), String>>)>,
    committing: bool,
    /// The active segment, opened for writing by the commit task.
    file: Option<Rc<BufferedFile>>,
    /// Where the reader is: `end - read` is the inbox's unread bytes.
    read: u64,
    /// A write or fsync failed and no probe has found room since: requests are refused (what
    /// was acknowledged is still read).
    failed: Option<String>,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Inbox {
    /// Open (or create) the inbox in `dir`, cut a torn tail, and delete the segments wholly
    /// before `checkpoint`.
    pub fn open(dir: &Path, limits: InboxLimits, checkpoint: u64) -> Result<Inbox, String> {
        let err = |what: &str, e: std::io::Error| format!("inbox {}: {what}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| err("cannot create", e))?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| err("cannot list", e))? {
            let name = entry.map_err(|e| err("cannot list", e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name.strip_suffix(SEGMENT_SUFFIX).and_then(|b| b.parse::<u64>().ok()) {
                segments.push(base);
            }
        }
        segments.sort_unstable();
        let end = match segments.last() {
            Some(&base) => recover_tail(&segment_path(dir, base), base, checkpoint)?,
            None => {
                let base = checkpoint;
                create_segment(dir, base).map_err(|e| err("cannot create a segment", e))?;
                segments.push(base);
                base
            }
        };
        if checkpoint > end {
            return Err(format!(
                "inbox {}: the checkpoint is at position {checkpoint}, past the inbox's end {end} (the inbox was removed or replaced?)",
                dir.display()
            ));
        }
        let inbox = Inbox {
            dir: dir.to_path_buf(),
            limits,
            state: RefCell::new(State {
                segments,
                end,
                durable: end,
                pending: Vec::new(),
                waiters: Vec::new(),
                committing: false,
                file: None,
                read: checkpoint,
                failed: None,
            }),
            closed: std::cell::Cell::new(false),
        };
        inbox
            .release_before(checkpoint)
            .map_err(|e| err("cannot delete a segment", e))?;
        Ok(inbox)
    }

    /// Append one decoded body as a frame; the receiver resolves once it is durable (or the
    /// write failed). 429 when the inbox is full, 503 once a write has failed.
    pub fn append(self: &Rc<Self>, body: &[u8]) -> Result<LocalReceiver<Result<(), String>>, Refusal> {
        if self.closed.get() {
            return Err(Refusal::new(503, "the receiver is shutting down"));
        }
        let mut st = self.state.borrow_mut();
        if let Some(e) = &st.failed {
            return Err(Refusal::new(503, format!("the inbox cannot be written: {e}")));
        }
        let frame = FRAME_HEADER_BYTES + body.len() as u64;
        if st.end - st.read + frame > self.limits.inbox_bytes_max {
            return Err(Refusal::new(
                429,
                format!(
                    "the receiver is behind: {} bytes accepted and not yet processed (inbox_bytes_max {})",
                    st.end - st.read,
                    self.limits.inbox_bytes_max
                ),
            ));
        }
        st.pending.extend_from_slice(&(body.len() as u32).to_le_bytes());
        st.pending.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        st.pending.extend_from_slice(body);
        st.end += frame;
        let (tx, rx) = local_channel::new_bounded(1);
        let end = st.end;
        st.waiters.push((end, tx));
        let start = !st.committing;
        st.committing = true;
        drop(st); // the commit task may start running at once
        if start {
            glommio::spawn_local(self.clone().commit_loop()).detach();
        }
        Ok(rx)
    }

    /// Whether a body of `bytes` would fit now (the receiver checks before reading a body).
    pub fn has_room(&self, bytes: u64) -> bool {
        let st = self.state.borrow();
        st.end - st.read + FRAME_HEADER_BYTES + bytes <= self.limits.inbox_bytes_max
    }

    /// Take no more appends (those already made still commit).
    pub fn close(&self) {
        self.closed.set(true);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Closed, and every append made is durable (or failed): nothing more will arrive.
    pub fn settled(&self) -> bool {
        let st = self.state.borrow();
        self.closed.get() && !st.committing && st.pending.is_empty()
    }

    /// The write error that stopped the inbox, if one did.
    pub fn failure(&self) -> Option<String> {
        self.state.borrow().failed.clone()
    }

    /// Accepted bytes not yet read by the pipeline.
    pub fn unread_bytes(&self) -> u64 {
        let st = self.state.borrow();
        st.end - st.read
    }

    async fn commit_loop(self: Rc<Self>) {
        loop {
            let (batch, start, end) = {
                let mut st = self.state.borrow_mut();
                if st.pending.is_empty() {
                    st.committing = false;
                    return;
                }
                let batch = std::mem::take(&mut st.pending);
                (batch, st.durable, st.end)
            };
            let result = self.write(batch, start).await;
            let mut st = self.state.borrow_mut();
            let answered: Vec<_> = match result {
                Ok(()) => {
                    st.durable = end;
                    let (done, wait) = std::mem::take(&mut st.waiters)
                        .into_iter()
                        .partition(|(e, _)| *e <= end);
                    st.waiters = wait;
                    done.into_iter().map(|(_, tx)| (tx, Ok(()))).collect()
                }
                Err(e) => {
                    // What was acknowledged stays readable. Every request still waiting is
                    // answered 503 (it may be sent again), the frames after the durable end are
                    // forgotten, and requests are refused until a probe finds room again.
                    let e = e.to_string();
                    tracing::error!(inbox = %self.dir.display(), error = %e, "inbox write failed: refusing requests until the disk has room");
                    st.failed = Some(e.clone());
                    st.pending.clear();
                    st.end = st.durable;
                    st.committing = false;
                    glommio::spawn_local(self.clone().retry_writes()).detach();
                    st.waiters.drain(..).map(|(_, tx)| (tx, Err(e.clone()))).collect()
                }
            };
            let failed = st.failed.is_some();
            drop(st);
            for (tx, r) in answered {
                let _ = tx.try_send(r);
            }
            if failed {
                return;
            }
        }
    }

    /// Probe the disk with backoff until it has room again, then take requests again.
    async fn retry_writes(self: Rc<Self>) {
        let mut wait = WRITE_RETRY_FIRST;
        loop {
            glommio::timer::sleep(wait).await;
            match self.probe() {
                Ok(()) => {
                    self.state.borrow_mut().failed = None;
                    tracing::info!(inbox = %self.dir.display(), "inbox writable again: taking requests");
                    return;
                }
                Err(e) => {
                    self.state.borrow_mut().failed = Some(e.to_string());
                    wait = (wait * 2).min(WRITE_RETRY_MAX);
                }
            }
        }
    }

    /// Undo what a failed write left (bytes past the durable end, a half-made next segment),
    /// then check the disk has [`WRITE_PROBE_BYTES`] of room by allocating them and giving
    /// them back. A few metadata calls, once per retry wait: blocking them on the core is
    /// cheaper than a round trip through the ring.
    fn probe(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let (base, durable) = {
            let st = self.state.borrow();
            (*st.segments.last().expect("an inbox has a segment"), st.durable)
        };
        if durable > base {
            match std::fs::remove_file(segment_path(&self.dir, durable)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let f = File::options().write(true).open(segment_path(&self.dir, base))?;
        let end = 8 + durable - base;
        f.set_len(end)?;
        // SAFETY: fallocate(2) on a file descriptor this function owns, with a valid range.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, end as i64, WRITE_PROBE_BYTES as i64) };
        let room = if r == 0 {
            Ok(())
        } else {
            match std::io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()), // no fallocate: the next write tells
                e => Err(e),
            }
        };
        f.set_len(end)?;
        room?;
        f.sync_all()
    }

    /// Write `batch` at position `start` of the active segment (rolling to a new segment based
    /// at `start` first if the active one is full), then fsync.
    async fn write(&self, batch: Vec<u8>, start: u64) -> glommio::Result<(), ()> {
        let (mut base, mut file) = {
            let st = self.state.borrow();
            (*st.segments.last().expect("an inbox has a segment"), st.file.clone())
        };
        if start > base && 8 + start - base >= self.limits.segment_bytes {
            let path = segment_path(&self.dir, start);
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .buffered_open(&path)
                .await?;
            f.write_at(SEGMENT_MAGIC.to_vec(), 0).await?;
            f.fdatasync().await?;
            Directory::open(&self.dir).await?.sync().await?;
            let mut st = self.state.borrow_mut();
            st.segments.push(start);
            base = start;
            file = None;
        }
        let file = match file {
            Some(f) => f,
            None => {
                let path = segment_path(&self.dir, base);
                let f = Rc::new(OpenOptions::new().write(true).buffered_open(&path).await?);
                self.state.borrow_mut().file = Some(f.clone());
                f
            }
        };
        let len = batch.len();
        // The kernel owns the buffer while it writes, so it goes by value. A short write only
        // happens when the disk is full: it fails the commit like any other write error.
        let n = file.write_at(batch, 8 + start - base).await?;
        if n != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("short write: {n} of {len} bytes (is the disk full?)"),
            )
            .into());
        }
        file.fdatasync().await
    }

    /// Delete the segments whose records all come before `position` (never the active one).
    pub fn release_before(&self, position: u64) -> std::io::Result<()> {
        let mut st = self.state.borrow_mut();
        while st.segments.len() > 1 && st.segments[1] <= position {
            let base = st.segments.remove(0);
            let path = segment_path(&self.dir, base);
            std::fs::remove_file(&path)?;
            match std::fs::remove_file(salvage_path(&path)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Create an empty segment durably (file and directory entry).
fn create_segment(dir: &Path, base: u64) -> std::io::Result<()> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(segment_path(dir, base))?;
    f.write_all(SEGMENT_MAGIC)?;
    f.sync_all()?;
    sync_dir(dir)
}

/// Scan the last segment, cut a torn tail, refuse corruption past the checkpoint; returns the
/// inbox's end position.
fn recover_tail(path: &Path, base: u64, checkpoint: u64) -> Result<u64, String> {
    let err = |e: std::io::Error| format!("inbox segment {}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(err)?;
    let salvaged = salvaged_offsets(path)?;
    let delivered = (checkpoint + 8).saturating_sub(base);
    let scan = scan(&bytes, &salvaged, delivered).map_err(|e| format!("inbox segment {}: {e}", path.display()))?;
    match &scan.tail {
        Tail::Clean => {}
        Tail::Corrupt(why) => {
            return Err(format!(
                "inbox segment {}: corrupt at {why}; nothing was cut. Acknowledged records may be \
                 in it: see `sluicegate inbox check` and `sluicegate inbox salvage`",
                path.display()
            ))
        }
        Tail::Torn(why) => {
            tracing::warn!(inbox = %path.display(), tail = %why, "cut a torn tail (never acknowledged)");
            let f = File::options().write(true).open(path).map_err(err)?;
            if scan.end < 8 {
                f.set_len(0).map_err(err)?;
                f.write_all_at(SEGMENT_MAGIC, 0).map_err(err)?;
            } else {
                f.set_len(scan.end).map_err(err)?;
            }
            f.sync_all().map_err(err)?;
        }
    }
    Ok(base + scan.end.max(8) - 8)
}

/// Reads the inbox's durable frames in order, as a partition reader does.
pub struct InboxReader {
    inbox: Rc<Inbox>,
    /// The open segment: its base and file.
    file: Option<(u64, File)>,
    /// The current frame: its position, body and records (offset, length) in the body.
    frame_pos: u64,
    body: Vec<u8>,
    /// Each record: (offset in the body, which gives its position; payload start; length).
    spans: Vec<(u32, u32, u32)>,
    /// Next record of the current frame to emit.
    next: usize,
    /// Position of the frame after the current one.
    next_frame: u64,
    /// Records before this position were delivered already (the checkpoint).
    resume: u64,
    /// The current frame was salvaged: why its records are rejected.
    damaged: Option<String>,
}

impl InboxReader {
    pub fn new(inbox: Rc<Inbox>, resume: u64) -> InboxReader {
        let first = *inbox.state.borrow().segments.first().expect("an inbox has a segment");
        InboxReader {
            inbox,
            file: None,
            frame_pos: first,
            body: Vec::new(),
            spans: Vec::new(),
            next: 0,
            next_frame: first,
            resume,
            damaged: None,
        }
    }

    pub fn inbox(&self) -> &Rc<Inbox> {
        &self.inbox
    }

    /// Fill `batch` with up to `max_records` durable records.
    pub fn fetch(
        &mut self,
        batch: &mut FetchBatch,
        max_records: usize,
        err: &impl Fn(String) -> SourceError,
    ) -> Result<Fetch, SourceError> {
        batch.clear();
        loop {
            while self.next < self.spans.len() && batch.records.len() < max_records && !batch.is_full() {
                let (off, start, len) = self.spans[self.next];
                self.next += 1;
                let pos = self.frame_pos + FRAME_HEADER_BYTES + off as u64;
                if pos >= self.resume {
                    let damaged = self
                        .damaged
                        .as_ref()
                        .map(|m| Reject::new(Stage::Fetch, Rule::Framing, m.clone()));
                    batch.push(&self.body[start as usize..(start + len) as usize], pos, damaged);
                }
            }
            if batch.records.len() >= max_records || batch.is_full() {
                break;
            }
            if self.next_frame >= self.inbox.state.borrow().durable {
                break;
            }
            self.load(self.next_frame).map_err(err)?;
        }
        batch.next_position = match self.spans.get(self.next) {
            Some(&(off, _, _)) => self.frame_pos + FRAME_HEADER_BYTES + off as u64,
            None => self.next_frame,
        };
        self.inbox.state.borrow_mut().read = batch.next_position.max(self.resume);
        Ok(if batch.records.is_empty() {
            Fetch::Idle(READ_IDLE_POLL)
        } else {
            Fetch::Records
        })
    }

    /// Load the frame at `pos` (durable, so whole), skipping the read of a body wholly before
    /// the resume position.
    fn load(&mut self, pos: u64) -> Result<(), String> {
        let base = {
            let st = self.inbox.state.borrow();
            let i = st.segments.partition_point(|&b| b <= pos);
            st.segments[i
                .checked_sub(1)
                .ok_or_else(|| format!("position {pos} is before the inbox's first segment"))?]
        };
        if self.file.as_ref().map(|(b, _)| *b) != Some(base) {
            let path = segment_path(&self.inbox.dir, base);
            let f = File::open(&path).map_err(|e| format!("inbox segment {}: {e}", path.display()))?;
            self.file = Some((base, f));
        }
        let (_, f) = self.file.as_ref().expect("opened above");
        let off = 8 + pos - base;
        let path = || segment_path(&self.inbox.dir, base).display().to_string();
        let mut h = [0u8; 8];
        f.read_exact_at(&mut h, off)
            .map_err(|e| format!("inbox segment {} at byte {off}: {e}", path()))?;
        let n = u32::from_le_bytes(h[..4].try_into().unwrap()) as u64;
        let end = pos + FRAME_HEADER_BYTES + n;
        self.frame_pos = pos;
        self.next_frame = end;
        self.spans.clear();
        self.next = 0;
        if end <= self.resume {
            return Ok(());
        }
        self.body.resize(n as usize, 0);
        f.read_exact_at(&mut self.body, off + FRAME_HEADER_BYTES)
            .map_err(|e| format!("inbox segment {} at byte {off}: {e}", path()))?;
        self.damaged = None;
        if crc32c::crc32c(&self.body) != u32::from_le_bytes(h[4..].try_into().unwrap()) {
            if !salvaged_offsets(&segment_path(&self.inbox.dir, base))?.contains(&off) {
                return Err(format!(
                    "inbox segment {} at byte {off}: a whole frame fails its CRC (the disk changed it); \
                     nothing was skipped: see `sluicegate inbox check` and `sluicegate inbox salvage`",
                    path()
                ));
            }
            // Salvaged: the body goes to the quarantine as it is, in records of at most
            // RECORD_BYTES_MAX bytes.
            self.damaged = Some(format!(
                "inbox frame at byte {off} of segment {} failed its CRC and was salvaged: its bytes are quarantined as they are",
                path()
            ));
            for start in (0..self.body.len()).step_by(RECORD_BYTES_MAX) {
                let len = (self.body.len() - start).min(RECORD_BYTES_MAX);
                self.spans.push((start as u32, start as u32, len as u32));
            }
            return Ok(());
        }
        let (spans, at) = (&mut self.spans, self.body.as_ptr() as usize);
        records(&self.body, usize::MAX, |o, r| {
            spans.push((o as u32, (r.as_ptr() as usize - at) as u32, r.len() as u32))
        })
        .map_err(|r| format!("inbox segment {} at byte {off}: {}", path(), r.reason))?;
        Ok(())
    }
}
