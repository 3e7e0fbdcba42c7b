//! The local-directory object store (the embedded default): `key` is a relative path under
//! the root.
//!
//! `put` writes `.<name>.tmp-<pid>-<n>` beside the target with O_DIRECT (no page-cache copy,
//! no writeback competing with the cores for CPU), fsyncs it, renames it over the target and
//! fsyncs the directory: a reader never sees half a file, and after `put` returns the file
//! survives a power cut. Temporary names start with `.`, which pyarrow, Spark and
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
            if self.fsync {
                write_direct(&tmp, bytes)?;
            } else {
                fs::File::create(&tmp)?.write_all(bytes)?;
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

/// Alignment O_DIRECT needs for buffer addresses, lengths and offsets (the logical block size
/// of every disk we run on; 4096 covers 512-byte disks too).
const DIRECT_ALIGN: usize = 4096;
/// Bytes copied into the aligned buffer per write.
const DIRECT_CHUNK_BYTES: usize = 4 << 20;

/// Write `bytes` to a new file with O_DIRECT, then make it durable. The data bypasses the page
/// cache: no kernel copy into cached pages and no writeback work competing with the cores, and
/// objects just written are not read back by us. The last block is padded and the file cut to
/// its length. Falls back to a buffered write where O_DIRECT is refused (tmpfs, some FUSE).
fn write_direct(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let mut f = match direct {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut f = fs::File::create(path)?;
            f.write_all(bytes)?;
            return f.sync_all();
        }
        Err(e) => return Err(e),
    };
    DIRECT_BUF.with_borrow_mut(|buf| {
        let buf = buf.get_or_insert_with(|| {
            AlignedBuf::new(
                std::alloc::Layout::from_size_align(DIRECT_CHUNK_BYTES, DIRECT_ALIGN).expect("valid layout"),
            )
        });
        for chunk in bytes.chunks(DIRECT_CHUNK_BYTES) {
            let padded = chunk.len().next_multiple_of(DIRECT_ALIGN);
            let dst = buf.slice_mut(padded);
            dst[..chunk.len()].copy_from_slice(chunk);
            dst[chunk.len()..].fill(0);
            f.write_all(dst)?;
        }
        io::Result::Ok(())
    })?;
    f.set_len(bytes.len() as u64)?;
    f.sync_all()
}

thread_local! {
    /// The aligned bounce buffer of this thread's O_DIRECT writes, kept for the thread's life:
    /// a fresh 4 MiB buffer per file cost a page fault and a zeroed page per 4 KiB written.
    static DIRECT_BUF: std::cell::RefCell<Option<AlignedBuf>> = const { std::cell::RefCell::new(None) };
}

/// A zeroed, aligned heap buffer (O_DIRECT needs aligned memory; `Vec<u8>` is 1-aligned).
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(layout: std::alloc::Layout) -> AlignedBuf {
        // SAFETY: the layout has a non-zero size (DIRECT_CHUNK_BYTES).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    /// The first `len` bytes (at most the buffer's size).
    fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.layout.size());
        // SAFETY: `ptr` points at `layout.size()` initialised (zeroed) bytes owned by this
        // struct, `len` is within them, and `&mut self` makes the slice the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout, and freed only here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
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

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path("head", key)?;
        fs::exists(&path).map_err(|e| StoreError {
            op: "head",
            key: key.into(),
            message: e.to_string(),
            retryable: true,
        })
    }

    /// Remove the temporary files of puts of `key` that never completed (any process).
    fn abort_partial(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path("abort", key)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(()); // no directory: nothing was ever started there
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                fs::remove_file(e.path()).map_err(|e| StoreError {
                    op: "abort",
                    key: key.into(),
                    message: e.to_string(),
                    retryable: true,
                })?;
            }
        }
        Ok(())
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
    fn direct_writes_keep_every_length_exact() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::new(dir.path(), true).unwrap();
        let mut r = crate::rng::Rng::new(1);
        for len in [0, 1, 4095, 4096, 4097, DIRECT_CHUNK_BYTES, DIRECT_CHUNK_BYTES + 12_345] {
            let data: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
            let key = format!("d/{len}.bin");
            s.put(&key, &data).unwrap();
            assert_eq!(s.get(&key).unwrap().unwrap(), data, "length {len}");
        }
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
