//! The `http` source: the edge receiver. Clients POST NDJSON or `SGF1`-framed records; each
//! request is answered 200 only once its records are durable on this machine.
//!
//! Shape: every core runs a listener on the same address (SO_REUSEPORT) and owns one
//! partition, its **inbox** (`inbox.rs`): a write-ahead log of accepted bodies under
//! `<state.dir>/inbox/<source>/inbox-<n>/`. A request's body is framed, appended, fsynced with
//! whatever else arrived meanwhile (group commit), and only then answered 200. The core reads
//! its inbox back as an ordinary partition, by position, so everything after the 200 —
//! decrypt, parse, validate, quarantine, the lake, checkpoints, exactly-once — is the same
//! machinery as for a file or a stream; the inbox deletes a segment once every record in it is
//! checkpointed.
//!
//! Why an inbox and not the processed-record spill: the 200 must not wait for parsing, and
//! a body must be all-or-nothing; the raw body is what the RAW zone keeps anyway, and a bad
//! record in it still reaches the quarantine with its reason, which a client-side 400 could
//! not give per record. Framing errors (which would lose the records after them) are the one
//! kind of bad input refused with 400 before anything is accepted.
//!
//! Partitions: `inbox-0 … inbox-<cores-1>` (placement gives each core exactly one, since the
//! ordinals are consecutive), plus any older inbox left by a run with more cores, which is
//! read to its end with no listener.
//!
//! Exactly-once holds from the 200 on: every acknowledged record is delivered once. A client
//! that never saw its 200 (a timeout, a crash before the answer) sends again and may deliver a
//! request twice; that is the usual at-least-once of HTTP ingestion (Firehose's HTTP endpoint
//! and Vector's `http_server` are the same).

pub mod body;
mod connections;
pub mod inbox;
mod server;
#[cfg(test)]
mod tests;

use crate::bearer::Token;
use crate::clock::Clock;
use crate::config::HttpConfig;
use crate::lineage::Resume;
use crate::source::{Fetch, FetchBatch, PartitionInfo, PartitionReader, ReaderStats, Source, SourceError};
use connections::Deadlines;
use inbox::{Inbox, InboxLimits, InboxReader};
pub use server::HEADER_BUFFER_BYTES;
use server::{Listening, ReceiverSettings};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

const PARTITION_PREFIX: &str = "inbox-";

pub struct HttpSource {
    name: String,
    /// `<state.dir>/inbox/<source>`.
    dir: PathBuf,
    cores: usize,
    settings: ReceiverSettings,
    limits: InboxLimits,
}

impl HttpSource {
    /// Check the address is free and the token is set; `cores` is how many cores will listen.
    pub fn try_new(name: &str, cfg: &HttpConfig, state_dir: &Path, cores: usize) -> Result<HttpSource, SourceError> {
        let err = |message: String| SourceError {
            source_name: name.into(),
            partition: "-".into(),
            message,
        };
        let token = match &cfg.token_env {
            Some(var) => Some(Token::from_env(var, "http.token_env").map_err(err)?),
            None => None,
        };
        let listen: std::net::SocketAddr = cfg
            .listen
            .parse()
            .map_err(|e| err(format!("listen {:?}: {e}", cfg.listen)))?;
        if let Some(w) = exposure_warning(listen, token.is_some()) {
            tracing::warn!(source = %name, warning = %w, "http receiver");
        }
        let mut source = HttpSource::with_token(name, cfg, listen, state_dir, cores, token);
        if let Some(t) = &cfg.tls {
            source.settings.tls = Some(crate::tls::Certificate::load(t).map_err(|e| err(format!("http.{e}")))?);
        }
        Ok(source)
    }

    /// The source with its token already read (`try_new` reads it from the environment).
    fn with_token(
        name: &str,
        cfg: &HttpConfig,
        listen: std::net::SocketAddr,
        state_dir: &Path,
        cores: usize,
        token: Option<Token>,
    ) -> HttpSource {
        HttpSource {
            name: name.into(),
            dir: state_dir.join("inbox").join(name),
            cores,
            settings: ReceiverSettings {
                listen,
                token,
                body_bytes_max: cfg.body_bytes_max as usize,
                body_memory_bytes_max: cfg.body_memory_bytes_max as usize,
                records_max: cfg.records_max as usize,
                connections_max: cfg.connections_max,
                deadlines: Deadlines {
                    idle: Duration::from_millis(cfg.idle_timeout_ms),
                    header: Duration::from_millis(cfg.header_timeout_ms),
                    request: Duration::from_millis(cfg.request_timeout_ms),
                },
                tls: None,
                retry_after_s: cfg.retry_after_s,
            },
            limits: InboxLimits {
                segment_bytes: cfg.segment_bytes,
                inbox_bytes_max: cfg.inbox_bytes_max,
            },
        }
    }
}

