//! The HTTP receiver target: each lane holds one HTTP/1.1 connection (hyper's client) and
//! POSTs one body of `batch` records per request (NDJSON, or `SGF1` envelopes), with the
//! bearer token if one is given. 200 means the records are durable in the receiver's inbox;
//! 429 and 503 are refusals (counted, not retried: the schedule goes on, open loop); any other
//! answer or a broken connection is an error, and the lane reconnects for its next request.
//!
//! Bounds: one connection and one request in flight per lane; a request waits at most
//! [`REQUEST_TIMEOUT`] for its answer.

use crate::events::{BodyFormat, Counts, Events};
use crate::lane::Client;
use crate::profile::Slot;
use crate::record::Answer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// How long a request may wait for its answer before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct HttpClient {
    pub events: Arc<Events>,
    /// `host:port` to connect to.
    pub addr: String,
    /// The request URI (path), and the Host header.
    pub path: String,
    pub token: Option<String>,
    sender: Option<SendRequest<Full<Bytes>>>,
    plain: String,
    /// The first error, to tell the user why requests failed.
    pub first_error: Option<String>,
}

impl HttpClient {
    /// `url`: `http://host:port/path`.
    pub fn new(events: Arc<Events>, url: &str, token: Option<String>) -> Result<HttpClient, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {url:?}: only http:// URLs (the receiver speaks plain HTTP/1.1)"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if addr.is_empty() {
            return Err(format!("--url {url:?}: no host"));
        }
        Ok(HttpClient {
            events,
            addr: addr.to_string(),
            path: path.to_string(),
            token,
            sender: None,
            plain: String::new(),
            first_error: None,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn post(&mut self, body: Bytes) -> Result<u16, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let content_type = match self.events.format() {
            BodyFormat::Ndjson => "application/x-ndjson",
            BodyFormat::Framed => "application/octet-stream",
        };
        let mut req = hyper::Request::post(self.path.as_str())
            .header("host", self.addr.as_str())
            .header("content-type", content_type);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let sender = self.sender.as_mut().expect("connected above");
        let answer = async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            // Read the (small) answer body so the connection can carry the next request.
            resp.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<u16, String>(status)
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

impl Client for HttpClient {
    type Request = (Bytes, Counts);

    fn first_error(&self) -> Option<String> {
        self.first_error.clone()
    }

    fn prepare(&mut self, slot: Slot) -> (Bytes, Counts) {
        let mut body = Vec::with_capacity(1 << 20);
        let counts = self.events.body(slot, &mut self.plain, &mut body);
        (Bytes::from(body), counts)
    }

    async fn send(&mut self, (body, counts): (Bytes, Counts)) -> Answer {
        match self.post(body).await {
            Ok(200) => Answer {
                accepted: counts.records,
                accepted_good: counts.good,
                ..Answer::default()
            },
            Ok(429 | 503) => Answer {
                refused: counts.records,
                ..Answer::default()
            },
            other => {
                let why = match other {
                    Ok(status) => format!("answered HTTP {status}"),
                    Err(e) => e,
                };
                self.first_error.get_or_insert(why);
                Answer {
                    refused: counts.records,
                    error: true,
                    ..Answer::default()
                }
            }
        }
    }
}
