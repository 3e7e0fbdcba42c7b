//! The receiver's HTTP side on one core: its listener, its connections, and the answer to
//! each request.
//!
//! Every core binds the same address with SO_REUSEPORT (glommio's `TcpListener::bind` sets it),
//! so the kernel spreads connections over the cores and a connection lives on one core for its
//! whole life, writing to that core's inbox: no hand-off, no lock. HTTP/1.1 is hyper's (keep-
//! alive, chunked bodies, `Expect: 100-continue`), driven on the glommio executor through
//! [`Io`], a small adapter from glommio's socket to hyper's I/O traits.
//!
//! A `POST` (any path) is answered:
//! - 200 `{"records": n}` once its body is durable in the inbox (fsynced);
//! - 400 with the precise reason for bad framing or bad gzip/zstd data; 401 for a missing or
//!   wrong bearer token; 405 for another method; 413 past `body_bytes_max` (on the wire or
//!   decoded); 415 for an unknown `Content-Encoding`;
//! - 429 with `Retry-After` while the inbox holds `inbox_bytes_max` unread bytes (the pipeline
//!   is behind: backpressure); 503 with `Retry-After` while shutting down or after a disk error.
//!
//! `GET /health` answers 200 while the receiver accepts requests, 503 once it drains.
//!
//! Bounds: `connections_max` open connections per core (more wait in the listen backlog); a
//! connection idle for `idle_timeout_ms` is closed; one body of `body_bytes_max` in memory per
//! request being read, plus the inbox's pending bytes (under `inbox_bytes_max`).

use super::body::{self, Refusal};
use super::inbox::Inbox;
use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long the listener waits after a failed `accept` (out of file descriptors) before trying
/// again.
const ACCEPT_RETRY_WAIT: Duration = Duration::from_millis(50);

/// Most bytes one socket read may fill (hyper's buffer may offer more: zeroing it all first
/// would cost more than the read).
const READ_WINDOW_BYTES: usize = 64 << 10;

/// What a core's receiver needs from the configuration.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    pub listen: std::net::SocketAddr,
    /// SHA-256 of the bearer token, if auth is on (compared digest to digest).
    pub token_digest: Option<[u8; 32]>,
    pub body_bytes_max: usize,
    pub connections_max: u32,
    pub idle_timeout: Duration,
    pub retry_after_s: u32,
}

/// Requests answered since the last [`Listening::take_counts`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub accepted: u64,
    pub refused: u64,
}

struct Receiver {
    settings: ReceiverSettings,
    inbox: Rc<Inbox>,
    counts: RefCell<Counts>,
}

/// A core's running receiver; dropping it stops the listener and makes the open connections
/// answer 503 (what is already appended still commits and is answered).
pub struct Listening {
    receiver: Rc<Receiver>,
    _stop: LocalSender<()>,
}

impl Listening {
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut *self.receiver.counts.borrow_mut())
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.receiver.inbox.close();
    }
}

/// Bind the listener on this core and start accepting.
pub fn start(settings: ReceiverSettings, inbox: Rc<Inbox>) -> io::Result<Listening> {
    let listener = TcpListener::bind(settings.listen)?;
    let receiver = Rc::new(Receiver {
        settings,
        inbox,
        counts: RefCell::new(Counts::default()),
    });
    let (stop_tx, stop_rx) = local_channel::new_bounded::<()>(1);
    let r = receiver.clone();
    glommio::spawn_local(async move {
        let slots = Rc::new(Semaphore::new(r.settings.connections_max.into()));
        loop {
            let Ok(permit) = slots.acquire_static_permit(1).await else {
                return;
            };
            let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
                stop_rx.recv().await; // only ever ends: nothing is sent, the sender is dropped
                None
            })
            .await;
            match accepted {
                None => return,
                Some(Ok(stream)) => {
                    let r = r.clone();
                    glommio::spawn_local(async move {
                        serve(r, stream).await;
                        drop(permit);
                    })
                    .detach();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(ACCEPT_RETRY_WAIT).await;
                }
            }
        }
    })
    .detach();
    Ok(Listening {
        receiver,
        _stop: stop_tx,
    })
}

