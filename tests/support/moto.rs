//! A real Kinesis endpoint for the tests: moto's server (PyPI `moto[server]`) through
//! `tests/moto_server.py` (which makes its resharding behave as the service documents it),
//! started on a free port of 127.0.0.1, and the producer script `tests/kinesis_put.py` (boto3,
//! aws-kinesis-agg). `tests/run` installs both; a test that cannot start them fails saying how.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto_server.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "starting tests/moto_server.py: install moto with `pip install 'moto[server]' awscrt crc32c` (tests/run does)",
            );
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run `tests/kinesis_put.py <args>` against this server; its stdout.
    pub fn put_py(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kinesis_put.py");
        let out = Command::new("python3")
            .arg(script)
            .args(args)
            .args(["--endpoint", &self.endpoint()])
            .output()
            .expect("running tests/kinesis_put.py");
        assert!(
            out.status.success(),
            "kinesis_put.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The environment the binary needs to sign its requests (moto takes any credentials).
    pub fn env(cmd: &mut Command) -> &mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
