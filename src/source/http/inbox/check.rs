//! An inbox's segments checked frame by frame, and the operator's tools over them.
//!
//! Owns: [`scan`] — the one verdict on a segment's bytes, torn tail or corruption (see the
//! parent module for the rules) — used by recovery at open, by `sluicegate inbox check` and
//! `sluicegate inbox salvage`, and by the `inbox` fuzz target; the salvage side file and its
//! reading. Invariants: nothing here deletes a byte: salvage lists frames or copies the rest of
//! a segment aside before it shortens it. Bounds: a segment is read whole (≤ `segment_bytes`
//! plus one commit).

use super::{sync_dir, FRAME_BYTES_CEILING, FRAME_HEADER_BYTES, SEGMENT_MAGIC, SEGMENT_SUFFIX};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What [`scan`] found past the last good frame of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The segment ends exactly after its last frame.
    Clean,
    /// A crash mid-commit: never acknowledged, cut at the next open.
    Torn(String),
    /// Data that may have been acknowledged fails its check: never cut.
    Corrupt(String),
}

/// A segment's bytes, checked frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// File offset after the last good (or salvaged) frame.
    pub end: u64,
    /// Whole frames up to `end` (salvaged ones included).
    pub frames: u64,
    /// File offsets of the frames passed over because a salvage listed them.
    pub salvaged: Vec<u64>,
    pub tail: Tail,
}

/// Check a whole segment file's bytes (see the module comment for torn versus corrupt);
/// `salvaged` are the file offsets of frames an operator's salvage listed, and a frame that ends
/// at or before file offset `delivered` (the checkpoint) is delivered already: either is passed
/// over when it fails its CRC. Errors only for a file that is not an inbox segment.
pub fn scan(bytes: &[u8], salvaged: &[u64], delivered: u64) -> Result<Scan, String> {
    if bytes.len() < SEGMENT_MAGIC.len() {
        // Created, and cut before its magic was durable: it holds nothing.
        return Ok(Scan {
            end: 0,
            frames: 0,
            salvaged: Vec::new(),
            tail: Tail::Torn(format!("{} bytes, no magic yet", bytes.len())),
        });
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err("not an inbox segment (bad magic)".into());
    }
    let len = bytes.len() as u64;
    let mut scan = Scan {
        end: 8,
        frames: 0,
        salvaged: Vec::new(),
        tail: Tail::Clean,
    };
    let zeros = |from: u64| bytes[from as usize..].iter().all(|&b| b == 0);
    while scan.end < len {
        let off = scan.end;
        if off + FRAME_HEADER_BYTES > len {
            scan.tail = Tail::Torn(format!("byte {off}: {} bytes of a frame header", len - off));
            break;
        }
        let h = &bytes[off as usize..(off + FRAME_HEADER_BYTES) as usize];
        let n = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
        let body_end = off + FRAME_HEADER_BYTES + n;
        if n == 0 {
            scan.tail = if zeros(off) {
                Tail::Torn(format!("byte {off}: {} zero bytes past the written end", len - off))
            } else {
                Tail::Corrupt(format!(
                    "byte {off}: a frame of length 0 (never written) followed by data"
                ))
            };
            break;
        }
        if n > FRAME_BYTES_CEILING {
            scan.tail = Tail::Corrupt(format!(
                "byte {off}: a frame length of {n} bytes, more than any body can be ({FRAME_BYTES_CEILING})"
            ));
            break;
        }
        if body_end > len {
            scan.tail = Tail::Torn(format!(
                "byte {off}: the last frame announces {n} bytes, {} are there",
                len - off - FRAME_HEADER_BYTES
            ));
            break;
        }
        if crc32c::crc32c(&bytes[(off + FRAME_HEADER_BYTES) as usize..body_end as usize]) != crc {
            if salvaged.contains(&off) {
                scan.salvaged.push(off);
            } else if body_end <= delivered {
                tracing::warn!(
                    byte = off,
                    "an inbox frame already delivered fails its CRC; passed over"
                );
            } else {
                scan.tail = Tail::Corrupt(format!(
                    "byte {off}: a whole frame of {n} bytes fails its CRC ({} more bytes follow it)",
                    len - body_end
                ));
                break;
            }
        }
        scan.end = body_end;
        scan.frames += 1;
    }
    Ok(scan)
}

/// The salvage side file of a segment.
pub fn salvage_path(segment: &Path) -> PathBuf {
    let mut p = segment.as_os_str().to_owned();
    p.push(".salvage");
    PathBuf::from(p)
}

