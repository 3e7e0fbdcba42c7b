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
//! # Embedding the engine
//!
//! A program builds a [`config::Config`] (from TOML, as the binary does, or in code), builds
//! an [`Engine`] from it, and runs it on a thread of its own. A `[sources.push]` source takes
//! records from the program's threads through a [`PushHandle`]: [`PushHandle::push`] returns
//! once the batch is durable in the lake (in ETL or quarantine, with its audit row and
//! checkpoint), and waits while the source's queue is full. How soon depends on the seal
//! intervals: a push returns after the files holding its records are sealed (ETL by
//! `buffer.flush_interval_ms`, quarantine and RAW by theirs) and the next audit flush
//! (`audit.interval_ms`), so an embedder that waits on pushes sets them short. [`Engine::metrics`] reads the
//! counters while it runs; [`Engine::stop_flag`] drains it; [`PushHandle::close`] ends the
//! push source, and a run with no other source then drains and returns its [`RunReport`].
//!
//! ```
//! use sluicegate::{config::Config, Engine};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(
//!     dir.path().join("greetings.json"),
//!     r#"{"columns": [{"name": "text", "type": "string", "required": true}]}"#,
//! )?;
//! let config = Config::from_toml(
//!     r#"
//!     lake.dir = "lake"
//!     state.dir = "state"
//!     buffer.flush_interval_ms = 100
//!     quarantine.interval_ms = 100
//!     raw.segment_interval_ms = 100
//!     audit.interval_ms = 100
//!
//!     [[sources]]
//!     name = "app"
//!     encryption = "none"
//!     table = "greetings"
//!     push = {}
//!
//!     [[tables]]
//!     name = "greetings"
//!     schema = "greetings.json"
//!     "#,
//!     dir.path(),
//! )?;
//! let engine = Engine::builder(config).build()?;
//! let handle = engine.push_handle("app")?;
//! let run = std::thread::spawn(move || engine.run());
//!
//! handle.push([r#"{"text": "hello"}"#, r#"{"text": "world"}"#, r#"{"no_text": 1}"#])?;
//! handle.close();
//!
//! let report = run.join().unwrap()?;
//! assert_eq!(report.counters.records_etl, 2);
//! assert_eq!(report.counters.records_quarantined, 1);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed.rs` is a whole program doing the same from four threads. The builder also
//! takes a clock, an object store and a stop flag ([`EngineBuilder`]), and a `[sources.in_process]`
//! source can be any [`source::Source`] the program implements.
//!
//! # The public surface
//!
//! The engine and its handles are at the crate's root; [`config`] builds configurations;
//! [`clock`], [`store`], [`source`] and [`lineage`] hold what an embedder injects or
//! implements. The other modules are public only for this workspace's own tests, benchmarks,
//! fuzz targets and `loadgen`, and hidden from these docs: they are not an API and change
//! without notice.

pub mod clock;
pub mod config;
pub mod coordination;
pub mod lineage;
pub mod source;
pub mod store;

#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod audit;
#[doc(hidden)]
pub mod aws;
#[doc(hidden)]
pub mod bearer;
#[doc(hidden)]
pub mod buffer;
#[doc(hidden)]
pub mod delivery;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod extract;
#[doc(hidden)]
pub mod load;
#[doc(hidden)]
pub mod pipeline;
#[doc(hidden)]
pub mod rng;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod telemetry;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod transform;

pub use engine::{Engine, EngineBuilder, EngineError, Metrics, RunReport, Totals};
pub use source::push::{PushError, PushHandle, Receipt};
