//! Stores: where files and checkpoints become durable.
//!
//! [`ObjectStore`] is the lake: a flat key space of immutable objects (the local directory is
//! the embedded default; S3 behind the same trait). [`CheckpointStore`] keeps source
//! positions. Both are synchronous and called only from the I/O edge thread, never from a core.
//!
//! Contract of `put`: when it returns `Ok`, the object is complete and durable, and a reader
//! never saw a partial object under `key`.

pub mod checkpoint;
pub mod intent;
pub mod local;
pub mod s3;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {key}: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub key: String,
    pub message: String,
    /// Whether trying again may succeed (I/O hiccup) or not (bad key, permission).
    pub retryable: bool,
}

pub trait ObjectStore: Send + Sync {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// `put` of a shared buffer: a store that must own its body (S3) takes a reference to it
    /// instead of a copy. The edge calls this one.
    fn put_shared(&self, key: &str, bytes: &bytes::Bytes) -> Result<(), StoreError> {
        self.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether a complete object is stored under `key`.
    fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Discard whatever an interrupted `put` of `key` left behind (temporary files, open
    /// multipart uploads); a complete object under `key` is left alone.
    fn abort_partial(&self, key: &str) -> Result<(), StoreError>;
    /// Keys starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Where this store writes, for people (`file:///…`, `s3://…`).
    fn describe(&self) -> String;
    /// Requests the store's client repeated by itself so far (the S3 SDK's retry mode), beside
    /// the whole-file retries of the I/O edge. Zero for stores that do not retry.
    fn sdk_retries(&self) -> u64 {
        0
    }
}

pub use checkpoint::{CheckpointStore, LocalCheckpoints};
pub use intent::{Intent, IntentRun, IntentStore, LocalIntents};
pub use local::LocalDirStore;
