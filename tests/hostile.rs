//! The real binary against hostile clients and a hostile disk:
//! - many connections that announce the largest body and never finish it, with no token and
//!   with a valid one: the receiver's memory stays within its stated bound — `cores ×
//!   (body_memory_bytes_max + connections × HEADER_BUFFER_BYTES)` over what the process held
//!   before — and a real client is served once the attack ends;
//! - a bit flipped in an acknowledged inbox frame after a SIGKILL: the restart stops that
//!   partition loudly (`/ready`, exit code) and deletes nothing, and `inbox salvage` brings the
//!   good records to the lake and the damaged bytes to the quarantine;
//! - a renewed TLS certificate taken on SIGHUP, without a restart.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{bin, wait_for};

const TOKEN: &str = "hostile-test-token-0123456789";
const BODY_BYTES_MAX: usize = 8 << 20;
const BODY_MEMORY_BYTES_MAX: u64 = 64 << 20;
const ATTACKERS: usize = 150;
/// hyper's read buffer per connection (`source::http::HEADER_BUFFER_BYTES`).
const HEADER_BUFFER_BYTES: u64 = 64 << 10;

/// A receiver's configuration: `cores`, the `[sources.http]` lines `http` (beside `listen`),
/// and `rest` (more sections). Records are `{"event_id": …}`.
fn write_config(dir: &Path, port: u16, cores: &str, http: &str, rest: &str) -> PathBuf {
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"columns": [{"name": "event_id", "type": "string", "required": true}]}"#,
    )
    .unwrap();
    let path = dir.join("receiver.toml");
    std::fs::write(
        &path,
        format!(
            "[lake]\ndir = \"{lake}\"\n[state]\ndir = \"{state}\"\n[runtime]\ncores = {cores}\n\
             [[sources]]\nname = \"edge\"\ntable = \"events\"\nencryption = \"none\"\n\
             [sources.http]\nlisten = \"127.0.0.1:{port}\"\n{http}\n\
             [[tables]]\nname = \"events\"\nschema = \"{schema}\"\n{rest}\n",
            lake = dir.join("lake").display(),
            state = dir.join("state").display(),
            schema = schema.display(),
        ),
    )
    .unwrap();
    path
}

/// A `/proc/<pid>/status` figure in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// `ATTACKERS` connections, each announcing the largest body and sending all of it but 64
/// bytes; returns the sockets, still open, once every sender has finished or been refused.
fn attack(port: u16, token: Option<&str>) -> Vec<TcpStream> {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let threads: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let auth = auth.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                let head = format!("POST / HTTP/1.1\r\nhost: x\r\n{auth}content-length: {BODY_BYTES_MAX}\r\n\r\n");
                let body = vec![b'x'; BODY_BYTES_MAX - 64];
                // A refused client finds the connection closed under it: that is the point.
                let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body));
                Some(s)
            })
        })
        .collect();
    threads.into_iter().filter_map(|t| t.join().unwrap()).collect()
}

