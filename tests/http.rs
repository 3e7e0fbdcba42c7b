//! The HTTP edge receiver in the real binary, under load from a real HTTP client (hyper's, on
//! tokio) with many concurrent connections: identity, gzip and zstd bodies, bad framing, bad
//! auth, good and bad records mixed, while the process is SIGKILLed at seeded moments and
//! restarted. At the end every record of every request answered 200 is in the lake exactly once
//! (the ETL zone, or the quarantine with its reason), no record of a refused request is
//! anywhere, and a request whose answer was lost in a kill landed at most once.

mod support;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{bin, files, quarantine_lines, read_parquet, str_at, wait_for};

const TOKEN: &str = "http-test-token-0123456789";
/// Records per request; every 25th breaks the schema (a negative `n`) and goes to quarantine.
const RECORDS_PER_REQUEST: u64 = 100;
const CONNECTIONS: u64 = 24;
const KILLS: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ndjson,
    Gzip,
    Zstd,
    /// An SGF1 body cut inside a frame: must be 400.
    BadFraming,
    /// A wrong token: must be 401.
    BadAuth,
}

impl Kind {
    fn of(request: u64) -> Kind {
        match request % 16 {
            0 => Kind::BadFraming,
            1 => Kind::BadAuth,
            2..=6 => Kind::Gzip,
            7..=10 => Kind::Zstd,
            _ => Kind::Ndjson,
        }
    }
}

fn record_id(request: u64, i: u64) -> String {
    format!("r{request}-{i}")
}

fn is_bad_record(i: u64) -> bool {
    i % 25 == 24
}

fn body(request: u64) -> Vec<u8> {
    let mut lines = String::new();
    for i in 0..RECORDS_PER_REQUEST {
        let n = if is_bad_record(i) { -1 } else { i as i64 };
        lines.push_str(&format!(
            "{{\"event_id\":\"{}\",\"n\":{n},\"ts\":\"2026-11-26T12:00:00Z\",\"pad\":\"{}\"}}\n",
            record_id(request, i),
            "x".repeat(200)
        ));
    }
    let lines = lines.into_bytes();
    match Kind::of(request) {
        Kind::Ndjson | Kind::BadAuth => lines,
        Kind::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&lines).unwrap();
            gz.finish().unwrap()
        }
        Kind::Zstd => zstd::encode_all(lines.as_slice(), 1).unwrap(),
        Kind::BadFraming => [b"SGF1".as_slice(), &[200, 0, 0, 0], &lines[..100]].concat(),
    }
}

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"columns": [
            {"name": "event_id", "type": "string", "required": true},
            {"name": "n", "type": "int64", "required": true, "min": 0},
            {"name": "ts", "type": "timestamp", "required": true, "formats": ["rfc3339"]},
            {"name": "pad", "type": "string"}
        ]}"#,
    )
    .unwrap();
    let path = dir.join("http.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[lake]
dir = "{lake}"
[state]
dir = "{state}"
[runtime]
cores = "all"
[[sources]]
name = "edge"
table = "events"
encryption = "none"
[sources.http]
listen = "127.0.0.1:{port}"
token_env = "SLUICEGATE_TEST_HTTP_TOKEN"
body_bytes_max = 1048576
segment_bytes = 1048576
[[tables]]
name = "events"
schema = "{schema}"
event_time = "ts"
transforms = [{{ op = "ingest_metadata" }}]
[partitioning]
event_time_late_max_s = 315360000
[buffer]
flush_interval_ms = 300
[raw]
segment_interval_ms = 200
[quarantine]
interval_ms = 200
[audit]
interval_ms = 200
"#,
            lake = dir.join("lake").display(),
            state = dir.join("state").display(),
            schema = schema.display(),
        ),
    )
    .unwrap();
    path
}

