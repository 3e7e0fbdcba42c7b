//! The admin endpoint of the real binary, scraped while it runs by the reference parsers
//! (`tests/admin_scrape.py`: the Prometheus Python client's text parser, HdrHistogram_py's
//! interval log reader).

mod support;

use std::process::{Command, Stdio};
use support::bin;

const TOKEN: &str = "admin-test-token-0123456789";

fn sum(samples: &serde_json::Value, name: &str) -> f64 {
    samples[name]
        .as_array()
        .unwrap_or_else(|| panic!("no samples of {name}"))
        .iter()
        .map(|s| s[1].as_f64().unwrap())
        .sum()
}

#[test]
fn metrics_and_histograms_are_read_by_the_reference_parsers() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("admin.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\ndir = \"{}\"\n[keys]\ndemo = true\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\
             token_env = \"SLUICEGATE_TEST_ADMIN_TOKEN\"\n\
             [[sources]]\nname = \"gen\"\ntable = \"events\"\n[sources.generator]\nrecords = 0\n\
             duration_ms = 60000\nrate_per_s = 20000\npartitions = 2\n\
             [[tables]]\nname = \"events\"\nschema = \"builtin:events\"\nevent_time = \"ts\"\n",
            dir.path().join("lake").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--no-progress"])
        .env("SLUICEGATE_TEST_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for("the admin endpoint", std::time::Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // More idle sockets than the endpoint serves at once do not block a scrape: the oldest is
    // closed to make room for the newest.
    let idle: Vec<_> = (0..2 * sluicegate::admin::ADMIN_CONNECTIONS_MAX)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut health = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    health
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let get = format!("GET /health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    std::io::Write::write_all(&mut health, get.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut health, &mut answer).expect("an answer within 2 s");
    assert_eq!(&answer, b"HTTP/1.1 200");
    drop(idle);
    let scrape = Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/admin_scrape.py"),
            &format!("http://127.0.0.1:{port}"),
            TOKEN,
        ])
        .output()
        .unwrap();
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    assert!(child.wait().unwrap().success());
    assert!(scrape.status.success(), "{}", String::from_utf8_lossy(&scrape.stderr));
    let got: serde_json::Value = serde_json::from_slice(&scrape.stdout).unwrap();

    assert_eq!(got["health"], 200);
    assert_eq!(got["unauthorized"], 401);
    assert_eq!(got["not_found"], 404);
    let (first, second) = (&got["first"], &got["second"]);
    // The parser reads counters without their `_total` suffix in the family name, and keeps it
    // in the sample name.
    let (a, b) = (
        sum(first, "sluicegate_records_in_total"),
        sum(second, "sluicegate_records_in_total"),
    );
    assert!(
        a > 0.0 && b > a,
        "records_in must grow while the generator runs: {a} then {b}"
    );
    assert_eq!(
        second["sluicegate_records_in_total"].as_array().unwrap().len(),
        2,
        "one sample per core"
    );
    for name in [
        "sluicegate_records_quarantined_total",
        "sluicegate_backpressure_seconds_total",
        "sluicegate_memory_bytes_peak",
        "sluicegate_memory_bytes",
        "sluicegate_spill_bytes",
        "sluicegate_store_retries_total",
        "sluicegate_files_written_total",
        "sluicegate_records_rejected_total",
        "sluicegate_source_lag_seconds",
        "sluicegate_http_requests_accepted_total",
    ] {
        assert!(
            second.get(name).is_some(),
            "{name} missing from {:?}",
            second.as_object().unwrap().keys()
        );
    }
    let parse_count = second["sluicegate_stage_latency_seconds_count"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0]["stage"] == "parse")
        .map(|s| s[1].as_f64().unwrap())
        .unwrap();
    assert!(parse_count > 0.0);
    assert_eq!(sum(second, "sluicegate_ready"), 1.0);
    // A local lake's writes are retried by the edge only: the SDK family is there, at zero.
    assert_eq!(sum(second, "sluicegate_store_sdk_retries_total"), 0.0);
    let counts = &got["histogram_counts"];
    assert!(counts["parse"].as_u64().unwrap() > 0, "{counts}");
    assert!(counts["fetch"].as_u64().unwrap() > 0, "{counts}");
}
