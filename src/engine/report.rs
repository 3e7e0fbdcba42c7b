//! The end-of-run screen and the live progress line.

use crate::extract::Rule;
use crate::telemetry::{Counters, StageHistograms, StageId};
use std::io::Write;
use std::time::{Duration, Instant};

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: String,
    pub lake: String,
    /// CPUs the executors ran on.
    pub cores: Vec<usize>,
    pub partitions: usize,
    pub elapsed: Duration,
    pub counters: Counters,
    pub hist: StageHistograms,
    pub errors: Vec<String>,
    /// A store write failed: some records may not be in the lake (they were not checkpointed).
    pub fatal: bool,
    /// The run was drained by Ctrl-C / SIGTERM.
    pub interrupted: bool,
    pub latency_sample_every: u32,
    /// What start-up recovered from spill files a previous run left.
    pub recovered: crate::delivery::recover::Recovered,
    /// Requests the store's client (the S3 SDK) repeated by itself.
    pub store_sdk_retries: u64,
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn bytes_human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn micros(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us >= 100.0 {
        format!("{us:.0}")
    } else if us >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

impl RunReport {
    pub fn records_per_s(&self) -> f64 {
        self.counters.records_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Estimated total seconds spent in a stage: mean × samples, scaled up by the sampling
    /// rate for per-record stages. `write` runs on the edge thread, not on a core.
    pub fn stage_seconds(&self, st: StageId) -> f64 {
        let h = self.hist.get(st);
        let scale = if st.unit() == "record" {
            self.latency_sample_every as f64
        } else {
            1.0
        };
        h.mean() * h.len() as f64 * scale / 1e9
    }

    pub fn success(&self) -> bool {
        !self.fatal && self.errors.is_empty()
    }

    /// The one screen printed at the end of `sluicegate run`.
    pub fn render(&self) -> String {
        let c = &self.counters;
        let mut s = String::new();
        let status = match (self.fatal, self.interrupted) {
            (true, _) => "FAILED",
            (false, true) => "drained (interrupted)",
            (false, false) => "done",
        };
        s.push_str(&format!("sluicegate run {} {status}\n", self.run_id));
        s.push_str(&format!(
            "  lake        {}\n  cores       {} (CPUs {:?}), {} partitions\n",
            self.lake,
            self.cores.len(),
            self.cores,
            self.partitions
        ));
        s.push_str(&format!(
            "  records     in {}   etl {}   quarantined {}   dropped {}   already delivered {}\n",
            thousands(c.records_in),
            thousands(c.records_etl),
            thousands(c.records_quarantined),
            thousands(c.records_dropped),
            thousands(c.records_skipped)
        ));
        let zones = ["etl", "raw", "quarantine", "audit"];
        let files: Vec<String> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| format!("{z} {} ({})", c.files[i], bytes_human(c.file_bytes[i])))
            .collect();
        s.push_str(&format!("  files       {}\n", files.join("   ")));
        s.push_str(&format!(
            "  input       {}   elapsed {:.2} s   {} records/s\n",
            bytes_human(c.bytes_in),
            self.elapsed.as_secs_f64(),
            thousands(self.records_per_s() as u64)
        ));
        s.push_str(&format!(
            "  waiting     {:.2} s of task time blocked on downstream (encoder queue, full outbox and spill, memory budget)\n",
            c.backpressure_ns as f64 / 1e9
        ));
        s.push_str(&format!(
            "  buffers     peak {} in memory   spill: {} segments written, {} read back, {} files parked, peak {} on disk\n",
            bytes_human(c.memory_bytes_peak),
            thousands(c.spill_writes),
            thousands(c.spill_reads),
            thousands(c.files_parked),
            bytes_human(c.spill_bytes_peak)
        ));
        if c.store_retries > 0 || self.store_sdk_retries > 0 {
            s.push_str(&format!(
                "  store       {} file writes retried by the I/O edge   {} requests retried by the S3 SDK\n",
                thousands(c.store_retries),
                thousands(self.store_sdk_retries)
            ));
        }
        if c.source_throttles > 0 || c.source_lag_ms > 0 {
            s.push_str(&format!(
                "  source      {} throttled calls (retried)   lag {:.1} s behind the newest record at the end\n",
                thousands(c.source_throttles),
                c.source_lag_ms as f64 / 1e3
            ));
        }
        if c.requests_accepted > 0 || c.requests_refused > 0 {
            s.push_str(&format!(
                "  requests    {} accepted (durable, answered 200)   {} refused (4xx/5xx)\n",
                thousands(c.requests_accepted),
                thousands(c.requests_refused)
            ));
        }
        let r = &self.recovered;
        if r.files > 0 {
            s.push_str(&format!(
                "  recovered   {} spill files: {} records to the lake in {} files, {} left to replay, {} torn tails cut\n",
                thousands(r.files),
                thousands(r.records_flushed),
                thousands(r.lake_files),
                thousands(r.records_replayed),
                r.torn.len()
            ));
        }
        let rejected: Vec<String> = Rule::ALL
            .iter()
            .filter(|r| c.rejected_by_rule[r.index()] > 0)
            .map(|r| format!("{} {}", r.as_str(), thousands(c.rejected_by_rule[r.index()])))
            .collect();
        if !rejected.is_empty() {
            s.push_str(&format!("  quarantine  {}\n", rejected.join(", ")));
        }
        s.push_str(&format!(
            "  latency µs  {:<10} {:>9} {:>9} {:>9} {:>9} {:>11} {:>8}\n",
            "stage", "p50", "p99", "max", "mean", "samples", "core-s"
        ));
        for st in StageId::ALL {
            let h = self.hist.get(st);
            if h.is_empty() {
                continue;
            }
            s.push_str(&format!(
                "              {:<10} {:>9} {:>9} {:>9} {:>9} {:>11} {:>8.2}   per {}\n",
                st.as_str(),
                micros(h.value_at_quantile(0.5)),
                micros(h.value_at_quantile(0.99)),
                micros(h.max()),
                micros(h.mean() as u64),
                thousands(h.len()),
                self.stage_seconds(st),
                st.unit()
            ));
        }
        s.push_str(&format!(
            "              (per-record stages time 1 in {} records; core-s estimates a stage's total CPU time)\n",
            self.latency_sample_every
        ));
        for e in &self.errors {
            s.push_str(&format!("  error       {e}\n"));
        }
        s
    }
}

/// A single line redrawn in place on a terminal.
pub struct ProgressLine {
    started: Instant,
    last: (Instant, u64),
}

impl ProgressLine {
    pub fn new(started: Instant) -> ProgressLine {
        ProgressLine {
            started,
            last: (started, 0),
        }
    }

    pub fn draw(&mut self, (records, etl, quarantined, dropped): (u64, u64, u64, u64), last: bool) {
        let now = Instant::now();
        let dt = now.duration_since(self.last.0).as_secs_f64();
        if !last && dt < 0.25 {
            return;
        }
        let rate = (records.saturating_sub(self.last.1)) as f64 / dt.max(1e-9);
        self.last = (now, records);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K  {:>7.1} s  {} records  {} records/s  etl {}  quarantined {}  dropped {}",
            now.duration_since(self.started).as_secs_f64(),
            thousands(records),
            thousands(rate as u64),
            thousands(etl),
            thousands(quarantined),
            thousands(dropped)
        );
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes_human(512), "512 B");
        assert_eq!(bytes_human(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