async fn serve(r: Rc<Receiver>, stream: TcpStream) {
    if stream.set_read_timeout(Some(r.settings.idle_timeout)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let service = hyper::service::service_fn(move |req| {
        let r = r.clone();
        async move { Ok::<_, Infallible>(r.handle(req).await) }
    });
    // A connection error (a client gone, an idle timeout) ends only that connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(Io(stream), service)
        .await;
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == Method::GET && req.uri().path() == "/health" {
            return if self.inbox.is_closed() {
                self.refuse(Refusal::new(503, "the receiver is shutting down"))
            } else {
                json(StatusCode::OK, "{\"status\":\"ok\"}".into())
            };
        }
        match self.accept(req).await {
            Ok(n) => {
                self.counts.borrow_mut().accepted += 1;
                json(StatusCode::OK, format!("{{\"records\":{n}}}"))
            }
            Err(r) => {
                self.counts.borrow_mut().refused += 1;
                self.refuse(r)
            }
        }
    }

    /// Take one request's records into the inbox; returns how many once they are durable.
    async fn accept(&self, req: Request<Incoming>) -> Result<usize, Refusal> {
        let max = self.settings.body_bytes_max;
        let announced = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(n) = announced.filter(|&n| n > max as u64) {
            // Not read: the connection closes after the answer (hyper), as nginx does.
            return Err(too_large(n, max));
        }
        let refused = self.admit(&req, announced.unwrap_or(0));
        let encoding = req
            .headers()
            .get(hyper::header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not text)").to_string());
        // Read the body even when refusing: the client then reads its answer cleanly and the
        // connection stays usable (the body is bounded like any other).
        let wire = Limited::new(req.into_body(), max).collect().await.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large(max as u64 + 1, max)
            } else {
                Refusal::new(400, format!("reading the body failed: {e}"))
            }
        });
        refused?;
        let wire = wire?.to_bytes();
        let decoded = body::decode(encoding.as_deref(), &wire, max)?;
        let n = body::records(&decoded, |_, _| {})?;
        let done = self.inbox.append(&decoded)?;
        match done.recv().await {
            Some(Ok(())) => Ok(n),
            Some(Err(e)) => Err(Refusal::new(503, format!("the inbox write failed: {e}"))),
            None => Err(Refusal::new(503, "the receiver is shutting down")),
        }
    }

    /// What refuses a request before its body matters: shutdown, method, auth, a full inbox.
    fn admit(&self, req: &Request<Incoming>, announced: u64) -> Result<(), Refusal> {
        if self.inbox.is_closed() {
            return Err(Refusal::new(503, "the receiver is shutting down"));
        }
        if req.method() != Method::POST {
            return Err(Refusal::new(
                405,
                format!("{} is not accepted: POST records", req.method()),
            ));
        }
        if let Some(want) = &self.settings.token_digest {
            let got = bearer(req.headers());
            match got {
                None => {
                    return Err(Refusal::new(
                        401,
                        "a bearer token is required (Authorization: Bearer …)",
                    ))
                }
                Some(t) if !same_digest(want, t) => return Err(Refusal::new(401, "the bearer token is not valid")),
                Some(_) => {}
            }
        }
        if !self.inbox.has_room(announced) {
            return Err(Refusal::new(
                429,
                format!(
                    "the receiver is behind: {} bytes accepted and not yet processed",
                    self.inbox.unread_bytes()
                ),
            ));
        }
        Ok(())
    }

    fn refuse(&self, r: Refusal) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json(status, serde_json::json!({ "error": r.reason }).to_string());
        let h = resp.headers_mut();
        if matches!(r.status, 429 | 503) {
            h.insert(hyper::header::RETRY_AFTER, self.settings.retry_after_s.into());
        }
        if r.status == 401 {
            h.insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

fn too_large(n: u64, max: usize) -> Refusal {
    Refusal::new(
        413,
        format!("the body is {n} bytes or more; the limit is {max} (body_bytes_max)"),
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 9110).
pub fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let (scheme, token) = headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The SHA-256 of a bearer token.
pub fn token_digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Compare a token with the expected digest without an early exit (digests of equal length,
/// so the time says nothing about the token).
pub fn same_digest(want: &[u8; 32], token: &str) -> bool {
    let got = token_digest(token);
    want.iter().zip(got.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// glommio's socket under hyper's I/O traits.
struct Io(TcpStream);

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // hyper hands a fresh uninitialised window each time: zero only what one read may fill.
        let want = buf.remaining().min(READ_WINDOW_BYTES);
        let dst = buf.initialize_unfilled_to(want);
        match futures_lite::AsyncRead::poll_read(Pin::new(&mut self.get_mut().0), cx, dst) {
            Poll::Ready(Ok(n)) => {
                // SAFETY: `initialize_unfilled` initialised every byte of `dst`, and `poll_read`
                // reported writing `n <= dst.len()` of them, so the first `n` unfilled bytes are
                // initialised and filled. Exercised by every request in source::http::tests.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        futures_lite::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().0), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().0), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::AsyncWrite::poll_close(Pin::new(&mut self.get_mut().0), cx)
    }
}
