//! The `sluicegate` command line: run, validate, and the tools to make real input
//! (keygen, encrypt, generate).

use clap::{Parser, Subcommand};
use sluicegate::config::{Config, Encryption, GeneratorConfig, DEFAULT_GENERATOR_RECORDS, DEFAULT_LAKE_DIR};
use sluicegate::extract::{envelope, keyring};
use sluicegate::source::framing;
use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sluicegate",
    version,
    about = "Streaming records into a partitioned Parquet lake, thread-per-core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Structured logs on standard error: sluicegate's events at `level`, the libraries' (the AWS
/// SDK's, hyper's) at warn and above.
fn init_logs(format: LogFormat, level: tracing::Level) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("sluicegate", level)
        .with_default(tracing::Level::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry().with(layer.with_filter(filter)).init();
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline. Without --config: the embedded default (a generator of encrypted
    /// events, 1% bad, into ./lake).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Records per generator source (overrides the config's `records`).
        #[arg(long)]
        records: Option<u64>,
        /// Local lake directory (overrides `lake.dir`).
        #[arg(long)]
        lake: Option<PathBuf>,
        /// Never draw the progress line.
        #[arg(long)]
        no_progress: bool,
        /// Log lines on standard error: `text` (timestamp, level, message, key=value fields)
        /// or `json` (one object per line).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Least severe level logged: error, warn, info, debug or trace.
        #[arg(long, default_value = "info")]
        log_level: tracing::Level,
    },
    /// Inspect or salvage the HTTP receiver's inboxes (its write-ahead logs under `state.dir`).
    Inbox {
        #[command(subcommand)]
        action: InboxAction,
    },
    /// Check a configuration file, its schemas and transforms, without running.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Add a new random AES-256 key to a keyring file (created 0600 if missing).
    Keygen {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Encrypt an NDJSON file into envelope framing (SGF1), one envelope per line.
    Encrypt {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Write generated events to a file: envelope framing with the demo key (or --keys and
    /// --key-id), or plain NDJSON with --ndjson.
    Generate {
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = DEFAULT_GENERATOR_RECORDS)]
        records: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 0.01)]
        bad_ratio: f64,
        /// RFC 3339 base of event times (default: now).
        #[arg(long)]
        start_time: Option<String>,
        #[arg(long)]
        ndjson: bool,
        #[arg(long)]
        keys: Option<PathBuf>,
        #[arg(long)]
        key_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum InboxAction {
    /// Check every frame of every inbox segment under PATH (a `state.dir`, a source's inbox
    /// directory, or one inbox): exit 0 when none is corrupt, 1 when one is.
    Check { path: PathBuf },
    /// Make a corrupt segment readable again: its corrupt frames are listed in a side file and
    /// their bytes go to the quarantine when read; a frame whose length cannot be trusted ends
    /// the segment, the bytes from it on copied aside first. Nothing is deleted. Without
    /// --apply, only says what it would do. Run it with the process stopped.
    Salvage {
        segment: PathBuf,
        #[arg(long)]
        apply: bool,
    },
}

/// How often the SIGHUP flag is looked at: a reload follows the signal within this.
const SIGHUP_POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            config,
            records,
            lake,
            no_progress,
            log_format,
            log_level,
        } => {
            init_logs(log_format, log_level);
            run(config, records, lake, no_progress)
        }
        Command::Inbox { action } => inbox(action),
        Command::Validate { config } => validate(&config),
        Command::Keygen { keys, id } => result(keygen(&keys, &id)),
        Command::Encrypt {
            keys,
            key_id,
            input,
            output,
        } => result(encrypt(&keys, &key_id, &input, &output)),
        Command::Generate {
            output,
            records,
            seed,
            bad_ratio,
            start_time,
            ndjson,
            keys,
            key_id,
        } => {
            let cfg = GeneratorConfig {
                partitions: 1,
                records,
                seed,
                bad_ratio,
                start_time,
                key_id: key_id.unwrap_or_else(|| keyring::DEMO_KEY_ID.into()),
                ..GeneratorConfig::default()
            };
            result(generate(&output, &cfg, ndjson, keys.as_deref()))
        }
    }
}

