//! A scripted Kinesis endpoint on 127.0.0.1 for benches and tests: real HTTP/1.1 and the JSON
//! protocol the SDK speaks, answers decided by a function of the call. It exists for what no
//! emulator does on demand — throttling, expired iterators, a recorded response replayed at
//! full speed — and records every call so a test can check pacing and resumption.
//!
//! Bounds: one thread per connection (the SDK keeps a few per runtime); bodies are read whole;
//! every call is kept (a bench's run is minutes of calls), counted per operation as it comes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One call the endpoint received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `ListShards`, `GetShardIterator`, `GetRecords`, …
    pub op: String,
    pub body: String,
    pub at: Instant,
}

/// An answer: HTTP status and JSON body (borrowed when it is a recording replayed as is).
pub type Answer = (u16, std::borrow::Cow<'static, str>);

/// The error body of a Kinesis exception (`__type` is how the JSON protocol names it).
pub fn error(status: u16, kind: &str) -> Answer {
    (status, format!(r#"{{"__type":"{kind}","message":"scripted"}}"#).into())
}

/// Every call so far, and how many of each operation.
#[derive(Default)]
struct Log {
    calls: Vec<Call>,
    per_op: HashMap<String, usize>,
}

pub struct Replay {
    pub port: u16,
    log: Arc<Mutex<Log>>,
    /// CPU nanoseconds the connection threads spent, up to each one's last answer written.
    cpu_ns: Arc<AtomicU64>,
}

impl Replay {
    /// Serve `answer(call, calls so far of the same op)` on a free port.
    pub fn start(answer: impl Fn(&Call, usize) -> Answer + Send + Sync + 'static) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let log: Arc<Mutex<Log>> = Arc::default();
        let answer = Arc::new(answer);
        let (served, cpu_ns) = (log.clone(), Arc::<AtomicU64>::default());
        let spent = cpu_ns.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (answer, log, spent) = (answer.clone(), served.clone(), spent.clone());
                std::thread::spawn(move || serve(conn, &*answer, &log, &spent));
            }
        });
        Replay { port, log, cpu_ns }
    }

    /// CPU time the endpoint itself spent answering (its connection threads, as of each one's
    /// last answer): what a bench subtracts to charge the client only for its own side.
    pub fn server_cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The calls of one operation so far.
    pub fn calls(&self, op: &str) -> Vec<Call> {
        let log = self.log.lock().expect("not poisoned");
        log.calls.iter().filter(|c| c.op == op).cloned().collect()
    }

    /// How many calls of any operation so far.
    pub fn call_count(&self) -> usize {
        self.log.lock().expect("not poisoned").calls.len()
    }
}

fn serve(
    conn: TcpStream,
    answer: &(dyn Fn(&Call, usize) -> Answer + Send + Sync),
    log: &Mutex<Log>,
    spent: &AtomicU64,
) {
    let mut charged = crate::telemetry::cpu::thread();
    let _ = conn.set_nodelay(true);
    let Ok(read_half) = conn.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut out = conn;
    loop {
        let (mut len, mut op) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("x-amz-target:") {
                op = line.trim().rsplit('.').next().unwrap_or("").to_string();
            } else if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let call = Call {
            op,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        };
        let (status, reply) = {
            let mut log = log.lock().expect("not poisoned");
            let seen = log.per_op.entry(call.op.clone()).or_default();
            let n = *seen;
            *seen += 1;
            log.calls.push(call.clone());
            drop(log);
            answer(&call, n)
        };
        let reason = if status == 200 { "OK" } else { "Error" };
        if write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        )
        .is_err()
        {
            return;
        }
        let now = crate::telemetry::cpu::thread();
        spent.fetch_add((now - charged).as_nanos() as u64, Ordering::Relaxed);
        charged = now;
    }
}

/// A ListShards answer with shards `shardId-000000000000` … of `n`.
pub fn list_shards(n: usize) -> String {
    let shards: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"ShardId":"shardId-{i:012}","HashKeyRange":{{"StartingHashKey":"0","EndingHashKey":"1"}},"SequenceNumberRange":{{"StartingSequenceNumber":"1"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"Shards":[{}]}}"#, shards.join(","))
}

/// A GetRecords answer: `(sequence number, data)` records, the next iterator (`None`: the
/// shard is closed and read to its end).
pub fn get_records(records: &[(String, Vec<u8>)], next: Option<&str>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let recs: Vec<String> = records
        .iter()
        .map(|(seq, data)| {
            format!(
                r#"{{"SequenceNumber":"{seq}","ApproximateArrivalTimestamp":1.7645e9,"Data":"{}","PartitionKey":"pk"}}"#,
                b64.encode(data)
            )
        })
        .collect();
    let next = next.map_or("null".to_string(), |n| format!("\"{n}\""));
    format!(
        r#"{{"Records":[{}],"NextShardIterator":{next},"MillisBehindLatest":1500}}"#,
        recs.join(",")
    )
}
