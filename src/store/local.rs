//! The local-directory object store (the embedded default): `key` is a relative path under
//! the root.
//!
//! `put` writes `.<name>.tmp-<pid>-<n>` beside the target, fsyncs it, renames it over the
//! target and fsyncs the directory: a reader never sees half a file, and after `put` returns
//! the file survives a power cut. Temporary names start with `.`, which pyarrow, Spark and
//! DuckDB's `*.parquet` globs all skip. With `fsync = false` (tests, benchmarks on tmpfs)
//! only the rename guarantee remains.
//!
//! Keys are validated: relative, no empty, `.` or `..` segments, no backslashes.

use super::{ObjectStore, StoreError};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct LocalDirStore {
    root: PathBuf,
    fsync: bool,
    tmp_seq: AtomicU64,
}

impl LocalDirStore {
    pub fn new(root: &Path, fsync: bool) -> Result<LocalDirStore, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError {
            op: "create",
            key: root.display().to_string(),
            message: e.to_string(),
            retryable: false,
        })?;
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        Ok(LocalDirStore {
            root,
            fsync,
            tmp_seq: AtomicU64::new(0),
        })
    }

    fn path(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key.contains('\\')
            || key.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if bad {
            return Err(StoreError {
                op,
                key: key.into(),
                message: "invalid key: must be a relative path without empty, '.' or '..' segments".into(),
                retryable: false,
            });
        }
        Ok(self.root.join(key))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = path.parent().expect("keys have a parent under the root");
        fs::create_dir_all(dir)?;
        let name = path.file_name().expect("keys name a file").to_string_lossy();
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            if self.fsync {
                f.sync_all()?;
            }
            fs::rename(&tmp, path)?;
            if self.fsync {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl ObjectStore for LocalDirStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path("put", key)?;
        self.write_atomically(&path, bytes).map_err(|e| StoreError {
            op: "put",
            key: key.into(),
            retryable: !matches!(e.kind(), io::ErrorKind::PermissionDenied),
            message: e.to_string(),
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path("get", key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError {
                op: "get",
                key: key.into(),
                message: e.to_string(),
                retryable: true,
            }),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path("list", dir_part)?
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StoreError {
                        op: "list",
                        key: prefix.into(),
                        message: e.to_string(),
                        retryable: true,
                    })
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if hidden {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_on_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::new(dir.path(), true).unwrap();
        s.put("etl/source=a/x.parquet", b"one").unwrap();
        s.put("etl/source=b/y.parquet", b"two").unwrap();
        s.put("raw/z", b"three").unwrap();
        s.put("etl/source=a/x.parquet", b"uno").unwrap();
        assert_eq!(s.get("etl/source=a/x.parquet").unwrap().unwrap(), b"uno");
        assert_eq!(s.get("nope").unwrap(), None);
        assert_eq!(
            s.list("etl/").unwrap(),
            vec!["etl/source=a/x.parquet", "etl/source=b/y.parquet"]
        );
        assert_eq!(s.list("etl/source=a").unwrap(), vec!["etl/source=a/x.parquet"]);
        assert_eq!(s.list("").unwrap().len(), 3);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("etl/source=a"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn rejects_keys_that_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::new(dir.path(), false).unwrap();
        for k in ["../x", "/abs", "a//b", "a/./b", ""] {
            let e = s.put(k, b"x").unwrap_err();
            assert!(!e.retryable && e.message.starts_with("invalid key"), "{k}: {e}");
        }
    }

    #[test]
    fn a_failed_put_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::new(dir.path(), false).unwrap();
        // The target is an existing directory: rename fails after the temp file was written.
        fs::create_dir_all(dir.path().join("k/target")).unwrap();
        fs::write(dir.path().join("k/target/inner"), b"x").unwrap();
        assert!(s.put("k/target", b"data").is_err());
        let names: Vec<_> = fs::read_dir(dir.path().join("k"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("target")]);
    }
}