fn start(config: &Path, port: u16) -> Child {
    let child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .env("SLUICEGATE_TEST_HTTP_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the receiver to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

/// What the load saw: request → its answer (`None`: no answer, the connection failed).
type Answers = Arc<Mutex<HashMap<u64, Option<u16>>>>;

/// `CONNECTIONS` tasks posting back to back until `stop`, each request a new id.
fn load(port: u16, stop: Arc<AtomicBool>, answers: Answers) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let next = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            let tasks: Vec<_> = (0..CONNECTIONS)
                .map(|_| {
                    let (client, stop, answers, next) = (client.clone(), stop.clone(), answers.clone(), next.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let request = next.fetch_add(1, Ordering::Relaxed);
                            let kind = Kind::of(request);
                            let token = if kind == Kind::BadAuth {
                                "wrong-token-0123456789"
                            } else {
                                TOKEN
                            };
                            let mut req = hyper::Request::post(format!("http://127.0.0.1:{port}/records"))
                                .header("authorization", format!("Bearer {token}"));
                            match kind {
                                Kind::Gzip => req = req.header("content-encoding", "gzip"),
                                Kind::Zstd => req = req.header("content-encoding", "zstd"),
                                _ => {}
                            }
                            let req = req.body(Full::new(Bytes::from(body(request)))).unwrap();
                            let status = match client.request(req).await {
                                Ok(resp) => {
                                    let status = resp.status().as_u16();
                                    // The answer counts only once read whole.
                                    resp.into_body().collect().await.ok().map(|_| status)
                                }
                                Err(_) => None,
                            };
                            answers.lock().unwrap().insert(request, status);
                            if status.is_none() {
                                // The process is down: try again shortly, with a new request.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    })
}

/// What the lake holds, by record id.
struct Landed {
    /// Times each id is an ETL row.
    etl: HashMap<String, u32>,
    /// Times each id was quarantined, and the rule.
    quarantined: HashMap<String, (u32, String)>,
    /// ETL rows per partition (a core's inbox).
    per_inbox: HashMap<String, usize>,
}

fn landed(lake: &Path) -> Landed {
    let mut etl: HashMap<String, u32> = HashMap::new();
    let mut per_inbox = HashMap::new();
    for f in files(&lake.join("etl"), ".parquet") {
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                *etl.entry(str_at(&b, "event_id", i).unwrap()).or_default() += 1;
                *per_inbox.entry(str_at(&b, "_partition", i).unwrap()).or_default() += 1;
            }
        }
    }
    let mut quarantined: HashMap<String, (u32, String)> = HashMap::new();
    for l in quarantine_lines(lake) {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(l["payload_base64"].as_str().unwrap())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let e = quarantined
            .entry(v["event_id"].as_str().unwrap().to_string())
            .or_insert((0, l["rule"].as_str().unwrap().to_string()));
        e.0 += 1;
    }
    Landed {
        etl,
        quarantined,
        per_inbox,
    }
}

#[test]
fn every_acknowledged_record_lands_exactly_once_through_sigkills_under_load() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(dir.path(), port);
    let answers: Answers = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut child = start(&config, port);
    let client = load(port, stop.clone(), answers.clone());

    let mut rng = 0x5eed_u64;
    let acked = || answers.lock().unwrap().values().filter(|s| **s == Some(200)).count();
    for kill in 0..KILLS {
        // Seeded moments: after 20–60 more acknowledged requests.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let target = acked() + 20 + (rng % 40) as usize;
        wait_for("requests to be acknowledged", Duration::from_secs(60), || {
            acked() >= target
        });
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run stopped before kill {kill}"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = start(&config, port);
    }
    let target = acked() + 40;
    wait_for("requests after the last restart", Duration::from_secs(60), || {
        acked() >= target
    });
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "the drain failed: {status}");

    let answers = answers.lock().unwrap();
    let Landed {
        etl,
        quarantined,
        per_inbox,
    } = landed(&dir.path().join("lake"));
    // SO_REUSEPORT spread the connections: every core's inbox took requests.
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(per_inbox.len(), cpus, "records per inbox: {per_inbox:?}");
    let (mut ok, mut lost_answers, mut landed_unanswered) = (0, 0, 0);
    for (&request, &status) in answers.iter() {
        let kind = Kind::of(request);
        match (kind, status) {
            (Kind::BadFraming, Some(s)) => assert_eq!(s, 400, "request {request}"),
            (Kind::BadAuth, Some(s)) => assert_eq!(s, 401, "request {request}"),
            (_, Some(s)) => assert_eq!(s, 200, "request {request} ({kind:?})"),
            (_, None) => {
                lost_answers += 1;
                landed_unanswered += (etl.contains_key(&record_id(request, 0))) as usize;
            }
        }
        for i in 0..RECORDS_PER_REQUEST {
            let id = record_id(request, i);
            let (in_etl, in_q) = (
                etl.get(&id).copied().unwrap_or(0),
                quarantined.get(&id).map_or(0, |q| q.0),
            );
            match (kind, status) {
                (Kind::BadFraming | Kind::BadAuth, _) => {
                    assert_eq!((in_etl, in_q), (0, 0), "{id} of a refused request landed")
                }
                (_, Some(200)) if is_bad_record(i) => {
                    assert_eq!((in_etl, in_q), (0, 1), "{id}: acknowledged, bad: quarantined once");
                    assert_eq!(quarantined[&id].1, "min", "{id}");
                }
                (_, Some(200)) => assert_eq!((in_etl, in_q), (1, 0), "{id}: acknowledged: once in ETL"),
                // No answer: the body may have been durable before the kill, never twice.
                _ => assert!(in_etl + in_q <= 1, "{id}: unacknowledged, landed {in_etl}+{in_q} times"),
            }
        }
        ok += (status == Some(200)) as usize;
    }
    eprintln!(
        "{} requests: {ok} acknowledged, {lost_answers} unanswered ({landed_unanswered} of them durable before the kill); {} ETL rows ({per_inbox:?}), {} quarantined",
        answers.len(),
        etl.len(),
        quarantined.len()
    );
    assert!(ok >= 200, "only {ok} requests acknowledged");
    assert!(lost_answers > 0, "no request failed: the kills tested nothing");
    let acked_records: usize = ok * RECORDS_PER_REQUEST as usize;
    let landed_total: u32 = etl.values().sum::<u32>() + quarantined.values().map(|q| q.0).sum::<u32>();
    assert!(landed_total as usize >= acked_records);
    // Every inbox segment but the active one is deleted once checkpointed.
    for core in files(&dir.path().join("state/inbox/edge"), ".sgi").chunk_by(|a, b| a.parent() == b.parent()) {
        assert_eq!(core.len(), 1, "segments left after the drain: {core:?}");
    }
}
