//! Embedding sluicegate in a program of your own: the program pushes records from its own
//! threads, and each push returns once its records are durable in the lake.
//!
//! ```sh
//! cargo run --release --example embed -- /tmp/sluicegate-embed
//! ```
//!
//! Four producer threads push 10 batches of 100 orders each (one order in every batch is bad
//! and lands in quarantine, with the rule it broke), into a local lake under the directory
//! given (default: a directory under the system's temporary directory). Then the program
//! closes the handle, the engine drains, and the run's report is printed.

use sluicegate::config::Config;
use sluicegate::{Engine, PushError};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

const PRODUCERS: u64 = 4;
const BATCHES: u64 = 10;
const BATCH_RECORDS: u64 = 100;

/// The table's schema: typed columns with rules (see docs/schemas.md).
const SCHEMA: &str = r#"{
  "columns": [
    { "name": "order_id", "type": "string", "required": true },
    { "name": "ts", "type": "timestamp", "required": true, "formats": ["epoch_ms"] },
    { "name": "customer.id", "type": "int64", "required": true, "min": 1 },
    { "name": "amount", "type": "float64", "required": true, "min": 0 }
  ]
}"#;

/// The engine's configuration. A push returns when its checkpoint is written — after the
/// files holding its records (ETL, quarantine, RAW) are sealed and durable, and the audit rows
/// after them — so short seal and audit intervals make pushes return sooner.
const CONFIG: &str = r#"
[lake]
dir = "lake"

[state]
dir = "state"

[buffer]
flush_interval_ms = 100

[quarantine]
interval_ms = 100

[raw]
segment_interval_ms = 100

[audit]
interval_ms = 100

[[sources]]
name = "app"
encryption = "none"
table = "orders"
[sources.push]

[[tables]]
name = "orders"
schema = "orders.json"
event_time = "ts"
"#;

fn order(producer: u64, batch: u64, i: u64, now_ms: u128) -> String {
    let id = (producer * BATCHES + batch) * BATCH_RECORDS + i;
    if i == 0 {
        // No customer: refused by the schema's `required` rule, kept in quarantine.
        return format!(r#"{{"order_id":"o-{id}","ts":{now_ms},"amount":12.5}}"#);
    }
    format!(
        r#"{{"order_id":"o-{id}","ts":{now_ms},"customer":{{"id":{}}},"amount":{}.25}}"#,
        1 + id % 1000,
        id % 500
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sluicegate-embed"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("orders.json"), SCHEMA)?;
    let config = Config::from_toml(CONFIG, &dir)?;

    let engine = Engine::builder(config).build()?;
    let handle = engine.push_handle("app")?;
    let metrics = engine.metrics();
    let run = std::thread::spawn(move || engine.run());

    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let handle = handle.clone();
            std::thread::spawn(move || -> Result<(), PushError> {
                for b in 0..BATCHES {
                    let batch: Vec<String> = (0..BATCH_RECORDS).map(|i| order(p, b, i, now_ms)).collect();
                    handle.push(&batch)?;
                }
                Ok(())
            })
        })
        .collect();
    for p in producers {
        p.join().expect("a producer panicked")?;
    }
    let t = metrics.totals();
    println!(
        "every push returned durable: {} records in, {} in ETL, {} in quarantine",
        t.records_in, t.records_etl, t.records_quarantined
    );

    handle.close();
    let report = run.join().expect("the engine's thread panicked")?;
    print!("{}", report.render());
    if !report.success() {
        return Err("the run did not succeed".into());
    }
    Ok(())
}
