//! A real S3-compatible server for the tests: `s3s-fs` (crates.io; checks SigV4 signatures and
//! checksums, keeps objects as files under its root), started on a free port of 127.0.0.1.
//! `tests/run` installs it; a test that needs it and cannot find it fails saying how to install.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "sluicegate-test";
pub const SECRET_KEY: &str = "sluicegate-test-secret";
pub const BUCKET: &str = "lake";

pub struct S3Server {
    child: Option<Child>,
    pub root: PathBuf,
    pub port: u16,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return p.into();
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    let p = home.join("bin/s3s-fs");
    assert!(
        p.exists(),
        "s3s-fs not found at {}: install it with `cargo install s3s-fs@0.14.1 --features binary --locked` (tests/run does), or set S3S_FS",
        p.display()
    );
    p
}

impl S3Server {
    /// Start a server keeping its objects under `root`, with the bucket [`BUCKET`].
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = S3Server {
            child: None,
            root: root.to_path_buf(),
            port,
        };
        s.restart();
        s
    }

    /// Start it again on the same port and root (after [`S3Server::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on port {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL the server: an S3 outage as the client sees it (connections refused).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[lake.s3]` section pointing at this server.
    pub fn lake_toml(&self, extra: &str) -> String {
        format!(
            "[lake.s3]\nbucket = \"{BUCKET}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\npath_style = true\n{extra}\n",
            self.endpoint()
        )
    }

    /// The environment the binary needs to sign its requests for this server.
    pub fn env(cmd: &mut Command) -> &mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
    }

    /// Where the objects of the bucket are on disk (s3s-fs keeps one file per object).
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
