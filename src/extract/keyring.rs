//! The keyring: AES-256 keys by id, for envelope decryption (and HMAC for the `hash` transform).
//!
//! Format (file and environment variable alike): one key per entry, `id:base64-of-32-bytes`;
//! entries are separated by newlines (or commas, convenient in an environment variable); blank
//! lines and lines starting with `#` are ignored. Several keys may be held at once, so rotation
//! is: add the new key, switch producers to it, remove the old key once nothing uses it.
//!
//! The `demo` key is built in and public (its bytes are SHA-256 of a fixed string). The
//! embedded default uses it so that a first run needs no setup and its RAW zone can be replayed.
//! It protects nothing.
//!
//! Invariants: ids are valid envelope key ids and unique; every key is exactly 32 bytes.
//! Key material read here (the file's or variable's text, the decoded bytes) is zeroed when it
//! is dropped; the keys' schedules live inside `ring`, which does not zero them. No error
//! echoes a byte of a key: a bad entry is named by its place and id. A keyring file that group
//! or others may read or write is refused (as ssh refuses such a private key) unless the caller
//! says otherwise (`keys.file_mode_check = false`).
//! Bounds: at most [`KEYRING_KEYS_MAX`] keys.

use base64::Engine as _;
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hmac;
use std::collections::HashMap;
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

pub const KEY_ID_LEN_MAX: usize = 64;

/// Whether a key id may appear in an envelope.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= KEY_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A keyring this large is a rotation that was never cleaned up.
pub const KEYRING_KEYS_MAX: usize = 1024;
/// Id of the built-in public demo key.
pub const DEMO_KEY_ID: &str = "demo";
const DEMO_KEY_SEED: &[u8] = b"sluicegate public demo key: not a secret";

/// One key: its AES-256-GCM form and its HMAC-SHA256 form.
pub struct Key {
    aead: LessSafeKey,
    hmac: hmac::Key,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Key {
        Key {
            aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key")),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    pub fn aead(&self) -> &LessSafeKey {
        &self.aead
    }

    pub fn hmac(&self) -> &hmac::Key {
        &self.hmac
    }
}

#[derive(Default)]
pub struct Keyring {
    keys: HashMap<Box<[u8]>, Key>,
    ids: Vec<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("{origin}: entry {entry}: {message}")]
    Entry {
        origin: String,
        entry: usize,
        message: String,
    },
    #[error("key id {0:?} appears twice")]
    Duplicate(String),
    #[error("invalid key id {0:?}: 1 to 64 characters of [A-Za-z0-9._-]")]
    InvalidId(String),
    #[error("more than {KEYRING_KEYS_MAX} keys")]
    TooMany,
    #[error("{0}")]
    Io(String),
}

