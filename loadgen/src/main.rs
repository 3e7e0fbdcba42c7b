//! The `loadgen` command line: `loadgen run` (one load run) and `loadgen capacity` (the
//! highest rate under a latency SLO, and a fleet plan). See the README's "loadgen" section.

use clap::{Args, Parser, Subcommand, ValueEnum};
use loadgen::capacity::{self, Sizing, Step};
use loadgen::profile::Profile;
use loadgen::report;
use loadgen::run::{self, EngineTarget, LakeWatch, Outcome, Spec, Target};
use sluicegate::config::Encryption;
use sluicegate::extract::keyring::Keyring;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Open-loop load generator and capacity planner for sluicegate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offer load on a schedule and report latency percentiles, an interval log and a plot.
    Run {
        #[command(flatten)]
        load: LoadArgs,
        /// Profile: constant:RATE, ramp:FROM:TO, burst:BASE:PEAK:EVERY_S:LEN_S, diurnal:MIN:MAX:PERIOD_S.
        #[arg(long, default_value = "constant:20000")]
        profile: String,
        /// Length of the run (e.g. 30s, 2m, or seconds).
        #[arg(long, default_value = "30s")]
        duration: String,
    },
    /// Step the rate up to the highest this machine sustains under the SLO; size a fleet.
    Capacity {
        #[command(flatten)]
        load: LoadArgs,
        /// End-to-end p99 (due → durable in the lake) a step must hold, in milliseconds.
        #[arg(long, default_value_t = 2000.0)]
        slo_p99_ms: f64,
        /// First step's rate (records/s).
        #[arg(long, default_value_t = 20_000.0)]
        start: f64,
        /// Each passing step multiplies the rate by this.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        /// Highest rate to try (records/s).
        #[arg(long, default_value_t = 5_000_000.0)]
        max_rate: f64,
        /// Bisection steps between the last pass and the first failure.
        #[arg(long, default_value_t = 2)]
        refine: u32,
        /// Length of each step.
        #[arg(long, default_value = "20s")]
        step: String,
        /// Requests per day to plan for.
        #[arg(long, default_value_t = 10e9)]
        daily: f64,
        /// Peak rate as a multiple of the day's mean.
        #[arg(long, default_value_t = 3.0)]
        peak_factor: f64,
        /// vCPUs per instance not counted for the pipeline.
        #[arg(long, default_value_t = 1)]
        reserve: u32,
        /// Share of the measured per-core rate a core is planned to run at.
        #[arg(long, default_value_t = 0.7)]
        utilization: f64,
        /// Cores of the system under test (the engine target knows its own).
        #[arg(long)]
        server_cores: Option<u32>,
        /// Keep each engine step's lake (`<lake>/step-NN`) instead of deleting it once measured.
        #[arg(long)]
        keep_lakes: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    Engine,
    Http,
    Kinesis,
    File,
}

#[derive(Args)]
struct LoadArgs {
    /// What to send to.
    #[arg(long, value_enum, default_value = "engine")]
    target: TargetKind,
    /// Records per request (HTTP body, PutRecords call, file).
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Concurrent lanes (connections; partitions of the in-process source).
    #[arg(long, default_value_t = 8)]
    lanes: u32,
    /// Threads of loadgen's own runtime (network and file targets).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Width of the log's and plot's intervals, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Seed of the events (default: a fresh one per run; see the README).
    #[arg(long)]
    seed: Option<u64>,
    /// Share of bad records of every kind.
    #[arg(long, default_value_t = 0.01)]
    bad_ratio: f64,
    /// Send plaintext NDJSON instead of envelopes.
    #[arg(long)]
    plain: bool,
    /// Keyring file (default: the built-in demo key).
    #[arg(long)]
    keys: Option<PathBuf>,
    #[arg(long, default_value = "demo")]
    key_id: String,
    /// Where to write summary.txt, latency.hlog and latency.svg.
    #[arg(long, default_value = "loadgen-report")]
    out: PathBuf,

    /// http: the receiver's URL, e.g. http://127.0.0.1:8080/ingest
    #[arg(long)]
    url: Option<String>,
    /// http: environment variable holding the bearer token.
    #[arg(long)]
    token_env: Option<String>,
    /// kinesis: stream name.
    #[arg(long)]
    stream: Option<String>,
    /// kinesis: endpoint URL (an emulator).
    #[arg(long)]
    endpoint: Option<String>,
    /// kinesis: region (default: the provider chain's, else us-east-1).
    #[arg(long, default_value = "")]
    region: String,
    /// file: directory to write files into.
    #[arg(long)]
    dir: Option<PathBuf>,