/// The frame offsets a salvage listed for `segment` (none without a side file).
pub fn salvaged_offsets(segment: &Path) -> Result<Vec<u64>, String> {
    let path = salvage_path(segment);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim()
                    .parse()
                    .map_err(|_| format!("{}: {l:?} is not a file offset", path.display()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// What a salvage of one segment did (or, without `apply`, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// File offsets of corrupt frames now listed in the side file (their bytes go to the
    /// quarantine when read).
    pub listed: Vec<u64>,
    /// A corrupt frame whose length cannot be trusted: the segment ends there now, and the
    /// bytes from it on were copied to this file first.
    pub cut: Option<(u64, PathBuf)>,
}

/// Salvage `segment`: list every corrupt frame whose length fits the file in its side file;
/// at a corrupt frame whose length does not, copy the rest of the file aside and end the
/// segment there. With `apply` false, only say what it would do. Never deletes a byte.
pub fn salvage(segment: &Path, apply: bool) -> Result<Salvaged, String> {
    let err = |e: std::io::Error| format!("{}: {e}", segment.display());
    let bytes = std::fs::read(segment).map_err(err)?;
    let mut listed = salvaged_offsets(segment)?;
    let mut done = Salvaged::default();
    loop {
        let s = scan(&bytes, &listed, 0).map_err(|e| format!("{}: {e}", segment.display()))?;
        if !matches!(s.tail, Tail::Corrupt(_)) {
            break;
        }
        let off = s.end;
        let n = u32::from_le_bytes(bytes[off as usize..off as usize + 4].try_into().expect("4 bytes")) as u64;
        if n > 0 && off + FRAME_HEADER_BYTES + n <= bytes.len() as u64 {
            listed.push(off);
            done.listed.push(off);
            continue;
        }
        let mut aside = segment.as_os_str().to_owned();
        aside.push(format!(".tail-{off}"));
        done.cut = Some((off, PathBuf::from(aside)));
        break;
    }
    if !apply {
        return Ok(done);
    }
    if let Some((off, aside)) = &done.cut {
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(aside)
            .map_err(|e| format!("{}: {e}", aside.display()))?;
        f.write_all(&bytes[*off as usize..])
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", aside.display()))?;
        let seg = File::options().write(true).open(segment).map_err(err)?;
        seg.set_len(*off).and_then(|()| seg.sync_all()).map_err(err)?;
    }
    if !done.listed.is_empty() {
        let text: String = listed.iter().map(|o| format!("{o}\n")).collect();
        let path = salvage_path(segment);
        let mut f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(dir) = segment.parent() {
        sync_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(done)
}

/// Every inbox segment under `root` (an inbox, a source's inboxes, or a whole `state.dir`),
/// sorted by path.
pub fn segments_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == &SEGMENT_SUFFIX[1..]) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `sluicegate inbox check`: one line per segment under `root`, and whether any is corrupt.
/// A segment that is not the last of its inbox must end exactly at a frame: a torn tail
/// there is corruption too.
pub fn check(root: &Path) -> Result<(String, bool), String> {
    let segments = segments_under(root);
    if segments.is_empty() {
        return Err(format!(
            "no inbox segments (*{SEGMENT_SUFFIX}) under {}",
            root.display()
        ));
    }
    let mut out = String::new();
    let mut corrupt = false;
    for (i, seg) in segments.iter().enumerate() {
        let last = segments.get(i + 1).is_none_or(|next| next.parent() != seg.parent());
        let bytes = std::fs::read(seg).map_err(|e| format!("{}: {e}", seg.display()))?;
        let salvaged = salvaged_offsets(seg)?;
        let verdict = match scan(&bytes, &salvaged, 0) {
            Err(e) => {
                corrupt = true;
                format!("CORRUPT: {e}")
            }
            Ok(s) => {
                let tail = match (&s.tail, last) {
                    (Tail::Clean, _) => "clean".to_string(),
                    (Tail::Torn(why), true) => {
                        format!("torn tail at {why} (never acknowledged; cut at the next start)")
                    }
                    (Tail::Torn(why), false) | (Tail::Corrupt(why), _) => {
                        corrupt = true;
                        format!("CORRUPT at {why}")
                    }
                };
                let salvaged = match s.salvaged.len() {
                    0 => String::new(),
                    n => format!(", {n} salvaged frame(s) quarantined when read"),
                };
                format!("{} frames in {} bytes{salvaged}: {tail}", s.frames, s.end)
            }
        };
        out.push_str(&format!("{}: {verdict}\n", seg.display()));
    }
    if corrupt {
        out.push_str(
            "corrupt segments stop their partition; frames before the partition's checkpoint are \
             delivered already. `sluicegate inbox salvage SEGMENT` says what it would do, and does \
             it with --apply\n",
        );
    }
    Ok((out, corrupt))
}
