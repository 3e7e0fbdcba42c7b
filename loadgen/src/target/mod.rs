//! What loadgen sends to: the HTTP receiver, a Kinesis stream, files in a directory, or the
//! engine in this process. Each network or file target is a [`crate::lane::Client`]: it builds
//! one request from a slot of the schedule and sends it.

pub mod engine;
pub mod file;
pub mod http;
pub mod kinesis;
