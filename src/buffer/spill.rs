//! Spill files: ring segments on local disk, written and read with glommio's DMA file API.
//!
//! Owns: one directory per core (`<buffer.spill_dir>/core-<k>/`), the files in it, and the
//! byte count the spill budget (`buffer.spill_bytes_max`) is enforced with.
//!
//! File format (`<run id>-<segment id, 16 hex digits>.sgsp`), all integers little endian:
//!
//! ```text
//! offset 0    8 bytes  magic "SGSPILL2" (the last byte is the format version: 2 since rkyv
//!                       archives unaligned primitives, a denser row than version 1)
//! offset 8    u32      header length H (a multiple of 4096, the DMA alignment)
//! offset 12   u32      JSON length J
//! offset 16   J bytes  JSON: {"run_id", "core", "segment", "used", "created_us",
//!                      "slots": [[source, partition id], …], "tables": [name, …]}
//!             zero padding to H
//! offset H    `used` bytes of record frames (format in `buffer::row`: 16-byte header with
//!             length and CRC32C, the rkyv archive, padding), zero padding to 4096
//! ```
//!
//! A frame's `slot` and `table` index the header's lists, so recovery knows each record's
//! source partition (to compare with its checkpoint) and table without the run that wrote it.
//!
//! Durability: a file is written once (one DMA write), `fdatasync`ed, and its directory synced,
//! before the ring counts the segment as spilled and releases the segment's batch holds. A crash
//! mid-write leaves a file whose tail fails its frame checks; recovery cuts it there
//! (`recover.rs`).
//!
//! Parked files (`<core dir>/parked/<run id>-<park id, 16 hex digits>.part`): finished lake files
//! (RAW, quarantine, audit, ETL) that the core's outbox holds while the store is slow or down
//! (`runtime::outbox`), exactly their bytes and zero padding to 4096. They are *not* durable, on
//! purpose: a parked file's batches are still held, so no checkpoint has passed its records and
//! a run that dies replays them; the next start deletes what is left (see [`SpillDir::new`]).
//! So they are neither fsynced nor recovered. The CRC32C of each parked file's bytes stays in
//! memory and is checked when it is read back: a disk that changed it stops the run (its
//! records are still held, so the next start replays them) rather than sending a changed file.
//!
//! Bounds: at most `buffer.spill_bytes_max` bytes of spill and parked files together per core.

use glommio::io::{DmaFile, ReadResult};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"SGSPILL2";

/// Whether `bytes` open a spill file of another format version (`Some(version byte)`): such a
/// file is whole but unreadable by this build, and must never be taken for a torn one.
pub fn other_version(bytes: &[u8]) -> Option<u8> {
    (bytes.len() >= 8 && bytes[..7] == MAGIC[..7] && bytes[7] != MAGIC[7]).then(|| bytes[7])
}
/// DMA alignment of offsets and lengths.
pub const ALIGN: usize = 4096;
/// File name extension.
pub const EXTENSION: &str = "sgsp";
/// Subdirectory of a core's directory holding parked files.
pub const PARKED_DIR: &str = "parked";

/// What a spill file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpillHeader {
    pub run_id: String,
    pub core: usize,
    pub segment: u64,
    /// Bytes of record frames after the header.
    pub used: u64,
    pub created_us: i64,
    /// Source name and partition id by slot.
    pub slots: Vec<(String, String)>,
    /// Table names by index.
    pub tables: Vec<String>,
}

impl SpillHeader {
    /// The header block: magic, lengths, JSON, zero padding to a multiple of [`ALIGN`].
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a header serialises");
        let len = (16 + json.len()).next_multiple_of(ALIGN);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.resize(len, 0);
        out
    }

    /// Parse the header at the start of a file; returns it and the header length.
    pub fn decode(bytes: &[u8]) -> Result<(SpillHeader, usize), String> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err("not a spill file (bad magic)".into());
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let json = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if 16 + json > len || len > bytes.len() {
            return Err(format!(
                "header of {len} bytes (JSON {json}) runs past the file ({})",
                bytes.len()
            ));
        }
        let h: SpillHeader = serde_json::from_slice(&bytes[16..16 + json]).map_err(|e| format!("header JSON: {e}"))?;
        Ok((h, len))
    }
}

/// Length of a spill file with a `head`-byte header and `used` bytes of records.
pub fn file_len(head: usize, used: usize) -> usize {
    head + used.next_multiple_of(ALIGN)
}

