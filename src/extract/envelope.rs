//! The sluicegate envelope: one encrypted record, AES-256-GCM, decrypted in place.
//!
//! ```text
//! offset      size  field
//! 0           1     version = 0x01
//! 1           1     key id length n, 1..=64
//! 2           n     key id, ASCII [A-Za-z0-9._-]
//! 2+n         12    nonce (96 bits, unique per key; random in `sluicegate encrypt`)
//! 14+n        m     ciphertext (m = plaintext length, 0..=1 MiB)
//! 14+n+m      16    GCM tag
//! ```
//!
//! AAD: the header bytes `[0, 2+n)` — version, key id length and key id. Binding the key id
//! into the tag means a header cannot be rewritten to point at another key, and binding the
//! version means a future format cannot be confused with this one. Nothing about the route
//! (source, partition, position) is in the AAD on purpose: the same envelope must decrypt after
//! it was replayed from the RAW zone or moved between streams.
//!
//! Decryption happens in place: the ciphertext bytes become the plaintext, no allocation.

use super::keyring::{valid_key_id, Keyring, KEY_ID_LEN_MAX};
use super::{Reject, Rule, Stage};
use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use std::ops::Range;

pub const VERSION: u8 = 1;
pub const TAG_LEN: usize = 16;
/// Smallest possible envelope: header with a 1-byte key id, nonce, empty ciphertext, tag.
pub const ENVELOPE_LEN_MIN: usize = 2 + 1 + NONCE_LEN + TAG_LEN;

/// Bytes an envelope adds around a plaintext with this key id.
pub fn overhead(key_id: &str) -> usize {
    2 + key_id.len() + NONCE_LEN + TAG_LEN
}

/// Append an envelope of `plaintext` to `out`.
///
/// # Panics
/// If `key_id` is not a valid key id (a programmer error: the keyring validates ids on load).
pub fn seal(key_id: &str, key: &LessSafeKey, nonce: [u8; NONCE_LEN], plaintext: &[u8], out: &mut Vec<u8>) {
    assert!(valid_key_id(key_id), "invalid key id {key_id:?}");
    let start = out.len();
    out.push(VERSION);
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id.as_bytes());
    let header_end = out.len();
    out.extend_from_slice(&nonce);
    let body_start = out.len();
    out.extend_from_slice(plaintext);
    let (head, body) = out.split_at_mut(body_start);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[start..header_end]),
            body,
        )
        .expect("AES-GCM seal fails only for inputs over 64 GiB");
    out.extend_from_slice(tag.as_ref());
}

/// The key id of an envelope, if its header is well formed.
pub fn key_id(envelope: &[u8]) -> Result<&[u8], Reject> {
    if envelope.len() < ENVELOPE_LEN_MIN {
        return Err(Reject::new(
            Stage::Decrypt,
            Rule::EnvelopeFormat,
            format!(
                "envelope is {} bytes, shorter than the minimum {ENVELOPE_LEN_MIN}",
                envelope.len()
            ),
        ));
    }
    if envelope[0] != VERSION {
        return Err(Reject::new(
            Stage::Decrypt,
            Rule::EnvelopeFormat,
            format!(
                "unknown envelope version {} (this build reads version {VERSION})",
                envelope[0]
            ),
        ));
    }
    let n = envelope[1] as usize;
    if n == 0 || n > KEY_ID_LEN_MAX || envelope.len() < 2 + n + NONCE_LEN + TAG_LEN {
        return Err(Reject::new(
            Stage::Decrypt,
            Rule::EnvelopeFormat,
            format!("key id length {n} does not fit an envelope of {} bytes", envelope.len()),
        ));
    }
    Ok(&envelope[2..2 + n])
}

