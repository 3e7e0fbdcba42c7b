//! Checkpoints: the position each source partition resumes from.
//!
//! The local implementation keeps one small JSON file per partition,
//! `<state dir>/checkpoints/<source>/<partition>.json` (partition ids made file-safe by
//! `lineage::safe_id`), written atomically: write a temporary file, fsync, rename, fsync the
//! directory. One file per partition because partitions move between cores when the core
//! count changes, and each core writes only the partitions it owns: no file has two writers.
//!
//! A checkpoint is written only after every record before its position is durable in the
//! lake and the audit rows describing those files are durable too (see `pipeline`).

use crate::lineage::{safe_id, Resume};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub source: String,
    pub partition: String,
    pub next_position: u64,
    /// The source's own cursor at `next_position` (see `source::Resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

pub trait CheckpointStore: Send + Sync {
    fn load(&self, source: &str, partition: &str) -> Result<Option<Resume>, String>;
    fn save(&self, checkpoints: &[Checkpoint]) -> Result<(), String>;
}

/// An exclusive lock on a state directory for the life of a run: two processes on one state
/// would write the same checkpoints and inboxes. `flock` is released by the kernel when the
/// process dies, SIGKILL included, so a restart after a crash never finds a stale lock.
pub struct StateLock {
    _file: fs::File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, String> {
        fs::create_dir_all(state_dir).map_err(|e| format!("state.dir {}: {e}", state_dir.display()))?;
        let path = state_dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("state lock {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(format!(
                    "state.dir {} is in use by another sluicegate process (pid {})",
                    state_dir.display(),
                    holder.trim()
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(format!("state lock {}: {e}", path.display())),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .ok();
        Ok(StateLock { _file: file })
    }
}

pub struct LocalCheckpoints {
    dir: PathBuf,
}

impl LocalCheckpoints {
    pub fn new(state_dir: &std::path::Path) -> LocalCheckpoints {
        LocalCheckpoints {
            dir: state_dir.join("checkpoints"),
        }
    }

    fn path(&self, source: &str, partition: &str) -> PathBuf {
        self.dir.join(source).join(format!("{}.json", safe_id(partition)))
    }
}

impl CheckpointStore for LocalCheckpoints {
    fn load(&self, source: &str, partition: &str) -> Result<Option<Resume>, String> {
        let path = self.path(source, partition);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read checkpoint {}: {e}", path.display())),
        };
        let c: Checkpoint =
            serde_json::from_str(&text).map_err(|e| format!("checkpoint {} is corrupt: {e}", path.display()))?;
        if c.source != source || c.partition != partition {
            return Err(format!(
                "checkpoint {} belongs to {}/{}, not {source}/{partition}",
                path.display(),
                c.source,
                c.partition
            ));
        }
        Ok(Some(Resume {
            position: c.next_position,
            cursor: c.cursor,
        }))
    }

    fn save(&self, checkpoints: &[Checkpoint]) -> Result<(), String> {
        for c in checkpoints {
            let path = self.path(&c.source, &c.partition);
            let json = serde_json::to_string(c).expect("serialisable");
            write_atomically(&path, json.as_bytes())
                .map_err(|e| format!("cannot write checkpoint {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Replace `path` with `bytes` so that a crash leaves either the old or the new content, and
/// the new content survives a power cut once this returns: write a temporary file beside it,
/// fsync, rename over, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("state paths have a parent");
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dir_has_one_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateLock::acquire(dir.path()).unwrap();
        let second = StateLock::acquire(dir.path()).err().unwrap();
        assert_eq!(
            second,
            format!(
                "state.dir {} is in use by another sluicegate process (pid {})",
                dir.path().display(),
                std::process::id()
            )
        );
        drop(lock);
        StateLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn save_and_load_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalCheckpoints::new(dir.path());
        assert_eq!(s.load("gen", "0").unwrap(), None);
        let c = |p: &str, n| Checkpoint {
            source: "gen".into(),
            partition: p.into(),
            next_position: n,
            cursor: None,
        };
        let at = |position| Some(Resume { position, cursor: None });
        s.save(&[c("0", 10), c("/data/a b.ndjson#0", 20)]).unwrap();
        s.save(&[c("0", 11)]).unwrap();
        assert_eq!(s.load("gen", "0").unwrap(), at(11));
        assert_eq!(s.load("gen", "/data/a b.ndjson#0").unwrap(), at(20));
        // A cursor comes back with its position; a file without one (older runs) reads as None.
        let shard = Checkpoint {
            cursor: Some("after:4959".into()),
            ..c("shardId-000000000001", 7)
        };
        s.save(std::slice::from_ref(&shard)).unwrap();
        assert_eq!(
            s.load("gen", "shardId-000000000001").unwrap(),
            Some(Resume {
                position: 7,
                cursor: Some("after:4959".into())
            })
        );
        assert!(!fs::read_to_string(s.path("gen", "0")).unwrap().contains("cursor"));
        assert_eq!(s.load("other", "0").unwrap(), None);
        fs::write(s.path("gen", "0"), "{").unwrap();
        assert!(s.load("gen", "0").unwrap_err().contains("corrupt"));
    }
}
