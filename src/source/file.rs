//! The `file` source: NDJSON files, `SGF1` framed files, and RAW segments (LZ4 + `SGF1`).
//!
//! Partitions: each path is a file or a directory walked recursively in name order (entries
//! starting with `.` or `_` are skipped, as Hadoop does). An NDJSON file larger than
//! `split_bytes` becomes several splits, so one big file keeps every core busy; a split owns
//! the lines that *start* inside its byte range. A framed (`SGF1`) file larger than
//! `split_bytes` is split at frame boundaries found by one sequential scan of the length
//! prefixes at startup. LZ4 segments (RAW) are compressed streams and one partition each.
//!
//! Positions are byte offsets of a record's first byte: in the file for NDJSON and plain
//! `SGF1`, in the decompressed stream for LZ4 segments. `next_position` is the offset after
//! the batch, so a restart seeks straight there (an LZ4 segment is decompressed up to it).
//!
//! Blank lines are not records and are skipped. Reads are buffered blocking reads
//! ([`READ_BUFFER_BYTES`]); they come from the page cache at memory speed, and the core that owns
//! the partition is the only reader.

use super::framing::{Frame, FrameReader, LZ4_MAGIC, MAGIC};
use super::{Fetch, FetchBatch, PartitionInfo, PartitionReader, Source, SourceError};
use crate::clock::Clock;
use crate::config::{FileConfig, Framing};
use crate::extract::{Reject, Rule, Stage, RECORD_BYTES_MAX};
use crate::lineage::Resume;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Read-ahead per open partition: large sequential reads, bounded memory per partition.
pub const READ_BUFFER_BYTES: usize = 1 << 20;
/// Files found under the configured paths; more is a mistake in `paths`, not a workload.
pub const FILES_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Framed,
    Lz4Framed,
}

#[derive(Debug, Clone)]
struct Split {
    path: PathBuf,
    format: Format,
    start: u64,
    end: u64,
}

#[derive(Debug)]
pub struct FileSource {
    name: String,
    splits: Vec<Split>,
}

impl FileSource {
    /// Find the files and plan the splits (errors here stop the start, naming the path).
    pub fn try_new(name: &str, cfg: &FileConfig) -> Result<FileSource, SourceError> {
        let err = |path: &Path, message: String| SourceError {
            source_name: name.into(),
            partition: path.display().to_string(),
            message,
        };
        let mut files = Vec::new();
        for p in &cfg.paths {
            collect(p, &mut files).map_err(|e| err(p, format!("cannot list: {e}")))?;
            if files.len() > FILES_MAX {
                return Err(err(p, format!("more than {FILES_MAX} files")));
            }
        }
        if files.is_empty() {
            return Err(err(
                cfg.paths.first().map_or(Path::new(""), |p| p.as_path()),
                "no files found under the configured paths".into(),
            ));
        }
        let mut splits = Vec::new();
        for path in files {
            let len = std::fs::metadata(&path)
                .map_err(|e| err(&path, format!("cannot stat: {e}")))?
                .len();
            let format = detect(&path, cfg.framing).map_err(|m| err(&path, m))?;
            let starts = match format {
                Format::Ndjson if len > cfg.split_bytes => (0..len).step_by(cfg.split_bytes as usize).collect(),
                Format::Framed if len > cfg.split_bytes => frame_split_starts(&path, cfg.split_bytes)
                    .map_err(|e| err(&path, format!("cannot scan frames: {e}")))?,
                _ => vec![0],
            };
            for (i, &start) in starts.iter().enumerate() {
                splits.push(Split {
                    path: path.clone(),
                    format,
                    start,
                    end: starts.get(i + 1).copied().unwrap_or(u64::MAX),
                });
            }
        }
        Ok(FileSource {
            name: name.into(),
            splits,
        })
    }
}