fn result(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Option<PathBuf>, records: Option<u64>, lake: Option<PathBuf>, no_progress: bool) -> ExitCode {
    let mut cfg = match &config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {}:\n{e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Config::embedded_default(
            records.unwrap_or(DEFAULT_GENERATOR_RECORDS),
            lake.as_deref().unwrap_or(Path::new(DEFAULT_LAKE_DIR)),
        ),
    };
    if let Some(n) = records {
        for s in &mut cfg.sources {
            if let Some(g) = s.generator.as_mut() {
                g.records = n;
            }
        }
    }
    if let Some(dir) = lake {
        cfg.lake.dir = dir;
    }

    // First Ctrl-C (or SIGTERM) drains; a second Ctrl-C exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let hooked = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = hooked {
            eprintln!("error: cannot install the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    // SIGHUP reloads the TLS certificates (and nothing else: it no longer ends the process).
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        eprintln!("error: cannot install the SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    std::thread::Builder::new()
        .name("sluicegate-sighup".into())
        .spawn(move || loop {
            std::thread::sleep(SIGHUP_POLL);
            if hup.swap(false, std::sync::atomic::Ordering::Relaxed) {
                sluicegate::tls::reload_all();
            }
        })
        .expect("a thread for SIGHUP");
    let progress = !no_progress && cfg.telemetry.progress && std::io::stderr().is_terminal();
    if let Some(s) = cfg.sources.iter().find(|s| s.push.is_some()) {
        eprintln!(
            "error: source {:?} is a push source: only a program that embeds the engine can push \
             (Engine::push_handle, examples/embed.rs); the sluicegate binary has no producer",
            s.name
        );
        return ExitCode::from(2);
    }
    let engine = match sluicegate::Engine::builder(cfg)
        .stop_flag(stop)
        .progress(progress)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match engine.run() {
        Ok(report) => {
            print!("{}", report.render());
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inbox(action: InboxAction) -> ExitCode {
    use sluicegate::source::http::inbox;
    match action {
        InboxAction::Check { path } => match inbox::check(&path) {
            Ok((report, corrupt)) => {
                print!("{report}");
                ExitCode::from(u8::from(corrupt))
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        InboxAction::Salvage { segment, apply } => result(inbox::salvage(&segment, apply).map(|done| {
            let verb = if apply { "" } else { "would be " };
            for off in &done.listed {
                println!("frame at byte {off}: {verb}listed in {} (its bytes go to the quarantine)", inbox::salvage_path(&segment).display());
            }
            if let Some((off, aside)) = &done.cut {
                println!("frame at byte {off}: its length cannot be trusted; the segment {verb}ends there, the bytes from it on {verb}copied to {}", aside.display());
            }
            if done.listed.is_empty() && done.cut.is_none() {
                println!("{}: nothing to salvage", segment.display());
            }
        })),
    }
}

fn validate(path: &Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid\n{e}", path.display());
            return ExitCode::from(2);
        }
    };
    match validate_deep(&cfg) {
        Ok(notes) => {
            println!("{}: valid", path.display());
            for n in notes {
                println!("  {n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid\n{e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// Everything `run` checks before it starts, without writing anything.
fn validate_deep(cfg: &Config) -> Result<Vec<String>, String> {
    use sluicegate::engine;
    let keyring = engine::load_keyring(cfg).map_err(|e| e.to_string())?;
    let mut notes = vec![format!("keyring: {} key(s) {:?}", keyring.len(), keyring.ids())];
    notes.extend(
        engine::keyring_warnings(cfg)
            .into_iter()
            .map(|w| format!("warning: {w}")),
    );
    for t in &cfg.tables {
        match engine::schema_file(t).map_err(|e| e.to_string())? {
            Some(f) => {
                let plan = engine::compile_table(cfg, t, &f, 0, &keyring).map_err(|e| e.to_string())?;
                notes.push(format!(
                    "table {}: {} input columns, {} output columns",
                    t.name,
                    plan.schema.columns.len(),
                    plan.transforms.outputs.len()
                ));
            }
            None => notes.push(format!(
                "table {}: schema inferred from the first records at run time",
                t.name
            )),
        }
    }
    let keyring = Arc::new(keyring);
    let cores = sluicegate::runtime::resolve_cores(&cfg.runtime.cores)?.len();
    let clock: Arc<dyn sluicegate::clock::Clock> = Arc::new(sluicegate::clock::SystemClock);
    let mut built = cfg.clone();
    built.sources.retain(|s| {
        if s.in_process.is_some() {
            notes.push(format!(
                "source {}: in_process (its records come from the embedding program)",
                s.name
            ));
        }
        if s.push.is_some() {
            notes.push(format!(
                "source {}: push (the embedding program pushes its records)",
                s.name
            ));
        }
        s.in_process.is_none() && s.push.is_none()
    });
    let none = Default::default();
    for s in engine::build_sources(&built, &keyring, &clock, None, cores, &none).map_err(|e| e.to_string())? {
        let parts = s.partitions().map_err(|e| e.to_string())?;
        notes.push(format!("source {}: {} partition(s)", s.name(), parts.len()));
    }
    Ok(notes)
}

fn keygen(keys: &Path, id: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut existing = keyring::Keyring::default();
    if keys.exists() {
        existing.load_file(keys, true).map_err(|e| e.to_string())?;
        if existing.get(id.as_bytes()).is_some() {
            return Err(format!("key id {id:?} is already in {}", keys.display()));
        }
    }
    let entry = keyring::generate_entry(id).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(keys)
        .map_err(|e| format!("cannot open {}: {e}", keys.display()))?;
    writeln!(f, "{entry}").map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    println!("added key {id:?} to {}", keys.display());
    Ok(())
}

fn encrypt(keys: &Path, key_id: &str, input: &Path, output: &Path) -> Result<(), String> {
    let mut ring = keyring::Keyring::default();
    ring.load_file(keys, true).map_err(|e| e.to_string())?;
    let key = ring
        .get(key_id.as_bytes())
        .ok_or_else(|| format!("key id {key_id:?} is not in {}", keys.display()))?;
    let rng = ring::rand::SystemRandom::new();
    let reader = std::io::BufReader::new(std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?);
    let mut out = BufWriter::new(std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?);
    out.write_all(framing::MAGIC).map_err(|e| e.to_string())?;
    let (mut n, mut env) = (0u64, Vec::new());
    for (i, line) in reader.split(b'\n').enumerate() {
        let mut line = line.map_err(|e| format!("{}: {e}", input.display()))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > sluicegate::extract::RECORD_BYTES_MAX {
            return Err(format!("line {} is longer than the 1 MiB record limit", i + 1));
        }
        let mut nonce = [0u8; 12];
        ring::rand::SecureRandom::fill(&rng, &mut nonce).map_err(|_| "the system random source failed")?;
        env.clear();
        envelope::seal(key_id, key.aead(), nonce, &line, &mut env);
        framing::write_frame(&mut out, &env).map_err(|e| e.to_string())?;
        n += 1;
    }
    out.into_inner()
        .map_err(|e| e.to_string())?
        .sync_all()
        .map_err(|e| e.to_string())?;
    println!("encrypted {n} records with key {key_id:?} into {}", output.display());
    Ok(())
}

fn generate(output: &Path, cfg: &GeneratorConfig, ndjson: bool, keys: Option<&Path>) -> Result<(), String> {
    use sluicegate::clock::{Clock, SystemClock};
    use sluicegate::source::generator::GeneratorSource;
    let mut ring = keyring::Keyring::default();
    match keys {
        Some(k) => ring.load_file(k, true).map_err(|e| e.to_string())?,
        None => ring.insert_demo().map_err(|e| e.to_string())?,
    }
    let encryption = if ndjson { Encryption::None } else { Encryption::Envelope };
    let src = GeneratorSource::try_new("generate", cfg, encryption, Arc::new(ring), SystemClock.now_us())
        .map_err(|e| e.to_string())?;
    let mut out = BufWriter::new(std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?);
    if !ndjson {
        out.write_all(framing::MAGIC).map_err(|e| e.to_string())?;
    }
    let mut bytes = 0u64;
    for seq in 0..cfg.records {
        let (payload, _, _) = src.record(0, seq);
        bytes += payload.len() as u64;
        let w = if ndjson {
            out.write_all(&payload).and_then(|_| out.write_all(b"\n"))
        } else {
            framing::write_frame(&mut out, &payload)
        };
        w.map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    println!(
        "wrote {} records ({} bytes of payload, {:.0} bytes/record) to {}",
        cfg.records,
        bytes,
        bytes as f64 / cfg.records.max(1) as f64,
        output.display()
    );
    Ok(())
}

// A thread-caching allocator: cores allocate and free large column buffers at every seal, and
// glibc's malloc returned them to the kernel each time (8% of CPU went to page faults).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
