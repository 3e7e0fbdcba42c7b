//! Upload intents and where they are kept.
//!
//! An [`Intent`] is written, durably, before its file's upload starts: the audit row the file
//! will get (key, zone, records, bytes, CRC32C, …) and the exact runs of source positions it
//! holds. The local store keeps one JSON file per intent, `<state dir>/intents/<id>.json`,
//! written atomically (`store::checkpoint::write_atomically`); an intent is a few hundred bytes
//! plus ~60 per run.
//!
//! Invariant: an intent id is the file name of its object (`<run>-c<core>-<seq>`), unique
//! over runs, so intents of different runs and cores never collide.

use super::checkpoint::write_atomically;
use crate::audit::FileRow;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub id: String,
    /// The audit row the file gets once durable (`written_at_us` is filled in then).
    pub row: FileRow,
    pub runs: Vec<IntentRun>,
}

/// Every record of `source`/`partition` with a position in `first..=last` is in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRun {
    pub source: String,
    pub partition: String,
    pub first: u64,
    pub last: u64,
}

/// Where intents are kept. Called from the I/O edge and from recovery, never from a core.
pub trait IntentStore: Send + Sync {
    /// Durable when this returns.
    fn record(&self, intent: &Intent) -> Result<(), String>;
    /// Every intent not yet removed, sorted by id.
    fn list(&self) -> Result<Vec<Intent>, String>;
    /// Remove intents; an id that is already gone is not an error.
    fn remove(&self, ids: &[String]) -> Result<(), String>;
}

pub struct LocalIntents {
    dir: PathBuf,
}

impl LocalIntents {
    pub fn new(state_dir: &Path) -> LocalIntents {
        LocalIntents {
            dir: state_dir.join("intents"),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", crate::lineage::safe_id(id)))
    }
}

impl IntentStore for LocalIntents {
    fn record(&self, intent: &Intent) -> Result<(), String> {
        let path = self.path(&intent.id);
        let json = serde_json::to_vec(intent).expect("intents serialise");
        write_atomically(&path, &json).map_err(|e| format!("cannot write intent {}: {e}", path.display()))
    }

    fn list(&self) -> Result<Vec<Intent>, String> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list intents in {}: {e}", self.dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue; // a temporary file of a write that never finished: never recorded
            }
            let bytes = fs::read(&path).map_err(|e| format!("cannot read intent {}: {e}", path.display()))?;
            let intent: Intent =
                serde_json::from_slice(&bytes).map_err(|e| format!("intent {} is corrupt: {e}", path.display()))?;
            out.push(intent);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn remove(&self, ids: &[String]) -> Result<(), String> {
        for id in ids {
            let path = self.path(id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove intent {}: {e}", path.display())),
            }
        }
        Ok(())
    }
}