/// What a receiver listening beyond loopback without a token must be warned of: anyone who
/// can reach the address can write records into the lake.
pub fn exposure_warning(listen: std::net::SocketAddr, token: bool) -> Option<String> {
    (!token && !listen.ip().is_loopback()).then(|| {
        format!(
            "listening on {listen} without a token (token_env): anyone who can reach it can write records into the lake"
        )
    })
}

impl Source for HttpSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// Fail at the start, not on each core, when another program holds the address (or it
    /// cannot be bound at all). The check binds as the cores will, with SO_REUSEPORT, so the
    /// sockets of a killed run still closing do not stop a restart; a second sluicegate on the
    /// same state is stopped by the state lock instead.
    fn preflight(&self) -> Result<(), SourceError> {
        let listen = self.settings.listen;
        let bind = || -> std::io::Result<()> {
            let s = socket2::Socket::new(socket2::Domain::for_address(listen), socket2::Type::STREAM, None)?;
            s.set_reuse_port(true)?;
            s.bind(&listen.into())
        };
        bind().map_err(|e| SourceError {
            source_name: self.name.clone(),
            partition: "-".into(),
            message: format!("cannot listen on {listen}: {e}"),
        })
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        let mut ordinals: Vec<u64> = (0..self.cores as u64).collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                if let Some(n) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(PARTITION_PREFIX)?.parse().ok())
                {
                    if n >= self.cores as u64 {
                        ordinals.push(n);
                    }
                }
            }
        }
        ordinals.sort_unstable();
        Ok(ordinals
            .into_iter()
            .map(|ordinal| PartitionInfo {
                id: format!("{PARTITION_PREFIX}{ordinal}"),
                ordinal,
            })
            .collect())
    }

    fn open(
        &self,
        partition: &PartitionInfo,
        resume: Option<&Resume>,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let err = |message: String| SourceError {
            source_name: self.name.clone(),
            partition: partition.id.clone(),
            message,
        };
        let position = resume.map_or(0, |r| r.position);
        let inbox = Rc::new(Inbox::open(&self.dir.join(&partition.id), self.limits.clone(), position).map_err(err)?);
        let listening = if partition.ordinal < self.cores as u64 {
            let l = server::start(self.settings.clone(), inbox.clone())
                .map_err(|e| err(format!("cannot listen on {}: {e}", self.settings.listen)))?;
            Some(l)
        } else {
            inbox.close(); // an old inbox: read to its end, never appended to
            None
        };
        Ok(Box::new(HttpReader {
            reader: InboxReader::new(inbox, position),
            listening,
            source: self.name.clone(),
            partition: partition.id.clone(),
        }))
    }
}

struct HttpReader {
    reader: InboxReader,
    /// This core's listener (none for an inbox left by a run with more cores).
    listening: Option<Listening>,
    source: String,
    partition: String,
}

impl PartitionReader for HttpReader {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, _clock: &dyn Clock) -> Result<Fetch, SourceError> {
        let err = |message: String| SourceError {
            source_name: self.source.clone(),
            partition: self.partition.clone(),
            message,
        };
        let fetched = self.reader.fetch(batch, max_records, &err)?;
        if !matches!(fetched, Fetch::Idle(_)) {
            return Ok(fetched);
        }
        // Without a listener (an old inbox, or after `finish`), done once all of it is read.
        if self.listening.is_none() && self.reader.inbox().settled() {
            return Ok(Fetch::End);
        }
        Ok(fetched)
    }

    fn unable(&self) -> Option<String> {
        let e = self.reader.inbox().failure()?;
        Some(format!(
            "{} {}: the inbox cannot be written ({e}); requests are answered 503 until a probe finds room",
            self.source, self.partition
        ))
    }

    /// Stop listening; the requests already taken still commit, and are read to the end.
    fn finish(&mut self) -> bool {
        self.listening = None;
        self.reader.inbox().close();
        true
    }

    fn take_stats(&mut self) -> ReaderStats {
        let c = self.listening.as_ref().map(|l| l.take_counts()).unwrap_or_default();
        ReaderStats {
            requests_accepted: c.accepted,
            requests_refused: c.refused,
            ..ReaderStats::default()
        }
    }

    fn wants_checkpoints(&self) -> bool {
        true
    }

    fn checkpointed(&mut self, position: u64) {
        if let Err(e) = self.reader.inbox().release_before(position) {
            tracing::warn!(source = %self.source, partition = %self.partition, error = %e, "deleting an inbox segment failed");
        }
    }
}
