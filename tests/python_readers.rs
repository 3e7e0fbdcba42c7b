//! Tools no one here wrote must read our output: pyarrow and DuckDB read a lake written by the
//! real engine (`tests/check_lake.py`). The README's test command installs both with pip.

mod support;

use sluicegate::config::Config;
use sluicegate::Engine;
use std::process::Command;

#[test]
fn pyarrow_and_duckdb_read_the_lake_and_agree_with_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut cfg = Config::embedded_default(20_000, &lake);
    cfg.sources[0].generator.as_mut().unwrap().bad_ratio = 0.03;
    cfg.buffer.flush_bytes_max = 2 << 20;
    cfg.lake.fsync = false;
    let report = Engine::builder(cfg).build().unwrap().run().unwrap();
    assert!(report.success(), "{}", report.render());
    let (etl, quarantined) = (support::etl_rows(&lake), support::quarantine_lines(&lake).len());
    assert_eq!(etl as u64, report.counters.records_etl);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/check_lake.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&lake)
        .arg(etl.to_string())
        .arg(quarantined.to_string())
        .output()
        .expect("python3 is installed");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "pyarrow/duckdb missing: run the README's test command (tests/run), which installs them\n{stderr}"
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("check_lake: ok"), "{stdout}");
    println!("{stdout}");
}
