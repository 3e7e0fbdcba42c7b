use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let c = Config::from_toml(text, Path::new("/base"))?;
    c.validate()?;
    Ok(c)
}

fn first_error(text: &str) -> String {
    parse(text).unwrap_err().0[0].to_string()
}

const MINIMAL: &str = r#"
[keys]
demo = true
[[sources]]
name = "gen"
table = "events"
[sources.generator]
records = 10
[[tables]]
name = "events"
schema = "builtin:events"
"#;

#[test]
fn a_lake_prefix_with_a_dot_dot_segment_is_refused_before_the_run() {
    let with = |prefix: &str| format!("{MINIMAL}\n[lake]\nprefix = \"{prefix}\"\n");
    assert!(parse(&with("a/b")).is_ok());
    assert_eq!(
        first_error(&with("a/../b")),
        "lake.prefix: must not hold an empty, '.' or '..' segment, got \"a/../b\""
    );
    assert!(first_error(&with("a//b")).starts_with("lake.prefix"));
}

#[test]
fn minimal_config_takes_every_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.buffer.flush_bytes_max, DEFAULT_FLUSH_BYTES_MAX);
    assert_eq!(c.parquet.zstd_level, DEFAULT_PARQUET_ZSTD_LEVEL);
    assert_eq!(c.sources[0].batch_records, DEFAULT_BATCH_RECORDS);
    assert_eq!(
        c.sources[0].generator.as_ref().unwrap().partitions,
        DEFAULT_GENERATOR_PARTITIONS
    );
    assert_eq!(
        c.lake.dir,
        Path::new("/base/lake"),
        "relative paths resolve against the config's directory"
    );
    assert_eq!(c.runtime.cores, CoresConfig::Named("all".into()));
}

#[test]
fn bound_errors_name_path_rule_and_value() {
    let text = format!("{MINIMAL}\n[buffer]\nflush_bytes_max = 12\n");
    assert_eq!(
        first_error(&text),
        "buffer.flush_bytes_max: must be at least 1 MiB, got 12"
    );
    let text = format!("{MINIMAL}\n[parquet]\nzstd_level = 40\n");
    assert_eq!(
        first_error(&text),
        "parquet.zstd_level: must be between 1 and 22, got 40"
    );
}

#[test]
fn all_errors_are_reported_together() {
    let text = format!("{MINIMAL}\n[buffer]\nflush_bytes_max = 12\nflush_interval_ms = 1\n");
    let errs = parse(&text).unwrap_err();
    assert_eq!(errs.0.len(), 2, "{errs}");
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let text = format!("{MINIMAL}\n[buffer]\nflush_byte_max = 1\n");
    let e = first_error(&text);
    assert!(
        e.starts_with("buffer.flush_byte_max: unknown field `flush_byte_max`"),
        "{e}"
    );
    let text = MINIMAL.replace("records = 10", "records = 10\nrecrods = 5");
    let e = first_error(&text);
    assert!(e.starts_with("sources[0].generator.recrods: unknown field"), "{e}");
    let text = format!("{MINIMAL}\n[[tables.transforms]]\nop = \"drop\"\nfield = \"a\"\ntypo = 1\n");
    let e = first_error(&text);
    assert!(e.contains("unknown field `typo`"), "{e}");
}

#[test]
fn type_errors_name_the_path() {
    let e = first_error(&MINIMAL.replace("records = 10", "records = \"ten\""));
    assert!(
        e.starts_with("sources[0].generator.records: invalid type: string \"ten\""),
        "{e}"
    );
    let e = first_error("[runtime]\ncores = 3\n");
    assert!(e.starts_with("runtime.cores:"), "{e}");
}