/// Frame boundaries of an `SGF1` file about every `split_bytes`: the starts of its splits.
/// A frame boundary cannot be found from an arbitrary offset, so this follows the length
/// prefixes from the start: one sequential pass over the file at startup, skipping payloads
/// inside the read buffer. A corrupt length ends the scan (the last split reports it).
fn frame_split_starts(path: &Path, split_bytes: u64) -> io::Result<Vec<u64>> {
    let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, File::open(path)?);
    let mut pos = skip_magic(&mut r)?;
    let mut starts = vec![0];
    let mut next = split_bytes;
    let mut len = [0u8; 4];
    loop {
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if pos >= next {
            starts.push(pos);
            next = pos + split_bytes;
        }
        let n = u32::from_le_bytes(len) as u64;
        if n > RECORD_BYTES_MAX as u64 {
            break;
        }
        r.seek_relative(n as i64)?;
        pos += 4 + n;
    }
    Ok(starts)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for e in entries {
        let hidden = e
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
        if !hidden && out.len() <= FILES_MAX {
            collect(&e, out)?;
        }
    }
    Ok(())
}

fn detect(path: &Path, framing: Framing) -> Result<Format, String> {
    let mut head = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("cannot read: {e}"))?;
    let found = match &head[..n] {
        h if h == LZ4_MAGIC => Some(Format::Lz4Framed),
        h if h == MAGIC => Some(Format::Framed),
        _ => None,
    };
    match (framing, found) {
        (Framing::Auto, Some(f)) => Ok(f),
        (Framing::Auto | Framing::Ndjson, _) => Ok(Format::Ndjson),
        (Framing::Framed, Some(f)) => Ok(f),
        (Framing::Framed, None) => {
            Err("framing = \"framed\" but the file starts with neither SGF1 nor an LZ4 frame".into())
        }
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> Result<Vec<PartitionInfo>, SourceError> {
        Ok(self
            .splits
            .iter()
            .enumerate()
            .map(|(i, s)| PartitionInfo {
                // Always `path#start`: the id must not change when a growing file gains splits.
                id: format!("{}#{}", s.path.display(), s.start),
                ordinal: i as u64,
            })
            .collect())
    }

    fn open(
        &self,
        partition: &PartitionInfo,
        resume: Option<&Resume>,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let resume = resume.map(|r| r.position);
        let split = self.splits[partition.ordinal as usize].clone();
        let err = |e: io::Error| SourceError {
            source_name: self.name.clone(),
            partition: partition.id.clone(),
            message: format!("cannot open: {e}"),
        };
        let ctx = (self.name.clone(), partition.id.clone());
        let file = File::open(&split.path).map_err(err)?;
        Ok(match split.format {
            Format::Ndjson => Box::new(NdjsonReader::open(file, &split, resume, ctx).map_err(err)?),
            Format::Framed => {
                let mut r = BufReader::with_capacity(READ_BUFFER_BYTES, file);
                let offset = match resume {
                    Some(p) => r.seek(SeekFrom::Start(p)).map_err(err)?,
                    None if split.start == 0 => skip_magic(&mut r).map_err(err)?,
                    None => r.seek(SeekFrom::Start(split.start)).map_err(err)?,
                };
                Box::new(FramedReader {
                    frames: FrameReader::new(r, offset),
                    end: split.end,
                    ctx,
                    done: false,
                })
            }
            Format::Lz4Framed => {
                let mut r = lz4_flex::frame::FrameDecoder::new(BufReader::with_capacity(READ_BUFFER_BYTES, file));
                let mut offset = skip_magic(&mut r).map_err(err)?;
                if let Some(p) = resume {
                    let skipped =
                        io::copy(&mut (&mut r).take(p.saturating_sub(offset)), &mut io::sink()).map_err(err)?;
                    offset += skipped;
                }
                Box::new(FramedReader {
                    frames: FrameReader::new(r, offset),
                    end: u64::MAX,
                    ctx,
                    done: false,
                })
            }
        })
    }
}

fn skip_magic<R: Read>(r: &mut R) -> io::Result<u64> {
    if FrameReader::read_magic(r)? {
        Ok(MAGIC.len() as u64)
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, "missing SGF1 magic"))
    }
}

struct NdjsonReader {
    reader: BufReader<File>,
    /// Offset of the next line's first byte.
    pos: u64,
    end: u64,
    ctx: (String, String),
}

