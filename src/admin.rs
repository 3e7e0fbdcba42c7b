//! The admin endpoint: a control-plane thread of its own (a one-thread tokio runtime and
//! hyper's HTTP/1.1 server), never on a data core.
//!
//! - `GET /health`: 200 while the process runs;
//! - `GET /ready`: 200 once recovery is done and the cores run, 503 before, while draining, and
//!   while any core has a problem (a partition stopped by an error, an HTTP inbox that cannot
//!   be written), one line each in the body;
//! - `GET /metrics`: Prometheus text format 0.0.4, one sample per core (label `core`):
//!   records and bytes in/out per zone, quarantined by rule, backpressure time, spill I/O and
//!   peaks, source errors, throttles and lag, HTTP requests, stage latency summaries;
//! - `GET /histograms`: every stage's HDR histogram (merged over cores, nanoseconds) as an
//!   HdrHistogram interval log (`Tag=<stage>,…,HISTF…`: V2, deflate, base64), which the
//!   HdrHistogram libraries' log readers read as they are.
//!
//! What it reads: each core's [`Snapshot`], copied on the core's tick (every 100 ms), so the
//! figures are at most a tick old and the data path takes no lock per record.
//!
//! Bounds: [`ADMIN_CONNECTIONS_MAX`] connections at once on one thread; a connection whose
//! next request's headers have not arrived [`ADMIN_HEADER_TIMEOUT`] after it was opened or last
//! answered is closed (hyper's header timer, which also runs while a kept-alive connection
//! waits); when a new connection arrives at a full table, the oldest open connection is closed
//! to make room, so idle or trickling sockets can delay a scrape by one round trip, never block
//! it. Answers are a few KiB (metrics) to ~100 KiB (histograms).

use crate::bearer::Token;
use crate::config::AdminConfig;
use crate::extract::Rule;
use crate::telemetry::{Counters, Progress, Snapshot, StageHistograms, StageId};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Admin connections open at once; a new one past it closes the oldest (scrapers are few, and
/// each answer is quick).
pub const ADMIN_CONNECTIONS_MAX: usize = 16;
/// How long a connection may take to send its request headers, counted from its accept or its
/// last answer: a scraper sends them at once; a kept-alive scraper reconnects.
pub const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the endpoint reads.
pub struct AdminView {
    pub progress: Arc<Vec<Progress>>,
    /// Set once the cores run; the run's stop flag says when it drains.
    pub ready: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    pub started: Instant,
    pub started_at: SystemTime,
    pub token: Option<Token>,
    /// The lake's store, for the requests its client retried by itself.
    pub store: Arc<dyn crate::store::ObjectStore>,
}

/// The running endpoint; dropping it stops the thread.
pub struct Admin {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind (failing the start if the address is taken) and serve on a thread of its own.
pub fn start(cfg: &AdminConfig, mut view: AdminView) -> Result<Admin, String> {
    if let Some(var) = &cfg.token_env {
        view.token = Some(Token::from_env(var, "admin.token_env")?);
    }
    let tls = match &cfg.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::Certificate::load(t)
                .map_err(|e| format!("admin.{e}"))?
                .server_config(),
        )),
        None => None,
    };
    let listener = std::net::TcpListener::bind(&cfg.listen)
        .map_err(|e| format!("admin endpoint: cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let view = Arc::new(view);
    let thread = std::thread::Builder::new()
        .name("sluicegate-admin".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .expect("a one-thread runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                // The open connections, oldest first.
                let mut open: std::collections::VecDeque<tokio::task::AbortHandle> = Default::default();
                loop {
                    let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
                        let _ = (&mut rx).await; // the sender is dropped: stop
                        None
                    })
                    .await;
                    let Some(Ok((stream, _))) = accepted else {
                        if accepted.is_none() {
                            return;
                        }
                        continue;
                    };
                    open.retain(|c| !c.is_finished());
                    if open.len() >= ADMIN_CONNECTIONS_MAX {
                        if let Some(oldest) = open.pop_front() {
                            oldest.abort();
                        }
                    }
                    let (view, tls) = (view.clone(), tls.clone());
                    let task = tokio::spawn(async move {
                        match tls {
                            None => serve(stream, view).await,
                            Some(acceptor) => {
                                // The handshake, like the headers, must arrive in time.
                                let shaken = tokio::time::timeout(ADMIN_HEADER_TIMEOUT, acceptor.accept(stream)).await;
                                if let Ok(Ok(stream)) = shaken {
                                    serve(stream, view).await;
                                }
                            }
                        }
                    });
                    open.push_back(task.abort_handle());
                }
            });
        })
        .map_err(|e| format!("cannot spawn the admin thread: {e}"))?;
    Ok(Admin {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// Serve one connection (plain or TLS) until it closes or its headers come too late.
async fn serve<S>(stream: S, view: Arc<AdminView>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let view = view.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&view, &req)) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_TIMEOUT)
        .serve_connection(io, service)
        .await;
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn answer<B>(view: &AdminView, req: &Request<B>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if let Some(token) = &view.token {
        if token.check(req.headers()).is_err() {
            return text(
                StatusCode::UNAUTHORIZED,
                PLAIN,
                "a valid bearer token is required\n".into(),
            );
        }
    }
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    let snapshots = || view.progress.iter().map(Progress::snapshot).collect::<Vec<_>>();
    match req.uri().path() {
        "/health" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/ready" => {
            let problems: Vec<String> = view
                .progress
                .iter()
                .enumerate()
                .flat_map(|(core, p)| p.problems().into_iter().map(move |w| format!("core {core}: {w}\n")))
                .collect();
            match (view.ready.load(Ordering::Relaxed), view.stop.load(Ordering::Relaxed)) {
                (_, true) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "draining\n".into()),
                (false, false) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "starting\n".into()),
                (true, false) if problems.is_empty() => text(StatusCode::OK, PLAIN, "ready\n".into()),
                (true, false) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    format!("not ready:\n{}", problems.concat()),
                ),
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(
                &snapshots(),
                &view.progress.iter().map(|p| p.problems().len()).collect::<Vec<_>>(),
                view.started.elapsed().as_secs_f64(),
                view.ready.load(Ordering::Relaxed),
                view.store.sdk_retries(),
            ),
        ),
        "/histograms" => text(
            StatusCode::OK,
            PLAIN,
            histogram_log(&snapshots(), view.started_at, view.started.elapsed()),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: /health, /ready, /metrics, /histograms\n".into(),
        ),
    }
}