#[test]
fn cross_references_are_checked() {
    let e = first_error(&MINIMAL.replace("table = \"events\"", "table = \"nope\""));
    assert_eq!(e, "sources[0].table: names no table in [[tables]], got \"nope\"");
    let routed = MINIMAL.replace(
        "table = \"events\"\n[sources.generator]",
        "[sources.route]\nfield = \"event_type\"\ntables = { click = \"clicks\" }\n[sources.generator]",
    );
    assert_eq!(
        first_error(&routed),
        "sources[0].route.tables.click: names no table in [[tables]], got \"clicks\""
    );
    let both = MINIMAL.replace(
        "[sources.generator]",
        "[sources.file]\npaths = [\"x\"]\n[sources.generator]",
    );
    assert_eq!(
        first_error(&both),
        "sources[0]: set exactly one of [generator], [file], [kinesis], [http], [in_process] or [push], not several"
    );
    let kinesis = |extra: &str| {
        MINIMAL.replace(
            "[sources.generator]\nrecords = 10",
            &format!("[sources.kinesis]\nstream = \"s\"\n{extra}"),
        )
    };
    assert_eq!(
        first_error(&kinesis("")),
        "sources[0].kinesis: needs state.dir: a stream source resumes from checkpoints"
    );
    let kinesis = |extra: &str| format!("[state]\ndir = \"/tmp/s\"\n{}", kinesis(extra));
    assert!(parse(&kinesis("")).is_ok(), "a minimal Kinesis source is valid");
    assert_eq!(
        first_error(&kinesis("shard_calls_per_s_max = 6")),
        "sources[0].kinesis.shard_calls_per_s_max: must be at most 5, got 6"
    );
    assert_eq!(
        first_error(&kinesis("start = \"at_timestamp\"")),
        "sources[0].kinesis.start_timestamp: must be set (an RFC 3339 time) with start = \"at_timestamp\""
    );
    assert_eq!(
        first_error(&kinesis("start = \"at_timestamp\"\nstart_timestamp = \"yesterday\"")),
        "sources[0].kinesis.start_timestamp: must be an RFC 3339 time, got \"yesterday\""
    );
    let http = |extra: &str| {
        MINIMAL.replace(
            "[sources.generator]\nrecords = 10",
            &format!("[sources.http]\nlisten = \"127.0.0.1:8080\"\n{extra}"),
        )
    };
    assert_eq!(
        first_error(&http("")),
        "sources[0].http: needs state.dir: a stream source resumes from checkpoints"
    );
    let push = MINIMAL.replace("[sources.generator]\nrecords = 10", "[sources.push]");
    assert_eq!(
        first_error(&push),
        "sources[0].push: needs state.dir: a push returns when its checkpoint is written"
    );
    let push = format!("[state]\ndir = \"/tmp/s\"\n{push}");
    assert!(parse(&push).is_ok(), "a minimal push source is valid");
    assert_eq!(
        first_error(&push.replace("schema = \"builtin:events\"", "schema = \"infer\"")),
        "tables[0].schema: \"infer\" reads records before the run starts, and the push source \"gen\" has none then: give a schema file"
    );
    assert_eq!(
        first_error(&push.replace("[sources.push]", "[sources.push]\nqueue_bytes_max = 10")),
        "sources[0].push.queue_bytes_max: must be at least 1 MiB, got 10"
    );
    let http = |extra: &str| format!("[state]\ndir = \"/tmp/s\"\n{}", http(extra));
    assert!(parse(&http("")).is_ok(), "a minimal HTTP source is valid");
    assert_eq!(
        first_error(&http("body_bytes_max = 1000")),
        "sources[0].http.body_bytes_max: must be at least 1 MiB, got 1000"
    );
    // One bad body_bytes_max gives one error, not one per size that depends on it; a size
    // below the body names it.
    let too_big = parse(&http("body_bytes_max = 536870912")).unwrap_err().0;
    assert_eq!(too_big.len(), 1, "{too_big:?}");
    assert_eq!(
        first_error(&http("body_bytes_max = 16777216\nsegment_bytes = 8388608")),
        "sources[0].http.segment_bytes: must be at least body_bytes_max (16 MiB), got 8388608"
    );
    assert_eq!(
        first_error(&http("body_memory_bytes_max = 8388608")),
        "sources[0].http.body_memory_bytes_max: must be at least twice body_bytes_max (16 MiB), got 8388608"
    );
    assert_eq!(
        first_error(&http("token_env = \"\"")),
        "sources[0].http.token_env: must name an environment variable (or be left out: no auth)"
    );
    assert_eq!(
        first_error(&http("").replace("127.0.0.1:8080", "localhost")),
        "sources[0].http.listen: must be an IP address and port, e.g. \"127.0.0.1:8080\", got \"localhost\""
    );
    assert!(
        first_error(&http("").replace("schema = \"builtin:events\"", "schema = \"infer\""))
            .starts_with("tables[0].schema: \"infer\" reads records before the run starts, and the HTTP source")
    );
    let no_keys = MINIMAL.replace("demo = true", "");
    assert!(first_error(&no_keys).starts_with("keys: a source uses envelope encryption"));
    let dup = format!("{MINIMAL}\n[[tables]]\nname = \"events\"\nschema = \"infer\"\n");
    assert_eq!(
        first_error(&dup),
        "tables[1].name: must be unique, \"events\" appears twice"
    );
    let bad_name = MINIMAL.replace("name = \"gen\"", "name = \"my source\"");
    assert!(first_error(&bad_name).starts_with("sources[0].name: must be 1 to 64 characters"));
}

#[test]
fn the_embedded_default_is_valid() {
    let c = Config::embedded_default(1000, Path::new("/tmp/x"));
    c.validate().unwrap();
    assert_eq!(c.sources[0].generator.as_ref().unwrap().records, 1000);
    assert_eq!(c.lake.dir, Path::new("/tmp/x"));
}

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let c = Config::from_toml(&text, &dir).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            c.validate().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "expected the example configs, found {n}");
}

#[test]
fn an_in_process_source_is_valid_but_cannot_feed_infer() {
    let in_process = MINIMAL.replace("[sources.generator]\nrecords = 10", "[sources.in_process]");
    let c = parse(&in_process).unwrap();
    assert!(matches!(c.sources[0].kind(), Ok(SourceKind::InProcess(_))));
    let e = first_error(&in_process.replace("schema = \"builtin:events\"", "schema = \"infer\""));
    assert!(
        e.starts_with(
            "tables[0].schema: \"infer\" reads records before the run starts, and the in-process source \"gen\""
        ),
        "{e}"
    );
}

#[test]
fn outbox_limits_reach_the_plan_and_are_bounded() {
    use crate::pipeline::OutboxLimits;
    let plan = |text: &str| crate::engine::plan_for_test(&parse(text).unwrap()).unwrap().outbox;
    assert_eq!(plan(MINIMAL), OutboxLimits::default());
    let text = format!(
        "{MINIMAL}\n[buffer]\noutbox_memory_bytes_max = 2097152\noutbox_bookkeeping_bytes_max = 4194304\n\
         outbox_entries_max = 500\n"
    );
    assert_eq!(
        plan(&text),
        OutboxLimits {
            memory_bytes_max: 2 << 20,
            bookkeeping_bytes_max: 4 << 20,
            entries_max: 500,
        }
    );
    assert_eq!(
        first_error(&format!("{MINIMAL}\n[buffer]\noutbox_entries_max = 10\n")),
        "buffer.outbox_entries_max: must be at least 64, got 10"
    );
    assert_eq!(
        first_error(&format!("{MINIMAL}\n[buffer]\noutbox_memory_bytes_max = 1000\n")),
        "buffer.outbox_memory_bytes_max: must be at least 1 MiB, got 1000"
    );
}
