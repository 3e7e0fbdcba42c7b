//! The receiver over real sockets (hyper's client on tokio, the receiver on a glommio core) and
//! the inbox on a real disk: answers, durability order, recovery of a torn tail, resume.

use super::inbox::{Inbox, InboxLimits, InboxReader, SEGMENT_MAGIC};
use super::*;
use crate::clock::SystemClock;
use crate::config::HttpConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const TOKEN: &str = "test-token-0123456789";

fn config(port: u16) -> HttpConfig {
    let mut c: HttpConfig = toml::from_str(&format!("listen = \"127.0.0.1:{port}\"")).unwrap();
    c.body_bytes_max = 1 << 20;
    c.segment_bytes = 1 << 20;
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A receiver on a glommio core of its own, its reader feeding `records` while `reading` is set.
struct Running {
    url: String,
    records: crossbeam_channel::Receiver<(u64, Vec<u8>)>,
    reading: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// What the reader said after its last fetch about taking input (`unable`).
    unable: Arc<std::sync::Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(state: &std::path::Path, cfg: HttpConfig, token: Option<&str>) -> Running {
        let listen = cfg.listen.parse().unwrap();
        let token = token.map(|t| crate::bearer::Token::new(t).unwrap());
        let mut source = HttpSource::with_token("edge", &cfg, listen, state, 1, token);
        source.settings.tls = cfg.tls.as_ref().map(|t| crate::tls::Certificate::load(t).unwrap());
        source.preflight().unwrap();
        let (tx, records) = crossbeam_channel::unbounded();
        let reading = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let unable = Arc::new(std::sync::Mutex::new(None));
        let (r, s, u) = (reading.clone(), stop.clone(), unable.clone());
        let thread = std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .make()
                .unwrap();
            ex.run(async move {
                let part = source.partitions().unwrap().remove(0);
                let mut reader = source.open(&part, None).unwrap();
                let mut batch = FetchBatch::default();
                while !s.load(Ordering::Relaxed) {
                    if r.load(Ordering::Relaxed) {
                        reader.fetch(&mut batch, 100, &SystemClock).unwrap();
                        *u.lock().unwrap() = reader.unable();
                        for rec in &batch.records {
                            tx.send((rec.position, batch.payload(rec).to_vec())).unwrap();
                        }
                    }
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            });
        });
        // Ready once it answers: connect until it does (bounded), never sleep and hope.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&cfg.listen).is_err() {
            assert!(std::time::Instant::now() < deadline, "the receiver never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
        Running {
            url: format!("http://{}", cfg.listen),
            records,
            reading,
            stop,
            unable,
            thread: Some(thread),
        }
    }

    fn take(&self, n: usize) -> Vec<(u64, Vec<u8>)> {
        (0..n)
            .map(|_| {
                self.records
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a record read back")
            })
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

struct Http {
    rt: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Http {
    fn new() -> Http {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Http { rt, client }
    }

    fn send(&self, method: &str, url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        self.rt.block_on(async {
            let resp = self.client.request(req).await.expect("an answer");
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Answer {
                status,
                retry_after,
                body: String::from_utf8(body.to_vec()).unwrap(),
            }
        })
    }

    fn post(&self, url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        self.send("POST", url, body, headers)
    }
}

fn ndjson(from: u32, n: u32) -> Vec<u8> {
    (from..from + n)
        .map(|i| format!("{{\"i\":{i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn requests_are_answered_by_the_rules_and_records_read_back_in_order() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let run = Running::start(dir.path(), config(free_port()), Some(TOKEN));
    let http = Http::new();
    let auth = ("authorization", "Bearer test-token-0123456789");
    let url = format!("{}/records", run.url);

    let a = http.post(&url, ndjson(0, 3), &[("authorization", "bearer test-token-0123456789")]);
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "{\"records\":3}"),
        "the scheme in any case"
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&ndjson(3, 2)).unwrap();
    let a = http.post(&url, gz.finish().unwrap(), &[auth, ("content-encoding", "gzip")]);
    assert_eq!((a.status, a.body.as_str()), (200, "{\"records\":2}"));
    let zs = zstd::encode_all(ndjson(5, 2).as_slice(), 3).unwrap();
    assert_eq!(http.post(&url, zs, &[auth, ("content-encoding", "zstd")]).status, 200);
    let mut framed = crate::source::framing::MAGIC.to_vec();
    crate::source::framing::write_frame(&mut framed, b"{\"i\":7}").unwrap();
    assert_eq!(http.post(&url, framed, &[auth]).status, 200);

    let refused = |a: Answer, status: u16, reason: &str| {
        assert_eq!(a.status, status, "{}", a.body);
        assert!(a.body.contains(reason), "{status}: {}", a.body);
    };
    refused(http.post(&url, ndjson(0, 1), &[]), 401, "a bearer token is required");
    refused(
        http.post(&url, ndjson(0, 1), &[("authorization", "Bearer wrong")]),
        401,
        "the bearer token is not valid",
    );
    refused(
        http.send("PUT", &url, ndjson(0, 1), &[auth]),
        405,
        "PUT is not accepted",
    );
    refused(
        http.post(&url, b"\n\n".to_vec(), &[auth]),
        400,
        "the body holds no records",
    );
    let bomb = zstd::encode_all(vec![b' '; 2 << 20].as_slice(), 3).unwrap();
    refused(
        http.post(&url, bomb, &[auth, ("content-encoding", "zstd")]),
        413,
        "the body decodes to more than the 1048576-byte limit",
    );
    refused(
        http.post(&url, ndjson(0, 1), &[auth, ("content-encoding", "br")]),
        415,
        "Content-Encoding \\\"br\\\" is not supported",
    );
    refused(
        http.post(&url, b"not gzip".to_vec(), &[auth, ("content-encoding", "gzip")]),
        400,
        "the body is not valid gzip data",
    );
    refused(
        http.post(
            &url,
            [crate::source::framing::MAGIC.as_slice(), &[9, 0, 0, 0, b'{']].concat(),
            &[auth],
        ),
        400,
        "SGF1 body ends inside frame 1 (byte 4): 9 bytes announced, 1 present",
    );
    assert_eq!(
        http.send("GET", &format!("{}/health", run.url), vec![], &[]).status,
        200
    );
    // A body announced past the limit is refused before it is sent (as after
    // `Expect: 100-continue`): a client that waits for the answer reads the 413.
    let mut raw = std::net::TcpStream::connect(run.url.trim_start_matches("http://")).unwrap();
    write!(
        raw,
        "POST / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 2000000\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut raw, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("the body is 2000000 bytes or more; the limit is 1048576"),
        "{answer}"
    );

    // Every accepted record, once, in order, with strictly increasing positions; nothing of a
    // refused request.
    let got = run.take(8);
    let payloads: Vec<String> = got.iter().map(|(_, p)| String::from_utf8(p.clone()).unwrap()).collect();
    let want: Vec<String> = (0..8).map(|i| format!("{{\"i\":{i}}}")).collect();
    assert_eq!(payloads, want);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "positions increase");
    assert!(
        run.records.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing more"
    );
}

#[test]
fn a_full_inbox_answers_429_with_retry_after_until_the_reader_catches_up() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let mut cfg = config(free_port());
    cfg.inbox_bytes_max = 1 << 20;
    let run = Running::start(dir.path(), cfg, None);
    run.reading.store(false, Ordering::Relaxed);
    let http = Http::new();
    let body = ndjson(0, 40_000); // ~450 KiB: two fit, the third does not
    assert!(body.len() > 400_000 && body.len() < 500_000);
    assert_eq!(http.post(&run.url, body.clone(), &[]).status, 200);
    assert_eq!(http.post(&run.url, body.clone(), &[]).status, 200);
    let a = http.post(&run.url, body.clone(), &[]);
    assert_eq!((a.status, a.retry_after.as_deref()), (429, Some("1")), "{}", a.body);
    assert!(a.body.contains("the receiver is behind"), "{}", a.body);
    run.reading.store(true, Ordering::Relaxed);
    assert_eq!(run.take(80_000).len(), 80_000);
    // Read: the room is back.
    assert_eq!(http.post(&run.url, body, &[]).status, 200);
}

/// A raw connection to the receiver, for clients that misbehave as hyper's cannot.
fn raw(run: &Running) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(run.url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Everything the server sends until it closes the connection (or 5 s pass: then a panic).
fn read_to_close(s: &mut std::net::TcpStream) -> String {
    let mut answer = Vec::new();
    match std::io::Read::read_to_end(s, &mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the server did not close the connection: {e} (read {:?})",
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_receiver_serves_https_and_takes_a_renewed_certificate_without_a_restart() {
    use crate::tls::testing::{request, self_signed};
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (tls, a) = self_signed(certs.path(), "edge");
    let mut cfg = config(free_port());
    cfg.tls = Some(tls.clone());
    let addr = cfg.listen.clone();
    let run = Running::start(dir.path(), cfg, None);
    let post = |body: &str| {
        format!(
            "POST / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let answer = request(&addr, &a, &post("{\"i\":0}\n")).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("{\"records\":1}"),
        "{answer}"
    );
    // Plain HTTP on the TLS port gets no answer.
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(post("{\"i\":9}\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut got);
    assert!(!String::from_utf8_lossy(&got).contains("200"));
    // A renewed certificate in the same files, and SIGHUP's reload: the next connection has it.
    let (b_files, b) = self_signed(certs.path(), "renewed");
    std::fs::copy(&b_files.cert_file, &tls.cert_file).unwrap();
    std::fs::copy(&b_files.key_file, &tls.key_file).unwrap();
    crate::tls::reload_all();
    assert!(
        request(&addr, &a, &post("{\"i\":1}\n")).is_err(),
        "the old certificate is gone"
    );
    let answer = request(&addr, &b, &post("{\"i\":1}\n")).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got: Vec<String> = run
        .take(2)
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(got, ["{\"i\":0}", "{\"i\":1}"]);
}

#[test]
fn listening_beyond_loopback_without_a_token_is_warned_of() {
    let at = |a: &str| a.parse().unwrap();
    assert!(exposure_warning(at("0.0.0.0:8080"), false)
        .unwrap()
        .contains("without a token"));
    assert!(exposure_warning(at("10.1.2.3:8080"), false).is_some());
    assert_eq!(exposure_warning(at("0.0.0.0:8080"), true), None);
    assert_eq!(exposure_warning(at("127.0.0.1:8080"), false), None);
    assert_eq!(exposure_warning(at("[::1]:8080"), false), None);
}

#[test]
fn a_request_refused_by_its_headers_is_answered_before_its_body_and_closed() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let run = Running::start(dir.path(), config(free_port()), Some(TOKEN));
    // No token, a body announced and never sent: 401 at once, then the connection closes.
    for (headers, status) in [
        (String::new(), "401"),
        ("authorization: Bearer wrong-token-0123456789\r\n".to_string(), "401"),
        (
            format!("authorization: Bearer {TOKEN}\r\ncontent-encoding: br\r\n"),
            "415",
        ),
    ] {
        let mut s = raw(&run);
        write!(
            s,
            "POST / HTTP/1.1\r\nhost: x\r\n{headers}content-length: 1000000\r\n\r\n"
        )
        .unwrap();
        let answer = read_to_close(&mut s);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    // The same for a chunked body (no length announced).
    let mut s = raw(&run);
    write!(
        s,
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n10\r\n"
    )
    .unwrap();
    assert!(read_to_close(&mut s).starts_with("HTTP/1.1 401"));
}

#[test]
fn bodies_past_the_memory_budget_are_refused_503_before_they_are_read() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let mut cfg = config(free_port());
    cfg.body_memory_bytes_max = 2 << 20; // two bodies of 1 MiB being read
    let run = Running::start(dir.path(), cfg, None);
    let body = ndjson(0, 80_000); // ~0.9 MiB
    let head = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
    // Two clients hold the budget with bodies they have not finished sending.
    let mut holding: Vec<_> = (0..2)
        .map(|_| {
            let mut s = raw(&run);
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body[..1000]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // both admitted
    let mut third = raw(&run);
    third.write_all(head.as_bytes()).unwrap();
    let answer = read_to_close(&mut third);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("body_memory_bytes_max 2097152"), "{answer}");
    // The two finish and are answered; their grants come back.
    for s in &mut holding {
        s.write_all(&body[1000..]).unwrap();
        let mut buf = [0u8; 12];
        std::io::Read::read_exact(s, &mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    assert_eq!(Http::new().post(&run.url, body, &[]).status, 200);
    assert_eq!(run.take(3 * 80_000).len(), 3 * 80_000);
}

#[test]
fn slow_clients_are_closed_by_their_deadlines_and_make_room_for_real_ones() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let mut cfg = config(free_port());
    cfg.connections_max = 2;
    cfg.header_timeout_ms = 600;
    cfg.idle_timeout_ms = 30_000;
    let run = Running::start(dir.path(), cfg, None);
    // Two slowloris clients fill the table: a byte of headers every 100 ms (well inside the
    // idle timeout, so only the header deadline can close them).
    let trickle = |mut s: std::net::TcpStream| {
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            for b in b"POST / HTTP/1.1\r\nhost: x\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .iter()
                .cycle()
            {
                if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            started.elapsed()
        })
    };
    let slow: Vec<_> = (0..2).map(|_| trickle(raw(&run))).collect();
    std::thread::sleep(Duration::from_millis(300));
    // A real client is served at once: the oldest slow connection makes room.
    let started = std::time::Instant::now();
    assert_eq!(Http::new().post(&run.url, ndjson(0, 1), &[]).status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // And neither slow client outlives its header deadline by much, though it never went quiet.
    for t in slow {
        let lived = t.join().unwrap();
        assert!(
            lived < Duration::from_secs(3),
            "a slow client held its connection {lived:?}"
        );
    }
}

#[test]
fn a_scan_tells_a_torn_tail_from_corruption() {
    use super::inbox::{scan, Tail};
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        f.extend_from_slice(body);
        f
    };
    let good = [SEGMENT_MAGIC.as_slice(), &frame(b"{}\n"), &frame(b"{\"a\":1}\n")].concat();
    let end = good.len() as u64;
    let verdict = |bytes: &[u8]| {
        let s = scan(bytes, &[], 0).unwrap();
        (s.end, s.tail)
    };
    assert_eq!(verdict(&good), (end, Tail::Clean));
    let torn = |t: Tail| matches!(t, Tail::Torn(_));
    let corrupt = |t: Tail| matches!(t, Tail::Corrupt(_));
    // Torn: part of a header, a body cut short, zeros past the end.
    let (e, t) = verdict(&[good.as_slice(), &[5, 0, 0]].concat());
    assert!(e == end && torn(t));
    let (e, t) = verdict(&[good.as_slice(), &frame(b"{\"b\":2}\n")[..12]].concat());
    assert!(e == end && torn(t));
    let (e, t) = verdict(&[good.as_slice(), &[0u8; 100]].concat());
    assert!(e == end && torn(t));
    // Corrupt: a whole frame failing its CRC (first or last), an empty frame before data.
    let mut flipped = good.clone();
    flipped[8 + 8] ^= 1;
    let (e, t) = verdict(&flipped);
    assert!(e == 8 && corrupt(t.clone()), "{t:?}");
    let mut last = good.clone();
    let n = last.len();
    last[n - 2] ^= 0x40;
    let (e, t) = verdict(&last);
    assert!(e == 8 + 11 && corrupt(t.clone()), "{t:?}");
    let (e, t) = verdict(&[good.as_slice(), &[0u8; 8], b"{}"].concat());
    assert!(e == end && corrupt(t));
    // A salvaged frame is passed over; the scan goes on after it.
    let s = scan(&flipped, &[8], 0).unwrap();
    assert_eq!((s.end, s.frames, s.salvaged, s.tail), (end, 2, vec![8], Tail::Clean));
    // A frame wholly before the checkpoint is delivered: its corruption stops nothing.
    assert_eq!(scan(&flipped, &[], 8 + 11).unwrap().tail, Tail::Clean);
    assert!(corrupt(scan(&flipped, &[], 8 + 10).unwrap().tail));
    assert!(scan(b"NOTINBOX", &[], 0).is_err());
}

/// A tmpfs of `bytes` mounted on `dir` until dropped; `None` where this process may not mount
/// (the suite runs as root: CI does).
struct Tmpfs(std::ffi::CString);

impl Tmpfs {
    fn mount(dir: &std::path::Path, bytes: u64) -> Option<Tmpfs> {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let data = std::ffi::CString::new(format!("size={bytes}")).unwrap();
        // SAFETY: mount(2) with valid NUL-terminated strings.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            eprintln!("cannot mount a tmpfs ({}): not root?", std::io::Error::last_os_error());
            return None;
        }
        Some(Tmpfs(target))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: umount2(2) of the mount this value made.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn a_full_disk_refuses_requests_until_it_has_room_again_without_a_restart() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let Some(_mounted) = Tmpfs::mount(dir.path(), 24 << 20) else {
        assert_ne!(unsafe { libc::geteuid() }, 0, "root can mount a tmpfs");
        return;
    };
    // A filler leaves about 1 MiB: two bodies fit, the third finds the disk full.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![1u8; 23 << 20]).unwrap();
    let run = Running::start(dir.path(), config(free_port()), None);
    let http = Http::new();
    let body = ndjson(0, 40_000); // ~450 KiB
    assert_eq!(http.post(&run.url, body.clone(), &[]).status, 200);
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(http.post(&run.url, body.clone(), &[]));
    }
    let refused = answers
        .iter()
        .find(|a| a.status == 503)
        .expect("a full disk answers 503");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(
        refused.body.contains("No space left on device") || refused.body.contains("short write"),
        "{}",
        refused.body
    );
    // Still full: still refused (and quickly, without touching the disk).
    let a = http.post(&run.url, ndjson(0, 1), &[]);
    assert_eq!(a.status, 503, "{}", a.body);
    std::thread::sleep(Duration::from_millis(50));
    let why = run
        .unable
        .lock()
        .unwrap()
        .clone()
        .expect("the partition says it cannot take input");
    assert!(why.contains("edge inbox-0: the inbox cannot be written"), "{why}");
    // Room again: taken again within the longest probe wait, by the same process.
    std::fs::remove_file(&filler).unwrap();
    let started = std::time::Instant::now();
    loop {
        let a = http.post(&run.url, ndjson(0, 1), &[]);
        if a.status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still refused: {}", a.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(*run.unable.lock().unwrap(), None, "ready again");
    drop(run);
}

fn limits() -> InboxLimits {
    InboxLimits {
        segment_bytes: 4096,
        inbox_bytes_max: 1 << 30,
    }
}

/// Append bodies through the real commit path, on a glommio executor.
fn append_all(dir: &std::path::Path, bodies: Vec<Vec<u8>>) {
    let dir = dir.to_path_buf();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap();
    ex.run(async move {
        let inbox = Rc::new(Inbox::open(&dir, limits(), 0).unwrap());
        // The first two in one commit (group commit), then one by one (a roll between commits).
        let (a, b) = (inbox.append(&bodies[0]).unwrap(), inbox.append(&bodies[1]).unwrap());
        a.recv().await.unwrap().unwrap();
        b.recv().await.unwrap().unwrap();
        for body in &bodies[2..] {
            inbox.append(body).unwrap().recv().await.unwrap().unwrap();
        }
    });
}

fn read_all(dir: &std::path::Path, resume: u64) -> Vec<(u64, String)> {
    let inbox = Rc::new(Inbox::open(dir, limits(), resume).unwrap());
    let mut reader = InboxReader::new(inbox, resume);
    let mut batch = FetchBatch::default();
    let mut out = Vec::new();
    let err = |m: String| SourceError {
        source_name: "t".into(),
        partition: "p".into(),
        message: m,
    };
    while reader.fetch(&mut batch, 7, &err).unwrap() == Fetch::Records {
        for r in &batch.records {
            let text = String::from_utf8_lossy(batch.payload(r)).into_owned();
            out.push((
                r.position,
                match &r.reject {
                    Some(why) => format!("REJECTED {}: {text}", why.message),
                    None => text,
                },
            ));
        }
        // next_position is where a restart resumes: the next record read, or the end.
        let next = batch.next_position;
        assert!(batch.records.iter().all(|r| r.position < next));
    }
    out
}

#[test]
fn the_inbox_rolls_segments_cuts_a_torn_tail_refuses_corruption_resumes_mid_body_and_releases_checkpointed_segments() {
    let tmp = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let dir = tmp.path().join("inbox-0");
    // 30 bodies of 100 records (~1.1 KiB each): several 4 KiB segments.
    append_all(&dir, (0..30).map(|b| ndjson(b * 100, 100)).collect());
    let segments = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sgi"))
            .collect();
        v.sort();
        v
    };
    let before = segments(&dir);
    assert!(before.len() >= 5, "{before:?}");
    let all = read_all(&dir, 0);
    assert_eq!(all.len(), 3000);
    assert!(all.iter().enumerate().all(|(i, (_, p))| *p == format!("{{\"i\":{i}}}")));

    // A torn tail: a frame cut short at the end of the last segment is never read, and cut.
    let last = dir.join(before.last().unwrap());
    let len = std::fs::metadata(&last).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
    drop(f);
    assert_eq!(read_all(&dir, 0).len(), 3000);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len, "the torn tail was cut");
    // Zeros past the written end (a crash after the file grew, before its data was written)
    // are a torn tail too.
    let mut f = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    assert_eq!(read_all(&dir, 0).len(), 3000);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len, "the zeros were cut");

    // A flipped byte inside a whole frame is corruption of what may have been acknowledged:
    // opening fails, naming the segment and byte, and nothing is cut.
    let mut bytes = std::fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    let e = Inbox::open(&dir, limits(), 0)
        .err()
        .expect("corruption refuses to open");
    assert!(e.contains("fails its CRC") && e.contains("nothing was cut"), "{e}");
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len, "nothing was cut");
    // The operator salvages it: the frame's bytes go to the quarantine, rejected, and the
    // reading goes on.
    let at = super::inbox::scan(&bytes, &[], 0).unwrap().end;
    std::fs::write(super::inbox::salvage_path(&last), format!("{at}\n")).unwrap();
    let salvaged = read_all(&dir, 0);
    assert_eq!(salvaged.len(), 2901);
    let damaged = &salvaged.last().unwrap().1;
    assert!(damaged.starts_with("REJECTED inbox frame at byte"), "{damaged}");
    assert!(
        damaged.contains("{\"i\":2999}") || damaged.contains("\"i\":29"),
        "its bytes as they are"
    );
    assert!(salvaged[..2900].iter().all(|(_, p)| !p.starts_with("REJECTED")));

    // Resume from a record in the middle of a body: that record first, nothing before it.
    let (pos, first) = all[1234].clone();
    let resumed = read_all(&dir, pos);
    assert_eq!(resumed.first().map(|r| &r.1), Some(&first));
    assert_eq!(resumed.len(), 2901 - 1234);
    // Opening at a checkpoint deletes the segments wholly before it, never the active one.
    let kept = segments(&dir);
    assert!(kept.len() < before.len(), "{kept:?} vs {before:?}");
    let end = read_all(&dir, 0).last().unwrap().0 + 1;
    let _ = Inbox::open(&dir, limits(), end).unwrap();
    assert_eq!(segments(&dir).len(), 1, "only the active segment stays");
    assert_eq!(
        &std::fs::read(dir.join(&segments(&dir)[0])).unwrap()[..8],
        SEGMENT_MAGIC
    );
}
