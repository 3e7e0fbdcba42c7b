//! sluicegate: a thread-per-core data-plane appliance that pulls records from streaming sources,
//! decrypts, parses, flattens, validates and transforms them, buffers them per core, and lands
//! them as compressed, datetime-partitioned Parquet, with a raw backup, a quarantine for bad
//! records and an audit trail.
//!
//! The flow (see `docs/architecture.md`):
//!
//! ```text
//! source partition ─► core k: fetch ─► raw ─► decrypt ─► parse ─► route ─► flatten+schema
//!                                       ─► transform ─► buffer (table, dt, hr) ─► seal
//!                     ─► encode Parquet ─► I/O edge: store ─► audit ─► checkpoint
//! ```
//!
//! Embedding: build a [`config::Config`] (or load one), then
//! `Engine::builder(config).build()?.run()?` returns a [`engine::report::RunReport`]. A clock,
//! an object store and a stop flag can be injected through the builder.

pub mod admin;
pub mod audit;
pub mod aws;
pub mod bearer;
pub mod buffer;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod extract;
pub mod lineage;
pub mod load;
pub mod pipeline;
pub mod rng;
pub mod runtime;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transform;

pub use engine::{Engine, EngineError};