/// Lay a spill file out in `out` (exactly [`file_len`] bytes): header, records, zero padding.
pub fn lay_out(head: &[u8], records: &[u8], out: &mut [u8]) {
    out[..head.len()].copy_from_slice(head);
    out[head.len()..head.len() + records.len()].copy_from_slice(records);
    out[head.len() + records.len()..].fill(0);
}

/// The spill directory of one core. Methods take `&self` so a core's tasks can share it across
/// awaits; its bookkeeping uses short-lived cells.
pub struct SpillDir {
    dir: PathBuf,
    run_id: String,
    bytes_max: u64,
    bytes: Cell<u64>,
    /// Segment → (header length, file length).
    files: RefCell<HashMap<u64, (usize, u64)>>,
    writes: Cell<u64>,
    reads: Cell<u64>,
    /// Id of the next parked file.
    next_park: Cell<u64>,
    /// CRC32C of each parked file's bytes, by id.
    parked_crcs: RefCell<HashMap<u64, u32>>,
}

impl SpillDir {
    /// The directory of `core` under `root` (created), with its parked files directory emptied:
    /// parked files of a run that died are owed to nobody (see the module comment).
    pub fn new(root: &Path, core: usize, run_id: &str, bytes_max: u64) -> io::Result<SpillDir> {
        let dir = root.join(format!("core-{core}"));
        let parked = dir.join(PARKED_DIR);
        match std::fs::remove_dir_all(&parked) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&parked)?;
        Ok(SpillDir {
            dir,
            run_id: run_id.to_string(),
            bytes_max,
            bytes: Cell::new(0),
            files: RefCell::new(HashMap::new()),
            writes: Cell::new(0),
            reads: Cell::new(0),
            next_park: Cell::new(0),
            parked_crcs: RefCell::new(HashMap::new()),
        })
    }

    pub fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{}-{segment:016x}.{EXTENSION}", self.run_id))
    }

    fn parked_path(&self, id: u64) -> PathBuf {
        self.dir
            .join(PARKED_DIR)
            .join(format!("{}-{id:016x}.part", self.run_id))
    }

    /// Bytes of spill and parked files on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// (files written, files read back) so far.
    pub fn io_counts(&self) -> (u64, u64) {
        (self.writes.get(), self.reads.get())
    }

    /// Whether a segment of `used` bytes fits under the budget.
    pub fn has_room(&self, used: usize) -> bool {
        self.bytes.get() + (used.next_multiple_of(ALIGN) + ALIGN) as u64 <= self.bytes_max
    }

    /// Write one segment (header + `records`) durably: one DMA write, fdatasync, directory sync.
    /// `records` is copied once, into the DMA buffer.
    pub async fn write(&self, header: &SpillHeader, records: &[u8]) -> io::Result<()> {
        let head = header.encode();
        let total = file_len(head.len(), records.len());
        let file = create_written(&self.path(header.segment), total, |out| lay_out(&head, records, out)).await?;
        file.fdatasync().await.map_err(gerr)?;
        file.close().await.map_err(gerr)?;
        let dir = glommio::io::Directory::open(&self.dir).await.map_err(gerr)?;
        dir.sync().await.map_err(gerr)?;
        dir.close().await.map_err(gerr)?;
        self.files
            .borrow_mut()
            .insert(header.segment, (head.len(), total as u64));
        self.bytes.set(self.bytes.get() + total as u64);
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }

    /// Read back bytes `from..to` of a segment's records (widened to the DMA alignment; returns
    /// the window's start): one DMA read into an aligned buffer that the ring reads in place
    /// (no copy). Reading only the window a sealed buffer needs keeps many small buffers over
    /// one segment from reading the whole segment each.
    pub async fn read(&self, segment: u64, from: usize, to: usize) -> io::Result<(usize, ReadResult)> {
        let start = from / ALIGN * ALIGN;
        let len = to.next_multiple_of(ALIGN) - start;
        let (head, _) = *self
            .files
            .borrow()
            .get(&segment)
            .ok_or_else(|| io::Error::other(format!("segment {segment} was not spilled")))?;
        let file = DmaFile::open(&self.path(segment)).await.map_err(gerr)?;
        let rr = file.read_at_aligned((head + start) as u64, len).await.map_err(gerr)?;
        file.close().await.map_err(gerr)?;
        if rr.len() < to - start {
            return Err(io::Error::other(format!(
                "segment {segment}: read {} of {} bytes at {start}",
                rr.len(),
                to - start
            )));
        }
        self.reads.set(self.reads.get() + 1);
        Ok((start, rr))
    }

    /// Delete a segment's file (its records are durable in the lake).
    pub async fn remove(&self, segment: u64) -> io::Result<()> {
        let entry = self.files.borrow_mut().remove(&segment);
        if let Some((_, len)) = entry {
            glommio::io::remove(self.path(segment)).await.map_err(gerr)?;
            self.bytes.set(self.bytes.get() - len);
        }
        Ok(())
    }

    /// Whether a parked file of `len` bytes fits under the budget.
    pub fn has_room_to_park(&self, len: usize) -> bool {
        self.bytes.get() + parked_len(len) as u64 <= self.bytes_max
    }

    /// Park a finished lake file on disk (one DMA write, no sync: see the module comment);
    /// returns its id. The caller checked [`Self::has_room_to_park`].
    pub async fn park(&self, bytes: &[u8]) -> io::Result<u64> {
        let total = parked_len(bytes.len());
        let id = self.next_park.get();
        self.next_park.set(id + 1);
        let file = create_written(&self.parked_path(id), total, |out| {
            out[..bytes.len()].copy_from_slice(bytes);
            out[bytes.len()..].fill(0);
        })
        .await?;
        file.close().await.map_err(gerr)?;
        self.bytes.set(self.bytes.get() + total as u64);
        self.parked_crcs.borrow_mut().insert(id, crc32c::crc32c(bytes));
        Ok(id)
    }

    /// Read parked file `id` of `len` bytes back into memory and delete it.
    pub async fn unpark(&self, id: u64, len: usize) -> io::Result<Vec<u8>> {
        let total = parked_len(len);
        let path = self.parked_path(id);
        let file = DmaFile::open(&path).await.map_err(gerr)?;
        let rr = file.read_at_aligned(0, total).await.map_err(gerr)?;
        file.close().await.map_err(gerr)?;
        if rr.len() < len {
            return Err(io::Error::other(format!(
                "{}: read {} of {len} bytes",
                path.display(),
                rr.len()
            )));
        }
        let bytes = rr[..len].to_vec();
        let want = self.parked_crcs.borrow_mut().remove(&id);
        if want != Some(crc32c::crc32c(&bytes)) {
            return Err(io::Error::other(format!(
                "{}: the parked file's bytes fail their CRC32C (the disk changed them); it is left on disk",
                path.display()
            )));
        }
        glommio::io::remove(&path).await.map_err(gerr)?;
        self.bytes.set(self.bytes.get() - total as u64);
        Ok(bytes)
    }
}