/// Decrypt `envelope` in place; returns the range of `envelope` that now holds the plaintext.
/// On error the buffer's contents are unspecified (ring may have overwritten them).
pub fn open_in_place(keyring: &Keyring, envelope: &mut [u8]) -> Result<Range<usize>, Reject> {
    let id = key_id(envelope)?;
    let key = keyring.get(id).ok_or_else(|| {
        Reject::new(
            Stage::Decrypt,
            Rule::UnknownKeyId,
            format!("key id {:?} is not in the keyring", String::from_utf8_lossy(id)),
        )
    })?;
    let header_len = 2 + id.len();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&envelope[header_len..header_len + NONCE_LEN]);
    let body_start = header_len + NONCE_LEN;
    let (head, body) = envelope.split_at_mut(body_start);
    let plaintext_len = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[..header_len]),
            body,
        )
        .map_err(|_| {
            Reject::new(
                Stage::Decrypt,
                Rule::Authentication,
                "AES-GCM authentication failed: the ciphertext, tag, nonce or header was altered, or the key is wrong",
            )
        })?
        .len();
    Ok(body_start..body_start + plaintext_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::keyring::Keyring;

    fn ring_with(ids: &[&str]) -> Keyring {
        let mut k = Keyring::default();
        for (i, id) in ids.iter().enumerate() {
            k.insert(id, [i as u8 + 1; 32]).unwrap();
        }
        k
    }

    fn sealed(k: &Keyring, id: &str, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(id, k.get(id.as_bytes()).unwrap().aead(), [7; NONCE_LEN], text, &mut out);
        out
    }

    #[test]
    fn round_trip_in_place() {
        let k = ring_with(&["k1", "k2"]);
        let mut env = sealed(&k, "k2", br#"{"a":1}"#);
        assert_eq!(env.len(), 7 + overhead("k2"));
        let r = open_in_place(&k, &mut env).unwrap();
        assert_eq!(&env[r], br#"{"a":1}"#);
    }

    #[test]
    fn flipped_ciphertext_bit_fails_authentication() {
        let k = ring_with(&["k1"]);
        let mut env = sealed(&k, "k1", b"hello world");
        let i = env.len() - TAG_LEN - 2;
        env[i] ^= 1;
        let e = open_in_place(&k, &mut env).unwrap_err();
        assert_eq!((e.stage, e.rule), (Stage::Decrypt, Rule::Authentication));
    }

    #[test]
    fn rewritten_key_id_fails_authentication_because_header_is_aad() {
        // Both keys are the same bytes, so only the AAD can tell the envelopes apart.
        let mut k = Keyring::default();
        k.insert("ka", [9; 32]).unwrap();
        k.insert("kb", [9; 32]).unwrap();
        let mut env = sealed(&k, "ka", b"secret");
        env[3] = b'b';
        let e = open_in_place(&k, &mut env).unwrap_err();
        assert_eq!(e.rule, Rule::Authentication);
    }

    #[test]
    fn unknown_key_id_is_named() {
        let k = ring_with(&["k1"]);
        let other = ring_with(&["zz"]);
        let mut env = sealed(&other, "zz", b"x");
        let e = open_in_place(&k, &mut env).unwrap_err();
        assert_eq!(e.rule, Rule::UnknownKeyId);
        assert!(e.message.contains("\"zz\""), "{}", e.message);
    }

    #[test]
    fn malformed_headers() {
        let k = ring_with(&["k1"]);
        let e = open_in_place(&k, &mut [1, 2, 3]).unwrap_err();
        assert_eq!(e.rule, Rule::EnvelopeFormat);
        assert!(e.message.contains("shorter"), "{}", e.message);
        let mut env = sealed(&k, "k1", b"x");
        env[0] = 2;
        let e = open_in_place(&k, &mut env).unwrap_err();
        assert!(e.message.contains("version 2"), "{}", e.message);
        let mut env = sealed(&k, "k1", b"x");
        env[1] = 200;
        let e = open_in_place(&k, &mut env).unwrap_err();
        assert_eq!(e.rule, Rule::EnvelopeFormat);
    }
}
