//! `[runtime]`, `[keys]` and `[telemetry]`: the cores, the keyring, and latency sampling.
//!
//! Owns: those keys, their `DEFAULT_*` constants and their validation.

use super::validator::{bytes_human, plain, Validator};
use super::MIB;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// Memory glommio registers with io_uring per executor. Small on purpose: a non-root user needs
/// RLIMIT_MEMLOCK of about 3x this per core, and the default limit is 8 MiB.
pub const DEFAULT_IO_MEMORY_BYTES: u64 = MIB;

/// Time one record in this many through every stage (HDR histograms). Timing every record
/// would cost ~5 clock reads per record; 1 in 16 keeps tails well sampled at ~0.3% cost.
pub const DEFAULT_LATENCY_SAMPLE_EVERY: u32 = 16;

/// `cores = "all"` or `cores = [0, 1]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CoresConfig {
    Named(String),
    List(Vec<usize>),
}

impl Default for CoresConfig {
    fn default() -> Self {
        CoresConfig::Named("all".into())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Which CPUs run a data-plane executor: `"all"` (every CPU this process may run on) or a list.
    pub cores: CoresConfig,
    pub io_memory_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: CoresConfig::default(),
            io_memory_bytes: DEFAULT_IO_MEMORY_BYTES,
        }
    }
}

/// Where the keyring comes from: a file, an environment variable, or (if neither) the built-in
/// demo key only. Both may be given; ids must not collide.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    /// Also load the built-in, publicly known `demo` key. Only for trying sluicegate out.
    #[serde(default)]
    pub demo: bool,
    /// Refuse a keyring `file` that group or others may read or write (as ssh does with
    /// private keys). On by default.
    #[serde(default = "yes")]
    pub file_mode_check: bool,
}

fn yes() -> bool {
    true
}

impl Default for KeysConfig {
    fn default() -> KeysConfig {
        KeysConfig {
            file: None,
            env: None,
            demo: false,
            file_mode_check: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub latency_sample_every: u32,
    /// Print a progress line while running, when standard error is a terminal.
    pub progress: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            latency_sample_every: DEFAULT_LATENCY_SAMPLE_EVERY,
            progress: true,
        }
    }
}

pub(super) fn validate(r: &RuntimeConfig, v: &mut Validator) {
    match &r.cores {
        CoresConfig::Named(s) if s == "all" => {}
        CoresConfig::Named(s) => v.error(
            "runtime.cores",
            format!("must be \"all\" or a list of CPU numbers, got {s:?}"),
        ),
        CoresConfig::List(l) => {
            if l.is_empty() {
                v.error("runtime.cores", "must list at least one CPU");
            }
            let unique: HashSet<_> = l.iter().collect();
            if unique.len() != l.len() {
                v.error("runtime.cores", format!("must not repeat a CPU, got {l:?}"));
            }
        }
    }
    // glommio needs some registered memory; beyond 1 GiB it is pinned RAM taken from the buffers.
    v.range_u64(
        "runtime.io_memory_bytes",
        r.io_memory_bytes,
        64 * 1024,
        1024 * MIB,
        bytes_human,
    );
}

pub(super) fn validate_telemetry(t: &TelemetryConfig, v: &mut Validator) {
    v.range_u64(
        "telemetry.latency_sample_every",
        t.latency_sample_every.into(),
        1,
        1 << 20,
        plain,
    );
}