/// One metric family: `# HELP`, `# TYPE`, then a sample per core (with `extra` labels).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    per_core: &[Counters],
    value: impl Fn(&Counters) -> f64,
) {
    let _ = writeln!(out, "# HELP sluicegate_{name} {help}\n# TYPE sluicegate_{name} {kind}");
    for (core, c) in per_core.iter().enumerate() {
        let _ = writeln!(out, "sluicegate_{name}{{core=\"{core}\"}} {}", value(c));
    }
}

/// A family with one more label (`zone`, `rule`) over `values`.
fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    per_core: &[Counters],
    value: impl Fn(&Counters, usize) -> u64,
) {
    let _ = writeln!(out, "# HELP sluicegate_{name} {help}\n# TYPE sluicegate_{name} counter");
    for (core, c) in per_core.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let _ = writeln!(
                out,
                "sluicegate_{name}{{core=\"{core}\",{label}=\"{v}\"}} {}",
                value(c, i)
            );
        }
    }
}

/// A family read from a core's counters: name, help, and how to read it.
type Counter = (&'static str, &'static str, fn(&Counters) -> u64);

/// The Prometheus text of every core's counters, and the stage latencies over all cores.
/// `problems` counts each core's problems (see `/ready`).
pub fn metrics(
    snapshots: &[Snapshot],
    problems: &[usize],
    uptime_s: f64,
    ready: bool,
    store_sdk_retries: u64,
) -> String {
    let c: Vec<Counters> = snapshots.iter().map(|s| s.counters.clone()).collect();
    let mut o = String::new();
    let counters: [Counter; 13] = [
        ("records_in_total", "Records fetched from sources.", |c| c.records_in),
        ("records_etl_total", "Records written to the ETL zone.", |c| {
            c.records_etl
        }),
        (
            "records_quarantined_total",
            "Records written to the quarantine zone.",
            |c| c.records_quarantined,
        ),
        (
            "records_dropped_total",
            "Records dropped by a transform or route.",
            |c| c.records_dropped,
        ),
        (
            "records_skipped_total",
            "Replayed records already delivered by an earlier run.",
            |c| c.records_skipped,
        ),
        ("bytes_in_total", "Payload bytes fetched from sources.", |c| c.bytes_in),
        ("batches_total", "Fetch batches processed.", |c| c.batches),
        ("source_errors_total", "Source partitions stopped by an error.", |c| {
            c.source_errors
        }),
        ("source_throttles_total", "Source calls throttled and retried.", |c| {
            c.source_throttles
        }),
        (
            "http_requests_accepted_total",
            "HTTP requests answered 200 (durable).",
            |c| c.requests_accepted,
        ),
        (
            "http_requests_refused_total",
            "HTTP requests answered 4xx or 5xx.",
            |c| c.requests_refused,
        ),
        ("spill_writes_total", "Ring segments spilled to disk.", |c| {
            c.spill_writes
        }),
        (
            "files_parked_total",
            "Finished files parked on disk while the store was slow or down.",
            |c| c.files_parked,
        ),
    ];
    for (name, help, f) in counters {
        family(&mut o, name, "counter", help, &c, |c| f(c) as f64);
    }
    family(
        &mut o,
        "spill_reads_total",
        "counter",
        "Spilled segments read back.",
        &c,
        |c| c.spill_reads as f64,
    );
    family(
        &mut o,
        "backpressure_seconds_total",
        "counter",
        "Task time spent waiting for downstream (encoder, store, memory budget).",
        &c,
        |c| c.backpressure_ns as f64 / 1e9,
    );
    family(
        &mut o,
        "source_lag_seconds",
        "gauge",
        "How far the most-behind partition is behind its newest record.",
        &c,
        |c| c.source_lag_ms as f64 / 1e3,
    );
    family(
        &mut o,
        "memory_bytes_peak",
        "gauge",
        "Peak bytes of buffered records in memory.",
        &c,
        |c| c.memory_bytes_peak as f64,
    );
    family(
        &mut o,
        "spill_bytes_peak",
        "gauge",
        "Peak bytes of spill and parked files on disk.",
        &c,
        |c| c.spill_bytes_peak as f64,
    );
    let gauges: [Counter; 2] = [
        ("memory_bytes", "Bytes of buffered records in memory now.", |c| {
            c.memory_bytes
        }),
        ("spill_bytes", "Bytes of spill and parked files on disk now.", |c| {
            c.spill_bytes
        }),
    ];
    for (name, help, f) in gauges {
        family(&mut o, name, "gauge", help, &c, |c| f(c) as f64);
    }
    family(
        &mut o,
        "store_retries_total",
        "counter",
        "Store writes retried by the I/O edge.",
        &c,
        |c| c.store_retries as f64,
    );
    let zones = ["etl", "raw", "quarantine", "audit"];
    labelled(
        &mut o,
        "files_written_total",
        "Files written to the lake.",
        "zone",
        &zones,
        &c,
        |c, i| c.files[i],
    );
    labelled(
        &mut o,
        "file_bytes_written_total",
        "Bytes of files written to the lake.",
        "zone",
        &zones,
        &c,
        |c, i| c.file_bytes[i],
    );
    let rules: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    labelled(
        &mut o,
        "records_rejected_total",
        "Records quarantined, by the rule they broke.",
        "rule",
        &rules,
        &c,
        |c, i| c.rejected_by_rule[i],
    );
    let mut hist = StageHistograms::default();
    for s in snapshots {
        hist.merge(&s.hist);
    }
    let _ = writeln!(
        o,
        "# HELP sluicegate_stage_latency_seconds Time per record, batch or file in each stage (sampled; all cores).\n\
         # TYPE sluicegate_stage_latency_seconds summary"
    );
    for stage in StageId::ALL {
        let h = hist.get(stage);
        let name = stage.as_str();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let v = if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1e9
            };
            let _ = writeln!(
                o,
                "sluicegate_stage_latency_seconds{{stage=\"{name}\",quantile=\"{q}\"}} {v}"
            );
        }
        let _ = writeln!(
            o,
            "sluicegate_stage_latency_seconds_sum{{stage=\"{name}\"}} {}",
            h.mean() * h.len() as f64 / 1e9
        );
        let _ = writeln!(
            o,
            "sluicegate_stage_latency_seconds_count{{stage=\"{name}\"}} {}",
            h.len()
        );
    }
    let _ = writeln!(
        o,
        "# HELP sluicegate_core_problems Problems that keep a core from all of its work (a partition stopped by an error, an inbox that cannot be written); /ready says which.\n\
         # TYPE sluicegate_core_problems gauge"
    );
    for (core, n) in problems.iter().enumerate() {
        let _ = writeln!(o, "sluicegate_core_problems{{core=\"{core}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP sluicegate_uptime_seconds Seconds since the process started its run.\n\
         # TYPE sluicegate_uptime_seconds gauge\nsluicegate_uptime_seconds {uptime_s}\n\
         # HELP sluicegate_ready 1 once the cores run, 0 before.\n# TYPE sluicegate_ready gauge\nsluicegate_ready {}\n\
         # HELP sluicegate_store_sdk_retries_total Requests the store's client (the S3 SDK) repeated by itself.\n\
         # TYPE sluicegate_store_sdk_retries_total counter\nsluicegate_store_sdk_retries_total {store_sdk_retries}",
        ready as u8
    );
    o
}

