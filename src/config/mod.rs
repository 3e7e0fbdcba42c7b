//! Typed configuration: one TOML file, every key known, every default named.
//!
//! Owns: the config structs (`*Config`), their `DEFAULT_*` constants, parsing and validation.
//!
//! Invariants:
//! - Unknown keys are rejected (`deny_unknown_fields` on every table), so a typo never silently
//!   falls back to a default.
//! - Every error names the key path, the rule and the value, e.g.
//!   `buffer.flush_bytes_max: must be at least 1 MiB, got 12`. Parse errors take their path from
//!   `serde_path_to_error`; semantic errors are built by [`Validator`] with the same shape.
//! - A [`Config`] that left [`Config::validate`] is internally consistent: sources name tables
//!   that exist, table names are unique, bounds hold. Later stages may `expect` on that.
//!
//! Bounds: every numeric key has a minimum and maximum checked here; the constants below say
//! why each one is what it is.

mod admin;
mod buffer;
mod http;
mod kinesis;
mod lake;
mod runtime;
mod sources;
mod tables;
mod validate;
mod validator;
mod zones;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use admin::*;
pub use buffer::*;
pub use http::*;
pub use kinesis::*;
pub use lake::*;
pub use runtime::*;
pub use sources::*;
pub use tables::*;
pub use validator::{bytes_human, ConfigError, ConfigErrors, Validator};
pub use zones::*;

/// Schema names starting with this refer to schemas compiled into the binary.
pub const BUILTIN_PREFIX: &str = "builtin:";
/// The generator's event schema (the embedded default's table).
pub const BUILTIN_SCHEMA_NAME: &str = "builtin:events";

/// Bytes in a mebibyte, for readable bounds.
pub const MIB: u64 = 1 << 20;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub lake: LakeConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    #[serde(default)]
    pub partitioning: PartitioningConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub parquet: ParquetConfig,
    #[serde(default)]
    pub raw: RawConfig,
    #[serde(default)]
    pub quarantine: QuarantineConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The admin endpoint; absent: off.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

impl Config {
    /// Parse TOML text; errors carry the key path. Relative paths in the file are resolved
    /// against `base_dir` (the config file's directory).
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: "<file>".into(),
                message: format!("not valid TOML: {}", e.message()),
            }])
        })?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().message().to_string();
            ConfigErrors(vec![ConfigError { path, message }])
        })?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    /// Read and parse a config file, then validate it.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: path.display().to_string(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Config::from_toml(&text, base)?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded default: a generator of `records` records (1% bad) into a local lake.
    pub fn embedded_default(records: u64, lake_dir: &Path) -> Config {
        let mut config = Config {
            lake: LakeConfig {
                dir: lake_dir.to_path_buf(),
                ..LakeConfig::default()
            },
            keys: KeysConfig {
                demo: true,
                ..KeysConfig::default()
            },
            ..Config::default()
        };
        config.sources.push(SourceConfig {
            name: "generator".into(),
            encryption: Encryption::Envelope,
            table: Some("events".into()),
            route: None,
            batch_records: DEFAULT_BATCH_RECORDS,
            generator: Some(GeneratorConfig {
                records,
                ..GeneratorConfig::default()
            }),
            file: None,
            kinesis: None,
            http: None,
            in_process: None,
            push: None,
        });
        config.tables.push(TableConfig {
            name: "events".into(),
            schema: BUILTIN_SCHEMA_NAME.into(),
            event_time: Some("ts".into()),
            infer_records: DEFAULT_INFER_RECORDS,
            transforms: vec![TransformConfig::IngestMetadata],
        });
        config
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.lake.dir);
        if let Some(d) = self.state.dir.as_mut() {
            join(d);
        }
        if let Some(d) = self.buffer.spill_dir.as_mut() {
            join(d);
        }
        if let Some(f) = self.keys.file.as_mut() {
            join(f);
        }
        for s in &mut self.sources {
            if let Some(file) = s.file.as_mut() {
                file.paths.iter_mut().for_each(join);
            }
        }
        for t in &mut self.tables {
            if t.schema != "infer" && !t.schema.starts_with(BUILTIN_PREFIX) {
                let p = Path::new(&t.schema);
                if p.is_relative() {
                    t.schema = base.join(p).display().to_string();
                }
            }
        }
    }

    /// Check every semantic rule; all violations are reported together.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut v = Validator::default();
        validate::config(self, &mut v);
        v.finish()
    }
}

#[cfg(test)]
mod tests;
