//! `examples/embed.rs`, run as a user would: the program embeds the engine, pushes 4,000
//! records from four threads, and exits 0; its lake holds every good record in ETL and every
//! bad one in quarantine, and the audit accounts for all of them.

mod support;

use std::path::PathBuf;
use support::{audit_sum, etl_rows, quarantine_lines};

/// The example's binary, built by `cargo test` beside the test binaries (`target/<profile>/examples`).
fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let bin = deps.parent().unwrap().join("examples").join("embed");
    assert!(
        bin.exists(),
        "{} not built: cargo test builds the examples",
        bin.display()
    );
    bin
}

#[test]
fn the_embedding_example_pushes_durably_and_its_lake_accounts_for_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(example()).arg(dir.path()).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    // Every push returned only when durable: by then the run had counted all of them.
    assert!(
        stdout.contains("every push returned durable: 4000 records in, 3960 in ETL, 40 in quarantine"),
        "{stdout}"
    );
    let lake = dir.path().join("lake");
    assert_eq!(etl_rows(&lake), 3_960);
    let q = quarantine_lines(&lake);
    assert_eq!(q.len(), 40);
    assert!(
        q.iter().all(|l| l["rule"] == "required" && l["field"] == "customer.id"),
        "{:?}",
        q[0]
    );
    assert_eq!(audit_sum(&lake, "fetch", "records_in"), 4_000);
}
