//! The tool every section's validation uses: [`Validator`] collects errors with their key
//! paths (`path: rule, got value`), all of them rather than the first; [`ConfigErrors`] is
//! what `Config::validate` returns.

use super::MIB;

/// A configuration error: `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `buffer.flush_bytes_max` or `sources[0].file.paths`.
    pub path: String,
    pub message: String,
}

/// Every error found, so a user fixes a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors with their key paths.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<ConfigError>,
}

/// Human form of a byte count for messages: `1 MiB`, `64 MiB`, or plain bytes.
pub fn bytes_human(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        n.to_string()
    }
}

impl Validator {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` must lie in `[min, max]`; `show` renders bounds and value in the key's unit.
    pub fn range_u64(&mut self, path: &str, value: u64, min: u64, max: u64, show: fn(u64) -> String) {
        if value < min {
            self.error(path, format!("must be at least {}, got {}", show(min), value));
        } else if value > max {
            self.error(path, format!("must be at most {}, got {}", show(max), value));
        }
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

pub(super) fn plain(n: u64) -> String {
    n.to_string()
}

/// A name used in keys and paths: `[A-Za-z0-9_-]`, 1..=64 characters.
pub(super) fn check_name(v: &mut Validator, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        v.error(
            path,
            format!("must be 1 to 64 characters of [A-Za-z0-9_-] (it becomes part of object keys), got {name:?}"),
        );
    }
}
