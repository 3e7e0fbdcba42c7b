//! One load run: deal the schedule over the lanes, drive the target, then read the lake.
//!
//! Network and file targets run their lanes as tasks on a tokio runtime of `threads` threads
//! (loadgen shares the machine with what it measures: keep it small). The engine target runs
//! sluicegate in this process (its cores are the engine's own threads) and waits for it to
//! drain. Afterwards, if a local lake is known, every accepted good record is looked up there
//! (`lake`): the engine target's lake is complete when the engine returns; for a separate
//! receiver, loadgen waits up to `settle` for the audit trail to account for them.

use crate::events::Events;
use crate::lake::{Landed, Window};
use crate::lane::{lane_slots, run_lane, Client, TokioPace};
use crate::profile::{Profile, Schedule};
use crate::record::Recorder;
use crate::target::{engine::ScheduledSource, file::FileClient, http::HttpClient, kinesis::KinesisClient};
use sluicegate::config::{Config, CoresConfig, Encryption, InProcessConfig, SourceConfig};
use sluicegate::extract::keyring::Keyring;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often loadgen looks at the audit trail while it waits for a run to land.
pub const SETTLE_POLL: Duration = Duration::from_millis(500);

/// What to send, and how fast.
#[derive(Clone)]
pub struct Spec {
    pub profile: Profile,
    pub duration: Duration,
    /// Records per request.
    pub batch: u32,
    pub lanes: u32,
    /// Width of the intervals of the log and the plot.
    pub interval: Duration,
    pub seed: u64,
    pub bad_ratio: f64,
    pub encryption: Encryption,
    pub keyring: Arc<Keyring>,
    pub key_id: String,
    /// Threads of loadgen's own runtime (network and file targets).
    pub threads: usize,
}

#[derive(Debug, Clone)]
pub enum Target {
    Http {
        url: String,
        token: Option<String>,
    },
    Kinesis {
        stream: String,
        endpoint: Option<String>,
        region: String,
    },
    File {
        dir: PathBuf,
    },
    Engine(EngineTarget),
}

#[derive(Debug, Clone)]
pub struct EngineTarget {
    /// The engine's configuration; `None`: the embedded default with an in-process source.
    pub config: Option<PathBuf>,
    pub lake: PathBuf,
    pub cores: Option<String>,
    /// Seal a buffer after this long (the embedded default's 60 s is no latency target).
    pub flush_interval_ms: u64,
    /// What the default configuration's source expects: loadgen's own `--plain` or envelopes.
    pub encryption: Encryption,
}

/// Where a separate receiver's lake is, to measure end-to-end latency.
#[derive(Debug, Clone)]
pub struct LakeWatch {
    pub dir: PathBuf,
    /// The receiver's source name (the `source=` of its files).
    pub source: String,
    /// How long to wait for the accepted records to land after the last request.
    pub settle: Duration,
}

pub struct Outcome {
    pub title: String,
    pub rec: Recorder,
    pub started: SystemTime,
    /// From the first due time to the last answer.
    pub elapsed: Duration,
    /// (records found in the lake, good records accepted), when a lake was read.
    pub landed: Option<(u64, u64)>,
    pub first_error: Option<String>,
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Http { .. } => "http",
            Target::Kinesis { .. } => "kinesis",
            Target::File { .. } => "file",
            Target::Engine(_) => "engine",
        }
    }
}

fn wall_us(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Run every lane of `make`'s clients on a tokio runtime; returns the merged recorder and the
/// first error any lane saw.
fn run_lanes<C, F>(spec: &Spec, origin: Instant, make: F) -> Result<(Recorder, Option<String>), String>
where
    C: Client + Send + 'static,
    C::Request: Send,
    F: Fn(u64) -> Result<C, String>,
{
    let rt = sluicegate::aws::runtime("loadgen", spec.threads.max(1)).map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let origin = tokio::time::Instant::from_std(origin);
    let lanes = u64::from(spec.lanes.max(1));
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let mut client = make(lane)?;
        let slots = lane_slots(Schedule::new(spec.profile, spec.duration, spec.batch), lane, lanes);
        let interval = spec.interval;
        handles.push(rt.spawn(async move {
            let mut rec = Recorder::new(interval);
            run_lane(&TokioPace { origin }, slots, &mut client, &mut rec).await;
            (rec, client.first_error())
        }));
    }
    let mut all = Recorder::new(spec.interval);
    let mut first = None;
    for h in handles {
        let (rec, err) = rt.block_on(h).map_err(|e| format!("a lane failed: {e}"))?;
        all.merge(&rec);
        first = first.or(err);
    }
    Ok((all, first))
}

/// The schedule starts this long after `run` is called, so the first requests are not late
/// by loadgen's own set-up (an engine that takes longer to start is measured as late).
const START_DELAY: Duration = Duration::from_millis(500);