    /// The lake: where the engine target writes; for http and kinesis, the receiving
    /// sluicegate's local lake, read for end-to-end latency.
    #[arg(long)]
    lake: Option<PathBuf>,
    /// http/kinesis with --lake: the receiving sluicegate's source name.
    #[arg(long)]
    source: Option<String>,
    /// http/kinesis with --lake: how long to wait for accepted records to land.
    #[arg(long, default_value = "120s")]
    settle: String,
    /// engine: a configuration file whose source `loadgen` is `[sources.in_process]`
    /// (default: the embedded default fed by loadgen).
    #[arg(long)]
    config: Option<PathBuf>,
    /// engine: cores (`all` or a list like 0,1).
    #[arg(long)]
    cores: Option<String>,
    /// engine (default configuration): seal buffers after this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    flush_interval_ms: u64,
}

fn duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{text:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

impl LoadArgs {
    fn encryption(&self) -> Encryption {
        if self.plain {
            Encryption::None
        } else {
            Encryption::Envelope
        }
    }

    fn spec(&self, profile: Profile, duration: Duration) -> Result<Spec, String> {
        let mut keyring = Keyring::default();
        match &self.keys {
            Some(k) => keyring.load_file(k, true).map_err(|e| e.to_string())?,
            None => keyring.insert_demo().map_err(|e| e.to_string())?,
        }
        if !(0.0..=1.0).contains(&self.bad_ratio) {
            return Err(format!("--bad-ratio {}: must be between 0 and 1", self.bad_ratio));
        }
        if self.batch == 0 || self.lanes == 0 || self.interval_ms == 0 {
            return Err("--batch, --lanes and --interval-ms must be at least 1".into());
        }
        Ok(Spec {
            profile,
            duration,
            batch: self.batch,
            lanes: self.lanes,
            interval: Duration::from_millis(self.interval_ms),
            seed: self.seed.unwrap_or_else(random_seed),
            bad_ratio: self.bad_ratio,
            encryption: self.encryption(),
            keyring: Arc::new(keyring),
            key_id: self.key_id.clone(),
            threads: self.threads,
        })
    }

    /// The target; for the engine, `lake` (a step's own directory in `capacity`).
    fn target(&self, lake: Option<&Path>) -> Result<Target, String> {
        let need = |v: &Option<String>, flag: &str| v.clone().ok_or_else(|| format!("this target needs {flag}"));
        Ok(match self.target {
            TargetKind::Http => Target::Http {
                url: need(&self.url, "--url")?,
                token: match &self.token_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| format!("--token-env {var}: not set"))?),
                    None => None,
                },
            },
            TargetKind::Kinesis => Target::Kinesis {
                stream: need(&self.stream, "--stream")?,
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
            },
            TargetKind::File => Target::File {
                dir: self.dir.clone().ok_or("the file target needs --dir")?,
            },
            TargetKind::Engine => Target::Engine(EngineTarget {
                config: self.config.clone(),
                lake: lake
                    .map(Path::to_path_buf)
                    .or_else(|| self.lake.clone())
                    .unwrap_or_else(|| PathBuf::from("loadgen-lake")),
                cores: self.cores.clone(),
                flush_interval_ms: self.flush_interval_ms,
                encryption: self.encryption(),
            }),
        })
    }

    fn watch(&self) -> Result<Option<LakeWatch>, String> {
        if matches!(self.target, TargetKind::Engine | TargetKind::File) {
            return Ok(None);
        }
        match (&self.lake, &self.source) {
            (Some(dir), Some(source)) => Ok(Some(LakeWatch {
                dir: dir.clone(),
                source: source.clone(),
                settle: duration(&self.settle)?,
            })),
            (None, None) => Ok(None),
            _ => Err("--lake and --source go together (the receiving sluicegate's lake and source name)".into()),
        }
    }
}

fn write_outputs(out: &Path, o: &Outcome, summary: &str) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let w = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{}: {e}", out.join(name).display()))
    };
    w("summary.txt", summary)?;
    w("latency.hlog", &report::interval_log(&o.rec, o.started))?;
    w("latency.svg", &report::plot(&o.title, &o.rec))
}

fn summarize(o: &Outcome) -> String {
    let mut s = report::summary(&o.title, &o.rec, o.elapsed, o.landed);
    if let Some(e) = &o.first_error {
        s.push_str(&format!("first error: {e}\n"));
    }
    s
}