/// Bytes of the built-in demo key.
pub fn demo_key_bytes() -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, DEMO_KEY_SEED);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl Keyring {
    /// Add a key; `bytes` (this copy) is zeroed before returning.
    pub fn insert(&mut self, id: &str, bytes: [u8; 32]) -> Result<(), KeyringError> {
        let bytes = Zeroizing::new(bytes);
        if !valid_key_id(id) {
            return Err(KeyringError::InvalidId(id.into()));
        }
        if self.keys.len() >= KEYRING_KEYS_MAX {
            return Err(KeyringError::TooMany);
        }
        if self.keys.contains_key(id.as_bytes()) {
            return Err(KeyringError::Duplicate(id.into()));
        }
        self.keys.insert(id.as_bytes().into(), Key::new(&bytes));
        self.ids.push(id.into());
        Ok(())
    }

    pub fn get(&self, id: &[u8]) -> Option<&Key> {
        self.keys.get(id)
    }

    /// Ids in the order they were added.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn insert_demo(&mut self) -> Result<(), KeyringError> {
        self.insert(DEMO_KEY_ID, demo_key_bytes())
    }

    /// Add every entry of `text` (see the module docs for the format).
    pub fn load_text(&mut self, origin: &str, text: &str) -> Result<(), KeyringError> {
        let entries = text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let err = |message: String| KeyringError::Entry {
                origin: origin.into(),
                entry: i + 1,
                message,
            };
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| err("expected `id:base64-key`".into()))?;
            // The decoder's error would name the bad character: say only that it is bad.
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| err(format!("key {:?} is not valid base64", id.trim())))?,
            );
            if raw.len() != 32 {
                return Err(err(format!("key {:?} is {} bytes, must be 32", id.trim(), raw.len())));
            }
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(&raw);
            let inserted = self.insert(id.trim(), bytes);
            bytes.zeroize();
            inserted?;
        }
        Ok(())
    }

    /// Load a keyring file; with `check_mode`, refuse one that group or others may read or
    /// write.
    pub fn load_file(&mut self, path: &Path, check_mode: bool) -> Result<(), KeyringError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| KeyringError::Io(format!("cannot read keyring {}: {e}", path.display()));
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if check_mode && mode & 0o077 != 0 {
            return Err(KeyringError::Io(format!(
                "keyring {} is open to group or others (mode {:04o}): `chmod 600` it (or set keys.file_mode_check = false)",
                path.display(),
                mode & 0o7777
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        self.load_text(&path.display().to_string(), &text)
    }

    pub fn load_env(&mut self, var: &str) -> Result<(), KeyringError> {
        let text = Zeroizing::new(
            std::env::var(var).map_err(|e| KeyringError::Io(format!("keyring environment variable {var}: {e}")))?,
        );
        self.load_text(&format!("${var}"), &text)
    }
}

/// A new random key entry line, `id:base64`.
pub fn generate_entry(id: &str) -> Result<String, KeyringError> {
    if !valid_key_id(id) {
        return Err(KeyringError::InvalidId(id.into()));
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| KeyringError::Io("the system random source failed".into()))?;
    Ok(format!(
        "{id}:{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_entries_with_comments_and_commas() {
        let a = generate_entry("k-2026.11").unwrap();
        let b = generate_entry("old_key").unwrap();
        let mut k = Keyring::default();
        k.load_text("test", &format!("# keys\n{a}\n\n{b}")).unwrap();
        assert_eq!(k.ids(), ["k-2026.11", "old_key"]);
        let mut k2 = Keyring::default();
        k2.load_text("env", &format!("{a},{b}")).unwrap();
        assert_eq!(k2.len(), 2);
    }

    #[test]
    fn rejects_bad_entries_with_position() {
        let mut k = Keyring::default();
        let e = k.load_text("f", "k1:AAAA").unwrap_err();
        assert_eq!(e.to_string(), "f: entry 1: key \"k1\" is 3 bytes, must be 32");
        let e = k.load_text("f", "# c\nnocolon").unwrap_err();
        assert!(e.to_string().contains("entry 1: expected `id:base64-key`"), "{e}");
        let e = k.load_text("f", "k1:!!").unwrap_err();
        assert_eq!(e.to_string(), "f: entry 1: key \"k1\" is not valid base64");
        // No byte of a key in any error: a key with one bad character in the middle.
        let secret = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk$WZn";
        let e = k.load_text("f", &format!("k9:{secret}")).unwrap_err().to_string();
        assert!(!e.contains('$') && !e.contains("QUJD"), "{e}");
        let line = generate_entry("dup").unwrap();
        let e = k.load_text("f", &format!("{line}\n{line}")).unwrap_err();
        assert_eq!(e, KeyringError::Duplicate("dup".into()));
        assert!(matches!(generate_entry("bad id"), Err(KeyringError::InvalidId(_))));
    }

    #[test]
    fn a_keyring_file_open_to_group_or_others_is_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, generate_entry("k").unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keyring::default().load_file(&path, true).unwrap_err().to_string();
        assert!(e.contains("open to group or others (mode 0644)"), "{e}");
        assert!(Keyring::default().load_file(&path, false).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Keyring::default().load_file(&path, true).is_ok());
    }

    #[test]
    fn demo_key_is_stable() {
        // The demo key must never change: RAW zones written with it must stay readable.
        let hex: String = demo_key_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "fca926d8e1a35b883343e4ee52fb42155d3db7b0a41d9e6cd34c28cc8b01bc0f");
        let mut k = Keyring::default();
        k.insert_demo().unwrap();
        assert!(k.get(b"demo").is_some());
    }
}