/// Every stage's histogram, merged over cores, as an HdrHistogram interval log (one interval
/// from the start of the run to now, tagged with the stage's name).
pub fn histogram_log(snapshots: &[Snapshot], started_at: SystemTime, elapsed: std::time::Duration) -> String {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut hist = StageHistograms::default();
    for s in snapshots {
        hist.merge(&s.hist);
    }
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("sluicegate stage latencies, nanoseconds, merged over cores")
            .with_start_time(started_at)
            .with_base_time(started_at)
            .begin_log_with(&mut out, &mut ser)
            .expect("writing to memory");
        for stage in StageId::ALL {
            w.write_histogram(
                hist.get(stage),
                std::time::Duration::ZERO,
                elapsed,
                Tag::new(stage.as_str()),
            )
            .expect("a histogram serializes to memory");
        }
    }
    String::from_utf8(out).expect("the log is text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_admin_token_is_refused_at_the_start_and_tls_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let view = || AdminView {
            progress: Arc::new(Vec::new()),
            ready: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            started_at: SystemTime::now(),
            token: None,
            store: Arc::new(crate::store::local::LocalDirStore::new(dir.path(), false).unwrap()),
        };
        // SAFETY (set_var): this variable is this test's own; nothing else reads it.
        unsafe { std::env::set_var("SLUICEGATE_TEST_ADMIN_SHORT_TOKEN", "short") };
        let cfg = AdminConfig {
            listen: "127.0.0.1:0".into(),
            token_env: Some("SLUICEGATE_TEST_ADMIN_SHORT_TOKEN".into()),
            tls: None,
        };
        let e = start(&cfg, view()).err().expect("refused");
        assert!(e.contains("at least 16 characters"), "{e}");
        unsafe { std::env::set_var("SLUICEGATE_TEST_ADMIN_SHORT_TOKEN", "long-enough-token-0123") };
        assert!(start(&cfg, view()).is_ok());
        // Over TLS.
        let (tls, root) = crate::tls::testing::self_signed(dir.path(), "admin");
        let cfg = AdminConfig {
            listen: "127.0.0.1:0".into(),
            token_env: None,
            tls: Some(tls),
        };
        let admin = start(&cfg, view()).unwrap();
        let answer = crate::tls::testing::request(
            &admin.addr.to_string(),
            &root,
            "GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
            "{answer}"
        );
    }

    #[test]
    fn metrics_and_histograms_render_what_the_cores_published() {
        let mut a = Snapshot::default();
        a.counters.records_in = 10;
        a.counters.rejected_by_rule[Rule::Min.index()] = 3;
        a.hist.record(StageId::Parse, 1_500);
        let mut b = Snapshot::default();
        b.counters.records_in = 5;
        b.hist.record(StageId::Parse, 2_500);
        let m = metrics(&[a.clone(), b.clone()], &[0, 2], 1.5, true, 7);
        assert!(m.contains("sluicegate_core_problems{core=\"1\"} 2\n"), "{m}");
        assert!(m.contains("sluicegate_records_in_total{core=\"0\"} 10\n"), "{m}");
        assert!(m.contains("sluicegate_records_in_total{core=\"1\"} 5\n"), "{m}");
        assert!(
            m.contains("sluicegate_records_rejected_total{core=\"0\",rule=\"min\"} 3\n"),
            "{m}"
        );
        assert!(
            m.contains("sluicegate_stage_latency_seconds_count{stage=\"parse\"} 2\n"),
            "{m}"
        );
        assert!(m.contains("sluicegate_ready 1\n"), "{m}");
        assert!(m.contains("sluicegate_store_sdk_retries_total 7\n"), "{m}");
        let log = histogram_log(&[a, b], SystemTime::UNIX_EPOCH, std::time::Duration::from_secs(2));
        let parse = log.lines().find(|l| l.starts_with("Tag=parse,")).expect("a parse line");
        let encoded = parse.rsplit(',').next().unwrap();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
        let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(h.len(), 2);
        assert!(h.equivalent(h.max(), 2_500));
    }
}