/// Create `path` and write its `total` bytes, laid out by `fill` in a DMA buffer, with one DMA
/// write; returns the file, still open (not synced).
async fn create_written(path: &Path, total: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<DmaFile> {
    let file = DmaFile::create(path).await.map_err(gerr)?;
    let mut buf = file.alloc_dma_buffer(total);
    fill(buf.as_bytes_mut());
    let written = file.write_at(buf, 0).await.map_err(gerr)?;
    if written != total {
        return Err(io::Error::other(format!(
            "{}: short write {written} of {total}",
            path.display()
        )));
    }
    Ok(file)
}

/// Bytes a parked file of `len` bytes takes on disk (DMA alignment; never empty).
fn parked_len(len: usize) -> usize {
    len.next_multiple_of(ALIGN).max(ALIGN)
}

fn gerr<T>(e: glommio::GlommioError<T>) -> io::Error {
    io::Error::other(e.to_string())
}

/// Every spill file under `root`, sorted.
pub fn spill_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for d in dirs.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            out.extend(
                files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| p.extension().is_some_and(|e| e == EXTENSION)),
            );
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `test` on a glommio executor with a fresh directory on the real disk (DMA I/O needs
    /// one: not tmpfs).
    fn on_a_real_disk<F: std::future::Future<Output = ()>>(test: impl FnOnce(PathBuf) -> F) {
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let root = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("a glommio executor")
            .run(test(root));
    }

    fn header(segment: u64, used: usize) -> SpillHeader {
        SpillHeader {
            run_id: "r1".into(),
            core: 3,
            segment,
            used: used as u64,
            created_us: 7,
            slots: vec![("events".into(), "0".into())],
            tables: vec!["events".into()],
        }
    }

    #[test]
    fn headers_round_trip_and_foreign_files_are_refused() {
        let h = header(9, 100);
        let bytes = h.encode();
        assert_eq!(bytes.len() % ALIGN, 0);
        assert_eq!(SpillHeader::decode(&bytes).unwrap(), (h, ALIGN));
        assert!(SpillHeader::decode(b"PAR1....").unwrap_err().contains("magic"));
        assert!(SpillHeader::decode(&bytes[..100]).unwrap_err().contains("runs past"));
    }

    #[test]
    fn segments_are_written_read_back_and_removed_with_dma_io_on_a_real_disk() {
        on_a_real_disk(|root| async move {
            let spill = SpillDir::new(&root, 3, "r1", 3 * 1024 * 1024).unwrap();
            let records: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            assert!(spill.has_room(records.len()));
            spill.write(&header(5, records.len()), &records).await.unwrap();
            assert_eq!(spill.bytes(), (ALIGN + records.len().next_multiple_of(ALIGN)) as u64);
            assert!(!spill.has_room(2_200_000), "a second segment would pass the budget");
            let on_disk = std::fs::read(spill.path(5)).unwrap();
            assert_eq!(SpillHeader::decode(&on_disk).unwrap().0, header(5, records.len()));
            let (start, back) = spill.read(5, 0, records.len()).await.unwrap();
            assert_eq!(start, 0);
            assert_eq!(&back[..records.len()], &records[..]);
            assert_eq!(back.as_ptr() as usize % 16, 0, "aligned for the ring's frames");
            let (start, window) = spill.read(5, 10_000, 10_100).await.unwrap();
            assert_eq!((start, window.len()), (8192, 4096));
            assert_eq!(&window[10_000 - 8192..10_100 - 8192], &records[10_000..10_100]);
            assert_eq!(spill.io_counts(), (1, 2));
            spill.remove(5).await.unwrap();
            assert!(!spill.path(5).exists());
            assert_eq!(spill.bytes(), 0);
            assert!(spill.read(5, 0, 10).await.is_err());
        });
    }

    #[test]
    fn parked_files_share_the_budget_come_back_exact_and_are_gone_at_the_next_start() {
        on_a_real_disk(|root| async move {
            let spill = SpillDir::new(&root, 0, "r1", 3 * ALIGN as u64).unwrap();
            let a: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
            assert!(spill.has_room_to_park(a.len()));
            let id = spill.park(&a).await.unwrap();
            assert_eq!(spill.bytes(), 2 * ALIGN as u64, "padded to the DMA alignment");
            assert!(spill.has_room_to_park(ALIGN));
            assert!(!spill.has_room_to_park(ALIGN + 1), "the budget is shared and enforced");
            let b = spill.park(b"tiny").await.unwrap();
            assert_ne!(id, b);
            let parked = root.join("core-0").join(PARKED_DIR);
            assert_eq!(std::fs::read_dir(&parked).unwrap().count(), 2);
            assert_eq!(spill.unpark(id, a.len()).await.unwrap(), a);
            assert_eq!(spill.bytes(), ALIGN as u64);
            // A byte the disk changed is caught on the way back, and the file stays.
            let c = spill.park(b"checked").await.unwrap();
            let path = std::fs::read_dir(&parked)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(&format!("{c:016x}.part")))
                .unwrap();
            let mut on_disk = std::fs::read(&path).unwrap();
            on_disk[2] ^= 1;
            std::fs::write(&path, &on_disk).unwrap();
            let e = spill.unpark(c, 7).await.unwrap_err();
            assert!(e.to_string().contains("fail their CRC32C"), "{e}");
            assert!(path.exists());
            std::fs::remove_file(&path).unwrap();
            assert_eq!(
                std::fs::read_dir(&parked).unwrap().count(),
                1,
                "read back, then deleted"
            );
            // A run that dies leaves `b` behind: the next start deletes it, and recovery does
            // not take it for a spill file.
            drop(spill);
            assert!(super::spill_files(&root).is_empty());
            let again = SpillDir::new(&root, 0, "r2", 3 * ALIGN as u64).unwrap();
            assert_eq!(std::fs::read_dir(&parked).unwrap().count(), 0);
            assert_eq!(again.bytes(), 0);
        });
    }
}
