//! Upload throughput of the two object stores in one run: files of the size the ETL zone
//! writes, into the local directory (O_DIRECT + fsync + rename, as in production) and into a
//! local S3-compatible server (`s3s-fs` on 127.0.0.1, keeping its objects on the same disk),
//! single PUT and multipart. Needs `s3s-fs` (tests/run installs it; or set S3S_FS).
//!
//!   cargo bench --bench store

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluicegate::config::S3Config;
use sluicegate::store::s3::S3Store;
use sluicegate::store::{LocalDirStore, ObjectStore};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// An ETL file of the default sizes: 8 MiB (one PUT) and 32 MiB (multipart, 8 MiB parts).
const SIZES: [usize; 2] = [8 << 20, 32 << 20];

fn s3s_fs(root: &std::path::Path, port: u16) -> std::process::Child {
    let bin = std::env::var("S3S_FS").unwrap_or_else(|_| {
        let home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
        format!("{home}/bin/s3s-fs")
    });
    std::fs::create_dir_all(root.join("lake")).unwrap();
    let child = Command::new(&bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "b",
            "--secret-key",
            "bs",
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (install s3s-fs 0.14.1 or set S3S_FS)"));
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

fn stores(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into())).unwrap();
    let mut server = s3s_fs(&dir.path().join("s3"), 18098);
    let local = LocalDirStore::new(&dir.path().join("local"), true).unwrap();
    let s3 = S3Store::with_credentials(
        &S3Config {
            bucket: "lake".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:18098".into()),
            path_style: true,
            ..S3Config::default()
        },
        Some(("b", "bs")),
    )
    .unwrap();
    let seq = AtomicU64::new(0);
    let mut g = c.benchmark_group("store_put");
    g.sample_size(10);
    for size in SIZES {
        let body = bytes::Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
        g.throughput(Throughput::Bytes(size as u64));
        let stores: [(&str, &dyn ObjectStore); 2] = [("local_dir", &local), ("s3s_fs", &s3)];
        for (name, store) in stores {
            g.bench_function(format!("{name}/{}MiB", size >> 20), |b| {
                b.iter(|| {
                    let key = format!("etl/bench/{}.parquet", seq.fetch_add(1, Ordering::Relaxed));
                    store.put_shared(&key, &body).unwrap();
                })
            });
        }
    }
    g.finish();
    server.kill().unwrap();
    server.wait().unwrap();
}

criterion_group!(benches, stores);
criterion_main!(benches);