#[test]
fn clients_that_announce_large_bodies_and_stall_cannot_push_memory_past_the_stated_bound() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let port = free_port();
    let http = format!(
        "token_env = \"SLUICEGATE_TEST_HTTP_TOKEN\"\nbody_bytes_max = {BODY_BYTES_MAX}\n\
         body_memory_bytes_max = {BODY_MEMORY_BYTES_MAX}"
    );
    let config = write_config(dir.path(), port, "\"all\"", &http, "");
    let mut child = start_receiver(&config, port);
    let post = |token: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = "{\"event_id\":\"e\"}\n";
        write!(
            s,
            "POST / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    assert!(post(TOKEN).starts_with("HTTP/1.1 200"));
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let bound = cores * BODY_MEMORY_BYTES_MAX + ATTACKERS as u64 * HEADER_BUFFER_BYTES;
    // Room for what the process allocates meanwhile that is not the receiver's (the engine's
    // ticks, the allocator's slack).
    const SLACK: u64 = 48 << 20;
    let pid = child.id();

    for token in [None, Some(TOKEN)] {
        let before = proc_status_bytes(pid, "VmRSS");
        let held = attack(port, token);
        let during = proc_status_bytes(pid, "VmRSS");
        let peak = proc_status_bytes(pid, "VmHWM");
        drop(held);
        eprintln!(
            "token {:?}: RSS {} MiB before, {} MiB with {} attackers holding (peak {} MiB); bound +{} MiB",
            token.is_some(),
            before >> 20,
            during >> 20,
            ATTACKERS,
            peak >> 20,
            (bound + SLACK) >> 20
        );
        assert!(
            peak <= before + bound + SLACK,
            "with token {:?}: peak RSS {} MiB, {} MiB before: past the bound of +{} MiB",
            token.is_some(),
            peak >> 20,
            before >> 20,
            (bound + SLACK) >> 20
        );
        // Once the attackers are gone, a real client is served (their grants came back).
        wait_for("a real request to be answered 200", Duration::from_secs(10), || {
            post(TOKEN).starts_with("HTTP/1.1 200")
        });
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// A receiver on core 0 alone with an admin endpoint, its lake files held back (a long flush
/// interval) so nothing is checkpointed before a kill.
fn inbox_config(dir: &Path, port: u16, admin: u16) -> PathBuf {
    let rest = format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n[buffer]\nflush_interval_ms = 600000");
    write_config(dir, port, "[0]", "", &rest)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `port`: the status line's code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn post_records(port: u16, request: u32) -> u16 {
    let body: String = (0..100)
        .map(|i| format!("{{\"event_id\":\"r{request}-{i}\"}}\n"))
        .collect();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn start_receiver(config: &Path, port: u16) -> std::process::Child {
    let child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--no-progress"])
        .env("SLUICEGATE_TEST_HTTP_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the receiver to listen", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

fn stop(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

#[test]
fn a_flipped_bit_in_an_acknowledged_inbox_frame_stops_the_partition_loudly_and_is_salvaged_into_the_quarantine() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = inbox_config(dir.path(), port, admin);
    let mut child = start_receiver(&config, port);
    for r in 0..3 {
        assert_eq!(post_records(port, r), 200, "request {r} acknowledged");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // One bit flipped in the second frame's body.
    let inbox = dir.path().join("state/inbox/edge/inbox-0");
    let segment = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sgi"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let first_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let second = 8 + 8 + first_len;
    bytes[second + 8 + 40] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();

    // The restart refuses the inbox: the partition stops, /ready says why, the run fails, and
    // not a byte of the segment is gone.
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("/ready to answer", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    wait_for("/ready to say the inbox is corrupt", Duration::from_secs(30), || {
        let (code, body) = get(admin, "/ready");
        code == 503 && body.contains("fails its CRC")
    });
    assert!(
        !stop(&mut child).success(),
        "a run with a corrupt inbox does not report success"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "nothing was cut");

    let check = Command::new(bin())
        .args(["inbox", "check"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains(&format!("CORRUPT at byte {second}")), "{report}");
    let salvage = Command::new(bin())
        .args(["inbox", "salvage", "--apply"])
        .arg(&segment)
        .output()
        .unwrap();
    assert!(salvage.status.success(), "{}", String::from_utf8_lossy(&salvage.stderr));

    // Salvaged: the two good requests land in the ETL zone, the damaged one's bytes in the
    // quarantine, and the run drains cleanly.
    let mut child = start_receiver(&config, port);
    wait_for("the inbox to be read", Duration::from_secs(30), || {
        get(admin, "/ready").0 == 200
    });
    assert!(stop(&mut child).success());
    let lake = dir.path().join("lake");
    assert_eq!(support::etl_rows(&lake), 200);
    let quarantined = support::quarantine_lines(&lake);
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0]["rule"], "framing");
    assert!(quarantined[0]["message"]
        .as_str()
        .unwrap()
        .contains("failed its CRC and was salvaged"));
}

/// A self-signed certificate for `localhost` into `<dir>/<name>.crt|key`; returns it.
fn self_signed(dir: &Path, name: &str) -> rustls_pki_types::CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), c.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), c.signing_key.serialize_pem()).unwrap();
    c.cert.der().clone()
}

/// Whether a TLS handshake with `port` succeeds trusting only `root`.
fn handshake(port: u16, root: &rustls_pki_types::CertificateDer<'static>) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let cfg =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

#[test]
fn sighup_reloads_the_receivers_certificate_without_a_restart() {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = inbox_config(dir.path(), port, admin);
    let a = self_signed(dir.path(), "edge");
    let tls = format!(
        "tls = {{ cert_file = \"{0}/edge.crt\", key_file = \"{0}/edge.key\" }}\n",
        dir.path().display()
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[sources.http]\n", &format!("[sources.http]\n{tls}"));
    std::fs::write(&config, text).unwrap();
    let mut child = start_receiver(&config, port);
    assert!(handshake(port, &a));
    let b = self_signed(dir.path(), "renewed");
    std::fs::copy(dir.path().join("renewed.crt"), dir.path().join("edge.crt")).unwrap();
    std::fs::copy(dir.path().join("renewed.key"), dir.path().join("edge.key")).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_for("the renewed certificate", Duration::from_secs(10), || {
        handshake(port, &b)
    });
    assert!(!handshake(port, &a), "the old certificate is gone");
    assert!(stop(&mut child).success(), "SIGHUP does not end the run");
}
