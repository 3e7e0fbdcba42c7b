//! loadgen against real targets: the `loadgen` binary driving the engine in its own process
//! (summary, an interval log read back by HdrHistogram_py, the plot, `capacity`); the library
//! driving the real HTTP receiver over TCP and a Kinesis stream on moto's server, with a
//! sluicegate engine receiving; and the file target's files read by the `file` source. In every
//! case each accepted good record is found in the lake with its end-to-end latency.

use loadgen::profile::Profile;
use loadgen::run::{run, LakeWatch, Outcome, Spec, Target};
use sluicegate::config::{Config, Encryption};
use sluicegate::extract::keyring::Keyring;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn spec(profile: &str, secs: u64, batch: u32) -> Spec {
    let mut k = Keyring::default();
    k.insert_demo().unwrap();
    Spec {
        profile: Profile::parse(profile).unwrap(),
        duration: Duration::from_secs(secs),
        batch,
        lanes: 4,
        interval: Duration::from_millis(500),
        seed: 11,
        bad_ratio: 0.05,
        encryption: Encryption::Envelope,
        keyring: Arc::new(k),
        key_id: "demo".into(),
        threads: 1,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sluicegate engine on its own threads, drained when dropped.
struct Receiver {
    stop: Arc<AtomicBool>,
    run: Option<std::thread::JoinHandle<sluicegate::engine::report::RunReport>>,
}

impl Receiver {
    fn start(toml: &str, dir: &Path) -> Receiver {
        let cfg = Config::from_toml(toml, dir).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let engine = sluicegate::Engine::builder(cfg)
            .stop_flag(stop.clone())
            .build()
            .unwrap();
        Receiver {
            stop,
            run: Some(std::thread::spawn(move || engine.run().unwrap())),
        }
    }

    fn stop(mut self) -> sluicegate::engine::report::RunReport {
        self.stop.store(true, Ordering::SeqCst);
        self.run.take().unwrap().join().unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Lake, audit and buffers tuned for latency: sealed and audited every half second.
const FAST: &str = r#"
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"

[buffer]
flush_interval_ms = 500
[raw]
segment_interval_ms = 500
[quarantine]
interval_ms = 500
[audit]
interval_ms = 500
[runtime]
cores = [0]
"#;

/// Every record offered was accepted, every accepted good record landed, each with an
/// end-to-end latency.
fn assert_all_landed(o: &Outcome, offered: u64) {
    let t = o.rec.totals();
    assert_eq!(t.errors, 0, "{:?}", o.first_error);
    assert_eq!(t.accepted, offered);
    let (landed, good) = o.landed.expect("a lake was read");
    assert!(good > offered * 8 / 10, "5% bad: {good} of {offered}");
    assert_eq!(landed, good);
    assert_eq!(o.rec.e2e_histogram().len(), good);
    // Sealed every 0.5 s: a record waits at least until its buffer is sealed and written.
    assert!(
        o.rec.e2e_histogram().min() >= 1_000,
        "{} µs",
        o.rec.e2e_histogram().min()
    );
}

#[test]
fn http_target_every_accepted_record_lands() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = format!(
        r#"
[state]
dir = "state"
[lake]
dir = "lake"
[keys]
demo = true
[[sources]]
name = "edge"
table = "events"
encryption = "envelope"
[sources.http]
listen = "127.0.0.1:{port}"
{FAST}"#
    );
    let receiver = Receiver::start(&toml, dir.path());
    wait_for("the receiver", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let target = Target::Http {
        url: format!("http://127.0.0.1:{port}/records"),
        token: None,
    };
    let watch = LakeWatch {
        dir: dir.path().join("lake"),
        source: "edge".into(),
        settle: Duration::from_secs(60),
    };
    let o = run(&spec("constant:2000", 3, 100), &target, Some(&watch)).unwrap();
    receiver.stop();
    assert_all_landed(&o, 6_000);
    // Answers came back on time: the receiver kept up with 20 requests/s.
    assert!(o.rec.request_histogram().value_at_quantile(0.5) < 1_000_000);
}

#[test]
fn kinesis_target_every_accepted_record_lands() {
    // moto takes any credentials; the SDK needs some.
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let port = free_port();
    let mut moto = Kill(
        Command::new("python3")
            .arg(repo().join("tests/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tests/moto_server.py: pip install 'moto[server]' awscrt crc32c (tests/run does)"),
    );
    wait_for("moto", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let made = Command::new("python3")
        .arg(repo().join("tests/kinesis_put.py"))
        .args(["create", "--stream", "load", "--shards", "2", "--endpoint", &endpoint])
        .status()
        .unwrap();
    assert!(made.success());
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[state]
dir = "state"
[lake]
dir = "lake"
[keys]
demo = true
[[sources]]
name = "stream"
table = "events"
[sources.kinesis]
stream = "load"
endpoint = "{endpoint}"
idle_ms = 100
{FAST}"#
    );
    let receiver = Receiver::start(&toml, dir.path());
    let target = Target::Kinesis {
        stream: "load".into(),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
    };
    let watch = LakeWatch {
        dir: dir.path().join("lake"),
        source: "stream".into(),
        settle: Duration::from_secs(90),
    };
    let o = run(&spec("ramp:200:1000", 3, 50), &target, Some(&watch)).unwrap();
    receiver.stop();
    let _ = moto.0.kill();
    // ramp 200 → 1000 over 3 s: 1,800 records, in requests of 50.
    let offered = o.rec.totals().requests * 50;
    assert!((1_700..=1_900).contains(&offered), "{offered}");
    assert_all_landed(&o, offered);
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn file_target_writes_what_the_file_source_reads() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("in");
    let o = run(
        &spec("constant:1000", 2, 100),
        &Target::File { dir: files.clone() },
        None,
    )
    .unwrap();
    let t = o.rec.totals();
    assert_eq!((t.accepted, t.errors), (2_000, 0));
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 20, "one file per request");
    let toml = format!(
        r#"
[lake]
dir = "lake"
[keys]
demo = true
[[sources]]
name = "files"
table = "events"
[sources.file]
paths = ["in"]
{FAST}"#
    );
    let mut files_run = Receiver::start(&toml, dir.path());
    let report = files_run.run.take().unwrap().join().unwrap();
    assert_eq!(report.counters.records_in, 2_000);
    assert_eq!(report.counters.records_etl, t.accepted_good);
}

/// The `loadgen` binary against the engine in process on CPU 0, with 50-record requests and
/// buffers sealed every 0.5 s, writing its lake and reports under `lake` and `out`.
fn loadgen(args: &[&str], lake: &Path, out: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args([
            "--target",
            "engine",
            "--batch",
            "50",
            "--cores",
            "0",
            "--flush-interval-ms",
            "500",
        ])
        .arg("--lake")
        .arg(lake)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_cli_runs_the_engine_in_process_and_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, out) = (dir.path().join("lake"), dir.path().join("out"));
    let (ok, text) = loadgen(
        // Plaintext NDJSON records: the default configuration's source expects them then.
        &[
            "run",
            "--plain",
            "--profile",
            "burst:500:3000:2:0.5",
            "--duration",
            "4s",
        ],
        &lake,
        &out,
    );
    assert!(ok, "{text}");
    // 2 bursts of 0.5 s at 3000/s, 3 s at 500/s: 4,500 records.
    assert!(text.contains("records accepted 4500 "), "{text}");
    let landed = text
        .lines()
        .find(|l| l.starts_with("landed in the lake:"))
        .unwrap_or_else(|| panic!("{text}"));
    let n: Vec<u64> = landed.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(n[0], n[1], "{landed}");
    assert!(n[0] > 4_000, "{landed}");
    // The interval log, read by the reference reader (HdrHistogram_py).
    let script = r#"
import sys
from hdrh.log import HistogramLogReader
from hdrh.histogram import HdrHistogram
r = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 1000 * 1000, 3))
total = 0
while True:
    h = r.get_next_interval_histogram()
    if h is None:
        break
    total += h.get_total_count()
print(total)
"#;
    let py = Command::new("python3")
        .args(["-c", script, out.join("latency.hlog").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let counted: u64 = String::from_utf8_lossy(&py.stdout).trim().parse().unwrap();
    // Every e2e sample and every request (fetch) sample, over all intervals.
    assert!(counted > n[0], "{counted} samples in the log");
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(svg.contains("e2e p99") && svg.matches("<polyline").count() >= 5);
}

#[test]
fn capacity_steps_up_and_sizes_a_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, out) = (dir.path().join("lake"), dir.path().join("out"));
    let (ok, text) = loadgen(
        &[
            "capacity",
            "--start",
            "500",
            "--factor",
            "2",
            "--max-rate",
            "1000",
            "--step",
            "2s",
            "--slo-p99-ms",
            "30000",
        ],
        &lake,
        &out,
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("step 1: 500 records/s") && text.contains("step 2: 1000 records/s"),
        "{text}"
    );
    assert!(
        text.contains("per-core throughput under the SLO: 1000 records/s"),
        "{text}"
    );
    assert!(text.contains("c7i.4xlarge"), "{text}");
    // 10e9/day, peak 3x = 347,222/s at 700/s per core: 497 cores.
    assert!(text.contains("cores needed at peak: 497"), "{text}");
    // An SLO no step can hold is reported, with a non-zero exit.
    let (ok, text) = loadgen(
        &["capacity", "--start", "500", "--step", "1s", "--slo-p99-ms", "1"],
        &lake,
        &out,
    );
    assert!(!ok && text.contains("no step held the SLO"), "{text}");
}
