//! The file target: each request becomes one file in a directory — NDJSON lines, or `SGF1`
//! envelopes — written to a temporary name, fsynced and renamed, so a reader never sees half
//! a file. The request's latency is the time to durable file. This is how to make input for
//! the `file` source (and for `benches/e2e.sh`-style runs) at a controlled rate; the `file`
//! source reads the files present when it starts, so no end-to-end latency is measured here.
//!
//! Bounds: one file being written per lane.

use crate::events::{BodyFormat, Counts, Events};
use crate::lane::Client;
use crate::profile::Slot;
use crate::record::Answer;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

pub struct FileClient {
    pub events: Arc<Events>,
    pub dir: PathBuf,
    /// Distinguishes this run's files from another's in the same directory.
    pub run: String,
    pub first_error: Option<String>,
    plain: String,
}

impl FileClient {
    pub fn new(events: Arc<Events>, dir: PathBuf, run: &str) -> FileClient {
        FileClient {
            events,
            dir,
            run: run.to_string(),
            first_error: None,
            plain: String::new(),
        }
    }

    fn write(&self, seq: u64, body: &[u8]) -> std::io::Result<()> {
        let ext = match self.events.format() {
            BodyFormat::Ndjson => "ndjson",
            BodyFormat::Framed => "sgf",
        };
        let name = format!("loadgen-{}-{seq:012}.{ext}", self.run);
        // A leading `.` keeps the half-written file out of the file source's walk.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_data()?;
        std::fs::rename(&tmp, self.dir.join(&name))
    }
}

impl Client for FileClient {
    type Request = (u64, Vec<u8>, Counts);

    fn first_error(&self) -> Option<String> {
        self.first_error.clone()
    }

    fn prepare(&mut self, slot: Slot) -> Self::Request {
        let mut body = Vec::new();
        let counts = self.events.body(slot, &mut self.plain, &mut body);
        (slot.seq, body, counts)
    }

    fn send(&mut self, (seq, body, counts): Self::Request) -> impl Future<Output = Answer> + Send {
        // A blocking write: the lane's thread is the writer (one file in flight per lane).
        let answer = match self.write(seq, &body) {
            Ok(()) => Answer {
                accepted: counts.records,
                accepted_good: counts.good,
                ..Answer::default()
            },
            Err(e) => {
                self.first_error
                    .get_or_insert_with(|| format!("{}: {e}", self.dir.display()));
                Answer {
                    refused: counts.records,
                    error: true,
                    ..Answer::default()
                }
            }
        };
        std::future::ready(answer)
    }
}