pub fn run(spec: &Spec, target: &Target, watch: Option<&LakeWatch>) -> Result<Outcome, String> {
    // The same moment on both clocks: due times are offsets from `origin`, event times from
    // `started`.
    let origin = Instant::now() + START_DELAY;
    let started = SystemTime::now() + START_DELAY;
    let base_us = wall_us(started);
    let events = Arc::new(Events::new(
        spec.seed,
        spec.bad_ratio,
        spec.encryption,
        spec.keyring.clone(),
        &spec.key_id,
        base_us,
        spec.batch,
    )?);
    let title = format!(
        "loadgen: target {}, profile {}, {} s, {} lanes, {} records per request",
        target.name(),
        spec.profile,
        spec.duration.as_secs_f64(),
        spec.lanes,
        spec.batch
    );
    let (rec, first_error, lake) = match target {
        Target::Http { url, token } => {
            let (r, e) = run_lanes(spec, origin, |_| HttpClient::new(events.clone(), url, token.clone()))?;
            (r, e, watch.cloned())
        }
        Target::Kinesis {
            stream,
            endpoint,
            region,
        } => {
            if spec.batch > crate::target::kinesis::PUT_RECORDS_MAX {
                return Err(format!(
                    "--batch {}: a PutRecords call carries at most {} records",
                    spec.batch,
                    crate::target::kinesis::PUT_RECORDS_MAX
                ));
            }
            let rt = sluicegate::aws::runtime("loadgen-sdk", 1).map_err(|e| e.to_string())?;
            let sdk = sluicegate::aws::sdk_config(&rt, region, None);
            let mut conf = aws_sdk_kinesis::config::Builder::from(&sdk);
            if let Some(e) = endpoint {
                conf = conf.endpoint_url(e);
            }
            let client = aws_sdk_kinesis::Client::from_conf(conf.build());
            let (r, e) = run_lanes(spec, origin, |_| {
                Ok(KinesisClient::new(events.clone(), client.clone(), stream))
            })?;
            (r, e, watch.cloned())
        }
        Target::File { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let run = format!("{base_us:x}");
            let (r, e) = run_lanes(spec, origin, |_| Ok(FileClient::new(events.clone(), dir.clone(), &run)))?;
            (r, e, None)
        }
        Target::Engine(t) => {
            let (r, e) = run_engine(spec, t, events.clone(), origin)?;
            let watch = LakeWatch {
                dir: t.lake.clone(),
                source: crate::target::engine::SOURCE_NAME.into(),
                settle: Duration::ZERO,
            };
            (r, e, Some(watch))
        }
    };
    let elapsed = origin.elapsed();
    let mut rec = rec;
    let landed = match lake {
        Some(w) => Some(measure_lake(spec, &w, base_us, &mut rec)?),
        None => None,
    };
    Ok(Outcome {
        title,
        rec,
        started,
        elapsed,
        landed: landed.map(|l| (l.0.records, l.1)),
        first_error,
    })
}

/// Wait for the lake to account for the accepted good records (up to `settle`), then read
/// their end-to-end latencies.
fn measure_lake(spec: &Spec, w: &LakeWatch, base_us: i64, rec: &mut Recorder) -> Result<(Landed, u64), String> {
    let window = Window {
        source: w.source.clone(),
        base_us,
        from_us: base_us,
        to_us: base_us + spec.duration.as_micros() as i64,
    };
    let good = rec.totals().accepted_good;
    let deadline = Instant::now() + w.settle;
    let mut audit = crate::lake::Audit::default();
    loop {
        audit.update(&w.dir, &window)?;
        if audit.records() >= good || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(SETTLE_POLL);
    }
    let landed = crate::lake::measure(&w.dir, &window, &mut audit, rec)?;
    Ok((landed, good))
}

/// The engine's configuration for a load run: the given file (whose `loadgen` source must be
/// `in_process`), or the embedded default reading from loadgen instead of its generator.
pub fn engine_config(t: &EngineTarget) -> Result<Config, String> {
    let mut cfg = match &t.config {
        Some(path) => Config::load(path).map_err(|e| format!("{}:\n{e}", path.display()))?,
        None => {
            let mut c = Config::embedded_default(0, &t.lake);
            c.sources = vec![SourceConfig {
                name: crate::target::engine::SOURCE_NAME.into(),
                encryption: t.encryption,
                table: Some("events".into()),
                route: None,
                batch_records: sluicegate::config::DEFAULT_BATCH_RECORDS,
                generator: None,
                file: None,
                kinesis: None,
                http: None,
                in_process: Some(InProcessConfig {}),
                push: None,
            }];
            c.buffer.flush_interval_ms = t.flush_interval_ms;
            c.raw.segment_interval_ms = t.flush_interval_ms;
            c.quarantine.interval_ms = t.flush_interval_ms;
            c.audit.interval_ms = t.flush_interval_ms;
            c
        }
    };
    if let Some(cores) = &t.cores {
        cfg.runtime.cores = parse_cores(cores)?;
    }
    Ok(cfg)
}

/// `all` or a comma-separated list of CPU numbers.
pub fn parse_cores(text: &str) -> Result<CoresConfig, String> {
    if text == "all" {
        return Ok(CoresConfig::Named("all".into()));
    }
    text.split(',')
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| format!("--cores {text:?}: {c:?} is not a CPU number"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(CoresConfig::List)
}

fn run_engine(
    spec: &Spec,
    t: &EngineTarget,
    events: Arc<Events>,
    origin: Instant,
) -> Result<(Recorder, Option<String>), String> {
    let cfg = engine_config(t)?;
    let source = Arc::new(ScheduledSource::new(
        events,
        Schedule::new(spec.profile, spec.duration, spec.batch),
        u64::from(spec.lanes.max(1)),
        origin,
        spec.interval,
    ));
    let engine = sluicegate::Engine::builder(cfg)
        .in_process_source(crate::target::engine::SOURCE_NAME, source.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let report = engine.run().map_err(|e| e.to_string())?;
    let first_error = report.errors.first().cloned();
    if report.fatal {
        return Err(format!("the engine failed: {}", report.errors.join("; ")));
    }
    Ok((source.recorded(spec.interval), first_error))
}