impl NdjsonReader {
    fn open(file: File, split: &Split, resume: Option<u64>, ctx: (String, String)) -> io::Result<NdjsonReader> {
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let pos = match resume {
            Some(p) => reader.seek(SeekFrom::Start(p))?,
            None if split.start == 0 => 0,
            None => {
                // The line that contains `start - 1` belongs to the previous split.
                reader.seek(SeekFrom::Start(split.start - 1))?;
                split.start - 1 + reader.skip_until(b'\n')? as u64
            }
        };
        Ok(NdjsonReader {
            reader,
            pos,
            end: split.end,
            ctx,
        })
    }
}

impl PartitionReader for NdjsonReader {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, _clock: &dyn Clock) -> Result<Fetch, SourceError> {
        batch.clear();
        let ctx = &self.ctx;
        let io_err = |pos: u64| {
            move |e: io::Error| SourceError {
                source_name: ctx.0.clone(),
                partition: ctx.1.clone(),
                message: format!("read failed at offset {pos}: {e}"),
            }
        };
        while batch.records.len() < max_records && !batch.is_full() {
            if self.pos >= self.end {
                batch.next_position = self.pos;
                return Ok(Fetch::End);
            }
            let start = batch.data.len();
            let line_pos = self.pos;
            let n = (&mut self.reader)
                .take(RECORD_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut batch.data)
                .map_err(io_err(line_pos))?;
            if n == 0 {
                batch.next_position = self.pos;
                return Ok(Fetch::End);
            }
            self.pos += n as u64;
            let mut reject = None;
            if batch.data.last() == Some(&b'\n') {
                batch.data.pop();
                if batch.data.last() == Some(&b'\r') {
                    batch.data.pop();
                }
            } else if n > RECORD_BYTES_MAX {
                let rest = self.reader.skip_until(b'\n').map_err(io_err(line_pos))?;
                self.pos += rest as u64;
                batch.data.truncate(start + RECORD_BYTES_MAX);
                reject = Some(Box::new(Reject::new(
                    Stage::Fetch,
                    Rule::Framing,
                    format!(
                        "line is {} bytes or more, longer than the {RECORD_BYTES_MAX}-byte record limit (first {RECORD_BYTES_MAX} kept)",
                        n + rest
                    ),
                )));
            }
            if reject.is_none() && batch.data[start..].iter().all(u8::is_ascii_whitespace) {
                batch.data.truncate(start);
                continue;
            }
            batch.records.push(super::RecordSpan {
                start: start as u32,
                len: (batch.data.len() - start) as u32,
                position: line_pos,
                reject,
            });
        }
        batch.next_position = self.pos;
        Ok(Fetch::Records)
    }
}

struct FramedReader<R> {
    frames: FrameReader<R>,
    /// Offset where the next split begins: frames starting there are not ours.
    end: u64,
    ctx: (String, String),
    done: bool,
}

impl<R: Read> PartitionReader for FramedReader<R> {
    fn fetch(&mut self, batch: &mut FetchBatch, max_records: usize, _clock: &dyn Clock) -> Result<Fetch, SourceError> {
        batch.clear();
        if self.done {
            batch.next_position = self.frames.offset;
            return Ok(Fetch::End);
        }
        while batch.records.len() < max_records && !batch.is_full() {
            if self.frames.offset >= self.end {
                self.done = true;
                break;
            }
            let start = batch.data.len();
            let position = self.frames.offset;
            let frame = self.frames.next(&mut batch.data).map_err(|e| SourceError {
                source_name: self.ctx.0.clone(),
                partition: self.ctx.1.clone(),
                message: format!("read failed at offset {position}: {e}"),
            })?;
            match frame {
                Frame::Payload(n) => batch.records.push(super::RecordSpan {
                    start: start as u32,
                    len: n as u32,
                    position,
                    reject: None,
                }),
                Frame::End => {
                    self.done = true;
                    break;
                }
                Frame::Corrupt(message) => {
                    // Nothing after a corrupt frame can be located: quarantine the fact, and
                    // resume nowhere (a restart must not quarantine it again).
                    batch.push(&[], position, Some(Reject::new(Stage::Fetch, Rule::Framing, message)));
                    self.done = true;
                    batch.next_position = u64::MAX;
                    return Ok(Fetch::End);
                }
            }
        }
        batch.next_position = self.frames.offset;
        Ok(if self.done { Fetch::End } else { Fetch::Records })
    }
}

#[cfg(test)]
mod tests;