fn main_run(load: &LoadArgs, profile: &str, length: &str) -> Result<bool, String> {
    let spec = load.spec(Profile::parse(profile)?, duration(length)?)?;
    let o = run::run(&spec, &load.target(None)?, load.watch()?.as_ref())?;
    let s = summarize(&o);
    print!("{s}");
    write_outputs(&load.out, &o, &s)?;
    println!("wrote {}/{{summary.txt,latency.hlog,latency.svg}}", load.out.display());
    Ok(o.landed.is_none_or(|(l, g)| l == g))
}

#[allow(clippy::too_many_arguments)]
fn main_capacity(
    load: &LoadArgs,
    slo_p99_ms: f64,
    start: f64,
    factor: f64,
    max_rate: f64,
    refine: u32,
    step: &str,
    sizing: (f64, f64, u32, f64),
    server_cores: Option<u32>,
    keep_lakes: bool,
) -> Result<bool, String> {
    if factor <= 1.0 {
        return Err(format!("--factor {factor}: must be above 1"));
    }
    let length = duration(step)?;
    let cores = match (load.target, server_cores) {
        (_, Some(c)) => c as usize,
        (TargetKind::Engine, None) => {
            let cfg = run::engine_config(&match load.target(None)? {
                Target::Engine(t) => t,
                _ => unreachable!("engine target"),
            })?;
            sluicegate::runtime::resolve_cores(&cfg.runtime.cores)?.len()
        }
        _ => return Err("--server-cores: how many cores the receiving sluicegate runs on".into()),
    };
    let root = load.lake.clone().unwrap_or_else(|| PathBuf::from("loadgen-lake"));
    let mut n = 0;
    let (steps, best) = capacity::search(start, factor, max_rate, refine, slo_p99_ms, |rate| {
        n += 1;
        let spec = load.spec(Profile::Constant { rate }, length)?;
        let lake = root.join(format!("step-{n:02}"));
        let o = run::run(&spec, &load.target(Some(&lake))?, load.watch()?.as_ref())?;
        let s = summarize(&o);
        write_outputs(&load.out.join(format!("step-{n:02}")), &o, &s)?;
        // A step's lake holds every record of the step (RAW included): gigabytes at high rates.
        if load.target == TargetKind::Engine && !keep_lakes {
            std::fs::remove_dir_all(&lake).map_err(|e| format!("{}: {e}", lake.display()))?;
        }
        let offered = (rate * length.as_secs_f64()).max(1.0);
        let e2e = o.rec.e2e_histogram();
        let step = Step {
            rate,
            p99_ms: if e2e.is_empty() {
                f64::INFINITY
            } else {
                e2e.value_at_quantile(0.99) as f64 / 1000.0
            },
            accepted_share: o.rec.totals().accepted as f64 / offered,
            landed_all: o.landed.is_some_and(|(l, g)| l == g),
        };
        println!(
            "step {n}: {rate:.0} records/s: e2e p99 {:.0} ms, accepted {:.2}%, all landed {}: {}",
            step.p99_ms,
            step.accepted_share * 100.0,
            step.landed_all,
            if step.passes(slo_p99_ms) { "pass" } else { "FAIL" }
        );
        Ok(step)
    })?;
    let Some(best) = best else {
        println!("no step held the SLO (p99 ≤ {slo_p99_ms} ms); start lower with --start");
        return Ok(false);
    };
    let (daily, peak_factor, reserve, utilization) = sizing;
    let plan = Sizing {
        per_core: best / cores as f64,
        daily,
        peak_factor,
        reserve,
        utilization,
    };
    let measured = format!(
        "{best:.0} records/s on {cores} core(s) ({} steps, e2e p99 ≤ {slo_p99_ms} ms, {} s each), {}",
        steps.len(),
        length.as_secs_f64(),
        cpu_model()
    );
    let text = plan.render(&measured);
    print!("{text}");
    std::fs::create_dir_all(&load.out).map_err(|e| e.to_string())?;
    std::fs::write(load.out.join("capacity.txt"), &text).map_err(|e| e.to_string())?;
    Ok(true)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() -> ExitCode {
    // The in-process engine's warnings and errors (store retries, a failing core) on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run {
            load,
            profile,
            duration,
        } => main_run(load, profile, duration),
        Command::Capacity {
            load,
            slo_p99_ms,
            start,
            factor,
            max_rate,
            refine,
            step,
            daily,
            peak_factor,
            reserve,
            utilization,
            server_cores,
            keep_lakes,
        } => main_capacity(
            load,
            *slo_p99_ms,
            *start,
            *factor,
            *max_rate,
            *refine,
            step,
            (*daily, *peak_factor, *reserve, *utilization),
            *server_cores,
            *keep_lakes,
        ),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
