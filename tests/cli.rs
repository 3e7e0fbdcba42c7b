//! The real `sluicegate` binary: the embedded default, validate, the input tools, Ctrl-C drain,
//! and the start-up error when the kernel refuses locked memory.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_embedded_default_runs_and_prints_one_screen() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (code, out, err) = run(&["run", "--records", "3000", "--lake", lake.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "records     in 3,000",
        "files       etl",
        "records/s",
        "latency µs",
        "decrypt",
        "encode",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let etl = etl_rows(&lake);
    let quarantined = quarantine_lines(&lake).len();
    assert_eq!(etl + quarantined, 3000);
    assert!(
        out.contains(&format!("etl {}", sluicegate::engine::report::thousands(etl as u64))),
        "{out}"
    );
    assert!(quarantined > 0, "the embedded default mixes in 1% bad records");
}

#[test]
fn validate_reports_the_key_path_rule_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/embedded-default.toml");
    let (code, out, _) = run(&["validate", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("valid") && out.contains("table events: 29 input columns, 33 output columns"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&good).unwrap() + "\n[buffer]\nflush_bytes_max = 12\n";
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = run(&["validate", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("buffer.flush_bytes_max: must be at least 1 MiB, got 12"),
        "{err}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[lake]\ndirr = \"x\"\n").unwrap();
    let (code, _, err) = run(&["run", "--config", typo.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("lake.dirr: unknown field `dirr`"), "{err}");

    // An in-process source validates (an embedding program supplies it), but the binary has
    // none to supply and says so.
    let embedded = dir.path().join("in_process.toml");
    let text = std::fs::read_to_string(&good).unwrap();
    let (head, rest) = text.split_once("[sources.generator]").unwrap();
    let text = format!("{head}[sources.in_process]\n{}", &rest[rest.find("\n\n").unwrap()..]);
    std::fs::write(&embedded, text).unwrap();
    let (code, out, err) = run(&["validate", "--config", embedded.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("in_process (its records come from the embedding program)"),
        "{out}"
    );
    let (code, _, err) = run(&[
        "run",
        "--config",
        embedded.to_str().unwrap(),
        "--lake",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is in_process: only a program that embeds the engine can supply"),
        "{err}"
    );

    // So does a push source: it validates, and the binary refuses to run it.
    let pushed = dir.path().join("push.toml");
    let text = std::fs::read_to_string(&embedded)
        .unwrap()
        .replace("[sources.in_process]", "[sources.push]");
    std::fs::write(
        &pushed,
        format!("[state]\ndir = \"{}\"\n{text}", dir.path().join("state").display()),
    )
    .unwrap();
    let (code, out, err) = run(&["validate", "--config", pushed.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("push (the embedding program pushes its records)"), "{out}");
    let (code, _, err) = run(&["run", "--config", pushed.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a push source: only a program that embeds the engine can push"),
        "{err}"
    );
}

#[test]
fn the_demo_key_beside_real_keys_is_warned_of_and_an_open_keyring_file_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let (code, _, err) = run(&["keygen", "--keys", keys.to_str().unwrap(), "--id", "k1"]);
    assert_eq!(code, 0, "{err}");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/embedded-default.toml");
    let text = std::fs::read_to_string(&good).unwrap().replacen(
        "[keys]\n",
        &format!("[keys]\nfile = \"{}\"\n", keys.display()),
        1,
    );
    let both = dir.path().join("both.toml");
    std::fs::write(&both, text).unwrap();
    let (code, out, err) = run(&["validate", "--config", both.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: keys.demo: the public demo key is loaded beside real keys"),
        "{out}"
    );
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&["validate", "--config", both.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is open to group or others (mode 0644)"), "{err}");
}

#[test]
fn keygen_and_encrypt_make_input_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let (code, _, err) = run(&["keygen", "--keys", keys.to_str().unwrap(), "--id", "k-old"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = run(&["keygen", "--keys", keys.to_str().unwrap(), "--id", "k-new"]);
    assert_eq!(code, 0);
    let (code, _, err) = run(&["keygen", "--keys", keys.to_str().unwrap(), "--id", "k-new"]);
    assert_eq!(code, 1);
    assert!(err.contains("already in"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);

    let plain = dir.path().join("in.ndjson");
    let (code, _, err) = run(&[
        "generate",
        "--ndjson",
        "--records",
        "2000",
        "--output",
        plain.to_str().unwrap(),
        "--bad-ratio",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    let sealed = dir.path().join("in.sgf");
    let (code, out, err) = run(&[
        "encrypt",
        "--keys",
        keys.to_str().unwrap(),
        "--key-id",
        "k-new",
        "--input",
        plain.to_str().unwrap(),
        "--output",
        sealed.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("encrypted 2000 records"), "{out}");

    let lake = dir.path().join("lake");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[lake]
dir = "{}"
[keys]
file = "{}"
[[sources]]
name = "sealed"
table = "events"
[sources.file]
paths = ["{}"]
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
"#,
            lake.display(),
            keys.display(),
            sealed.display()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(etl_rows(&lake), 2000, "{out}");
    // The RAW zone keeps the envelopes exactly as they came: the encrypted file's payloads.
    assert_eq!(audit_sum(&lake, "fetch", "records_in"), 2000);
}

#[test]
fn ctrl_c_drains_everything_and_exits_zero() {
    let stderr = drain_on(libc::SIGINT, &[]);
    assert!(
        stderr.contains("INFO sluicegate::engine: stop requested: draining run_id="),
        "{stderr}"
    );
}

#[test]
fn sigterm_drains_like_ctrl_c_and_logs_json_lines() {
    let stderr = drain_on(libc::SIGTERM, &["--log-format", "json"]);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(
        messages,
        ["running", "stop requested: draining", "run finished"],
        "{stderr}"
    );
    let finished = &events[2];
    assert_eq!(finished["level"], "INFO");
    assert!(finished["records_in"].as_u64().unwrap() > 0, "{finished}");
    assert_eq!(finished["fatal"], false);
}

/// Run a rate-limited generator, send `signal` once records flow, and check the drain landed
/// everything fetched; returns the run's standard error (its log).
fn drain_on(signal: i32, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[lake]
dir = "{}"
[keys]
demo = true
[[sources]]
name = "generator"
table = "events"
[sources.generator]
partitions = 4
records = 0
duration_ms = 600000
rate_per_s = 20000
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
[audit]
interval_ms = 100
"#,
            lake.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Records are flowing once the first fetch rows are durable.
    wait_for("the first audit flush", Duration::from_secs(60), || {
        !files(&lake.join("audit/kind=fetch"), ".parquet").is_empty()
    });
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not drain within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("drained (interrupted)"), "{stdout}");

    // Everything fetched before the interrupt is in the lake, and the audit says so.
    let fetched = audit_sum(&lake, "fetch", "records_in");
    assert!(fetched > 0);
    let landed = etl_rows(&lake) + quarantine_lines(&lake).len();
    assert_eq!(landed as i64, fetched, "every fetched record was sealed and written");
    assert_eq!(
        audit_sum(&lake, "file", "records") - fetched,
        audit_sum(&lake, "fetch", "records_in"),
        "raw + etl + quarantine = 2 × fetched"
    );
    assert!(hidden_files(&lake).is_empty());
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn too_little_locked_memory_fails_at_start_saying_what_to_change() {
    // Only root can drop to another user and cap the limit; CI runs as root.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the binary as an unprivileged user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let lake = dir.path().join("lake");
    let out = Command::new("prlimit")
        .args([
            "--memlock=1024:1024",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .arg(bin())
        .args(["run", "--records", "10", "--lake", lake.to_str().unwrap()])
        .output()
        .expect("prlimit and setpriv (util-linux) are installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("locked-memory limit too low"), "{err}");
    assert!(err.contains("RLIMIT_MEMLOCK is 1 KiB"), "{err}");
    assert!(err.contains("ulimit -l"), "{err}");
    assert!(!lake.join("etl").exists(), "nothing ran");
}

#[test]
fn a_progress_line_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // `script` (util-linux) gives the run a pseudo-terminal.
    let cmd = format!("{} run --records 2000 --lake {}", bin(), lake.display());
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) is installed");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("\r\x1b[2K"), "the line is redrawn in place: {tty:?}");
    assert!(tty.contains("2,000 records") && tty.contains("quarantined"), "{tty:?}");

    let (code, stdout, stderr) = run(&[
        "run",
        "--records",
        "2000",
        "--lake",
        dir.path().join("lake2").to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(
        !stderr.contains('\r') && !stdout.contains('\r'),
        "no progress line without a terminal"
    );
}

#[test]
fn sigkill_then_restart_lands_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    let (partitions, records) = (4u64, 24_000u64);
    write_kill_test_config(
        &config,
        &format!("[lake]\ndir = \"{}\"", lake.display()),
        &state,
        (partitions, records, 8000, 0.02),
        "flush_interval_ms = 200",
    );
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once positions have been checkpointed, in the middle of the run.
    wait_for("a checkpoint", Duration::from_secs(60), || {
        !files(&state.join("checkpoints"), ".json").is_empty()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = etl_rows(&lake) + quarantine_lines(&lake).len();
    assert!(
        before < records as usize,
        "killed mid-run ({before} of {records} landed)"
    );

    let (code, out, err) = run(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    // Every record of every partition is in ETL or quarantine exactly once: the restart
    // resolved the upload intents and passed over what the killed run had delivered.
    let (landed, total) = landed(&lake);
    assert_none_lost(&landed, partitions, records);
    assert_eq!(landed.len() as u64, records);
    assert_eq!(total as u64, records, "duplicates in the lake");
    assert!(
        files(&state.join("intents"), ".json").is_empty(),
        "a drained run retires its intents"
    );
}

#[test]
fn sigkill_while_spilling_then_restart_recovers_the_spill_exactly_once() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let lake = dir.path().join("lake");
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    let (partitions, records) = (4u64, 200_000u64);
    // 16 MiB of ring per core and buffers that never seal by size or age: the ring fills within
    // a second or two and everything after goes through the spill.
    write_kill_test_config(
        &config,
        &format!("[lake]\ndir = \"{}\"", lake.display()),
        &state,
        (partitions, records, 20000, 0.01),
        "memory_bytes_max = 16777216\nflush_bytes_max = 1073741824\nflush_interval_ms = 600000",
    );
    let mut child = Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let spill = state.join("spill");
    let spilled = || sluicegate::buffer::spill::spill_files(&spill).len();
    // Kill it once segments are on disk and positions they cover have been checkpointed.
    wait_for("spill files and a checkpoint", Duration::from_secs(60), || {
        spilled() >= 4 && !files(&state.join("checkpoints"), ".json").is_empty()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(spilled() > 0, "the killed run left spill files");
    let before = etl_rows(&lake) + quarantine_lines(&lake).len();
    assert!(
        before < records as usize,
        "killed mid-run ({before} of {records} landed)"
    );

    let (code, out, err) = run(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let recovered = out
        .lines()
        .find(|l| l.trim_start().starts_with("recovered"))
        .unwrap_or_else(|| panic!("no recovery line in\n{out}"));
    assert!(!recovered.contains(" 0 records to the lake"), "{recovered}");
    assert_eq!(spilled(), 0, "every spill file was recovered or finished and deleted");

    let (landed, total) = landed(&lake);
    assert_none_lost(&landed, partitions, records);
    assert_eq!(total as u64, records, "duplicates in the lake");
}

/// RAW segment size in the memory-budget test: RAW segments are memory outside the ring's
/// budget (one open per source partition, up to two spares per core; see the README).
const RAW_SEGMENT_BYTES: u64 = 4 << 20;
/// What the memory-budget test allows above `buffer.memory_bytes_max` (stated in the README):
/// the binary, its allocator and glommio's I/O memory, the RAW segments (4 partitions × 4 MiB
/// open, 2 spares of 6 MiB), the encoder's Arrow chunk and Parquet files in flight. Measured
/// peaks on 2026-11-26: 178–196 MiB in total over 7 runs (the commit before the HTTP receiver's
/// included: 184 and 187), so 128 MiB was at the edge; the spread is not explained yet.
const RSS_OVERHEAD_BYTES: u64 = 160 << 20;

#[test]
fn ten_thousand_partitions_through_a_64_mib_budget_stay_in_memory_and_land_exactly_once() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let lake = dir.path().join("lake");
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    let budget: u64 = 64 << 20;
    // Two sources × event times spread over a year: ~17,000 (source, table, dt, hr) buffers,
    // all open at once (the cap is above that), on one core.
    let per_source = 60_000u64;
    let source = |name: &str| {
        format!(
            r#"
[[sources]]
name = "{name}"
table = "events"
[sources.generator]
partitions = 2
records = {per_source}
bad_ratio = 0.0
event_time_spread_s = 31536000
start_time = "2026-11-26T10:00:00Z"
"#
        )
    };
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
cores = [0]
[lake]
dir = "{}"
fsync = false
[state]
dir = "{}"
[keys]
demo = true
{}{}
[[tables]]
name = "events"
schema = "builtin:events"
event_time = "ts"
transforms = [{{ op = "ingest_metadata" }}]
[partitioning]
event_time_late_max_s = 315360000
[buffer]
memory_bytes_max = {budget}
open_partitions_max = 20000
[raw]
segment_bytes_max = {raw}
"#,
            lake.display(),
            state.display(),
            source("a"),
            source("b"),
            raw = RAW_SEGMENT_BYTES,
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--no-progress", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let (code, rss) = wait_peak_rss(&mut child);
    assert_eq!(code, 0, "{out}");
    eprintln!("peak RSS {} MiB (budget {} MiB)\n{out}", rss >> 20, budget >> 20);
    assert!(out.contains("spill:"), "{out}");
    assert!(
        !out.contains("spill: 0 segments written"),
        "the budget forced a spill: {out}"
    );
    assert!(
        rss <= budget + RSS_OVERHEAD_BYTES,
        "peak RSS {} MiB above {} MiB budget + {} MiB overhead\n{out}",
        rss >> 20,
        budget >> 20,
        RSS_OVERHEAD_BYTES >> 20
    );

    let mut seen = std::collections::HashMap::new();
    let mut hours = std::collections::HashSet::new();
    for f in files(&lake.join("etl"), ".parquet") {
        let path = f.display().to_string();
        for b in read_parquet(&f) {
            for i in 0..b.num_rows() {
                let key = (
                    str_at(&b, "_source", i).unwrap(),
                    str_at(&b, "_partition", i).unwrap(),
                    i64_at(&b, "_position", i).unwrap(),
                );
                hours.insert((
                    key.0.clone(),
                    path.split("/dt=")
                        .nth(1)
                        .unwrap()
                        .split('/')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("/"),
                ));
                *seen.entry(key).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(seen.len() as u64, 2 * per_source, "every record landed");
    assert!(seen.values().all(|&n| n == 1), "no record landed twice");
    assert!(
        hours.len() >= 10_000,
        "{} distinct (source, dt, hr) partitions",
        hours.len()
    );
}
