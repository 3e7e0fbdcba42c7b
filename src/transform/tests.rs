use super::*;
use crate::extract::schema::SchemaFile;
use crate::extract::shown::Reveal;
use crate::extract::value::Val;

fn schema() -> Schema {
    let f = SchemaFile::from_json(
        r#"{"columns":[
            {"name":"email","type":"string"},
            {"name":"n","type":"int64"},
            {"name":"s","type":"string"},
            {"name":"f","type":"float64"},
            {"name":"ts","type":"timestamp"}]}"#,
    )
    .unwrap();
    Schema::compile(&f).unwrap()
}

fn keyring() -> Keyring {
    let mut k = Keyring::default();
    k.insert("pii", [5; 32]).unwrap();
    k
}

/// Run the transforms over one record; returns output names and shown values.
fn run(steps: &[TransformConfig], record: &str) -> Result<Vec<(String, String)>, Reject> {
    let s = schema();
    let t = Transforms::compile(&s, steps, &keyring()).unwrap();
    let mut buf = record.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut buf).unwrap();
    let mut slots = vec![None; s.columns.len()];
    crate::extract::flatten::flatten(&tape.0, &s.trie, &mut slots).unwrap();
    let mut scratch = String::new();
    let inputs: Vec<Val> = s
        .columns
        .iter()
        .zip(&slots)
        .map(|(c, slot)| c.convert(&tape.0, slot.map(|i| i as usize), &mut scratch).unwrap())
        .collect();
    let meta = MetaValues {
        ingest_time_us: 1_000_000,
        source: "src",
        partition: "p7",
        position: 42,
    };
    let mut out = Vec::new();
    t.apply(&inputs, &tape.0, &mut scratch, &meta, &mut out)?;
    let refs = RecordRefs {
        nodes: &tape.0,
        scratch: &scratch,
    };
    Ok(t.outputs
        .iter()
        .zip(&out)
        .map(|(o, v)| (o.name.clone(), show(*v, refs)))
        .collect())
}

const RECORD: &str = r#"{"email":"ada@example.com","n":7,"s":"12","f":2.0,"ts":"2026-11-26T10:00:00Z"}"#;

#[test]
fn rename_drop_and_metadata_change_the_plan() {
    let got = run(
        &[
            TransformConfig::Rename {
                field: "n".into(),
                to: "count".into(),
            },
            TransformConfig::Drop { field: "s".into() },
            TransformConfig::Drop { field: "f".into() },
            TransformConfig::IngestMetadata,
        ],
        RECORD,
    )
    .unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "email",
            "count",
            "ts",
            "_ingest_time",
            "_source",
            "_partition",
            "_position"
        ]
    );
    assert_eq!(got[1].1, "7");
    assert_eq!(got[3].1, "1970-01-01T00:00:01.000000Z");
    assert_eq!(
        (got[4].1.as_str(), got[5].1.as_str(), got[6].1.as_str()),
        ("src", "p7", "42")
    );
}

#[test]
fn hash_and_mask_pii() {
    let got = run(
        &[
            TransformConfig::Hash {
                field: "email".into(),
                key_id: "pii".into(),
            },
            TransformConfig::Mask {
                field: "s".into(),
                keep_last: 1,
            },
        ],
        RECORD,
    )
    .unwrap();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[5; 32]),
        b"ada@example.com",
    );
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got[0].1, hex);
    assert_eq!(got[2].1, "*2");
    // Masking more than the value keeps it whole; multibyte characters count as one.
    let got = run(
        &[TransformConfig::Mask {
            field: "email".into(),
            keep_last: 3,
        }],
        r#"{"email":"čšžab"}"#,
    )
    .unwrap();
    assert_eq!(got[0].1, "**žab");
}

#[test]
fn casts_convert_or_reject_with_the_value() {
    let cast = |field: &str, to: &str| TransformConfig::Cast {
        field: field.into(),
        to: to.into(),
    };
    let got = run(
        &[
            cast("s", "int64"),
            cast("n", "string"),
            cast("f", "int64"),
            cast("ts", "string"),
        ],
        RECORD,
    )
    .unwrap();
    assert_eq!(got[2].1, "12");
    assert_eq!(got[1].1, "7");
    assert_eq!(got[3].1, "2");
    assert_eq!(got[4].1, "2026-11-26T10:00:00.000000Z");
    let e = run(&[cast("s", "int64")], r#"{"s":"twelve"}"#).unwrap_err();
    assert_eq!((e.stage, e.rule), (Stage::Transform, Rule::Cast));
    assert_eq!(
        e.clone().reveal(Reveal::Truncated).message,
        "cannot cast \"twelve\" to int64"
    );
    assert_eq!(
        e.clone().reveal(Reveal::Withheld).message,
        "cannot cast a string of 6 characters to int64"
    );
    assert_eq!(e.field.as_deref(), Some("s"));
    let e = run(&[cast("f", "int64")], r#"{"f":2.5}"#).unwrap_err();
    assert_eq!(e.reveal(Reveal::Truncated).message, "cannot cast 2.5 to int64");
    // Nulls pass through every operation.
    let got = run(&[cast("s", "int64")], r#"{}"#).unwrap();
    assert_eq!(got[2].1, "null");
}

#[test]
fn compile_errors_name_the_step() {
    let s = schema();
    let k = keyring();
    let err = |steps: &[TransformConfig]| Transforms::compile(&s, steps, &k).unwrap_err();
    assert_eq!(
        err(&[TransformConfig::Drop { field: "zz".into() }]),
        "transforms[0]: no column named \"zz\" at this step"
    );
    assert_eq!(
        err(&[TransformConfig::Rename {
            field: "n".into(),
            to: "email".into()
        }]),
        "transforms[0]: a column named \"email\" already exists"
    );
    assert!(err(&[TransformConfig::Hash {
        field: "n".into(),
        key_id: "pii".into()
    }])
    .contains("cast it to string first"));
    assert!(err(&[TransformConfig::Hash {
        field: "email".into(),
        key_id: "nokey".into()
    }])
    .contains("not in the keyring"));
    assert!(err(&[TransformConfig::Cast {
        field: "ts".into(),
        to: "boolean".into()
    }])
    .contains("cannot cast \"ts\" from timestamp to boolean"));
    // Later steps see earlier renames.
    assert!(Transforms::compile(
        &s,
        &[
            TransformConfig::Rename {
                field: "n".into(),
                to: "m".into()
            },
            TransformConfig::Drop { field: "n".into() }
        ],
        &k
    )
    .is_err());
}
