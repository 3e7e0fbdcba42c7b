//! loadgen: sluicegate's open-loop load generator, latency recorder and capacity planner.
//!
//! A run offers load on a schedule (`profile`: constant, ramp, burst, diurnal) that never waits
//! for the system under test; lanes (`lane`) send each request at its due time and measure its
//! latency from that time, so a stall is charged to every request it delayed (coordinated
//! omission corrected). Records are the engine's own generated events (`events`), each stamped
//! with its due time; the lake's audit trail then gives every record's end-to-end latency, due
//! → durable in the ETL zone (`lake`). Targets (`target`): the HTTP receiver, Kinesis, files,
//! and the engine in this process. Output (`report`): a summary table, an HdrHistogram interval
//! log and an SVG plot. `capacity` steps the rate up to the highest that holds a latency SLO and
//! sizes a fleet from it.

pub mod capacity;
pub mod events;
pub mod lake;
pub mod lane;
pub mod profile;
pub mod record;
pub mod report;
pub mod run;
pub mod target;
