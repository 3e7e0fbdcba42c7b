//! Validation of the whole [`Config`]: each section's own rules (in its file), then what only
//! the whole can say — unique names, sources that name tables that exist, a keyring where a
//! source is encrypted, a state directory where a source resumes from checkpoints.
//!
//! Every rule reports `path: rule, got value`; all violations are collected, not just the first.

use super::validator::{check_name, Validator};
use super::*;
use std::collections::HashSet;

pub(super) fn config(c: &Config, v: &mut Validator) {
    super::runtime::validate(&c.runtime, v);
    if let Some(a) = &c.admin {
        super::admin::validate(a, v);
    }
    super::lake::validate(&c.lake, v);
    if c.keys.file.is_none() && c.keys.env.is_none() && !c.keys.demo {
        let encrypted = c.sources.iter().any(|s| s.encryption == Encryption::Envelope);
        if encrypted {
            v.error(
                "keys",
                "a source uses envelope encryption but no keyring is configured: set keys.file or keys.env",
            );
        }
    }

    if c.sources.is_empty() {
        v.error("sources", "at least one source is required");
    }
    if c.tables.is_empty() {
        v.error("tables", "at least one table is required");
    }
    let tables: HashSet<&str> = c.tables.iter().map(|t| t.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, s) in c.sources.iter().enumerate() {
        let p = format!("sources[{i}]");
        check_name(v, &format!("{p}.name"), &s.name);
        if !seen.insert(s.name.as_str()) {
            v.error(
                format!("{p}.name"),
                format!("must be unique, {:?} appears twice", s.name),
            );
        }
        super::sources::validate(s, &p, &tables, v);
        if s.needs_state() && c.state.dir.is_none() {
            // Without checkpoints a stream would be read again from its start on every run, the
            // HTTP receiver has nowhere to keep its inbox, and a push is never known durable.
            let (kind, why) = match s.kind() {
                Ok(SourceKind::Kinesis(_)) => ("kinesis", "a stream source resumes from checkpoints"),
                Ok(SourceKind::Http(_)) => ("http", "a stream source resumes from checkpoints"),
                _ => ("push", "a push returns when its checkpoint is written"),
            };
            v.error(format!("{p}.{kind}"), format!("needs state.dir: {why}"));
        }
    }
    let mut seen = HashSet::new();
    for (i, t) in c.tables.iter().enumerate() {
        let p = format!("tables[{i}]");
        check_name(v, &format!("{p}.name"), &t.name);
        if !seen.insert(t.name.as_str()) {
            v.error(
                format!("{p}.name"),
                format!("must be unique, {:?} appears twice", t.name),
            );
        }
        super::tables::validate(t, &p, v);
        if t.schema == "infer" {
            let pushed = c
                .sources
                .iter()
                .find(|s| (s.http.is_some() || s.in_process.is_some() || s.push.is_some()) && s.feeds(&t.name));
            if let Some(s) = pushed {
                let kind = match s.kind() {
                    Ok(SourceKind::Http(_)) => "HTTP",
                    Ok(SourceKind::Push(_)) => "push",
                    _ => "in-process",
                };
                v.error(
                    format!("{p}.schema"),
                    format!(
                        "\"infer\" reads records before the run starts, and the {kind} source {:?} has none then: give a schema file",
                        s.name
                    ),
                );
            }
        }
    }

    super::tables::validate_partitioning(&c.partitioning, v);

    super::buffer::validate(&c.buffer, v);
    super::zones::validate_parquet(&c.parquet, v);
    super::zones::validate_raw(&c.raw, v);
    super::zones::validate_quarantine(&c.quarantine, v);
    super::zones::validate_audit(&c.audit, v);
    super::runtime::validate_telemetry(&c.telemetry, v);
}
