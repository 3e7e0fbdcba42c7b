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
//! Everything that can refuse a request from its headers does so before a byte of its body is
//! read, and the connection is then closed (`Connection: close`; hyper drops the unread body):
//! shutdown, method, bearer token, `Content-Length` past `body_bytes_max`, an unknown
//! `Content-Encoding`, a full inbox, and a full body memory budget. A client without the token
//! costs a core its header buffer, nothing more.
//!
//! Bounds, per core: request bodies in memory ≤ `body_memory_bytes_max` ([`Budget`]: a request
//! is granted its announced length before its body is read, or grows its grant as a chunked
//! body or a decoder fills; past the budget, 503 with `Retry-After`; the grant is held until the
//! request is answered, covering its copy in the inbox's pending buffer); at most
//! `connections_max` connections (see `connections.rs`: deadlines per phase, the oldest idle
//! connection closed to make room), each with a read buffer of at most
//! [`HEADER_BUFFER_BYTES`]. So the receiver's memory on a core is at most
//! `body_memory_bytes_max + connections_max × HEADER_BUFFER_BYTES` (64 MiB + 64 MiB by
//! default), whatever the clients do.

use super::body::{self, Encoding, Refusal};
use super::connections::{Deadlines, Io, Phase, Stream, Table};
use super::inbox::Inbox;
use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// How long the listener waits after a failed `accept` (out of file descriptors) before trying
/// again.
const ACCEPT_RETRY_WAIT: Duration = Duration::from_millis(50);

/// hyper's read buffer per connection, at most (its default is ~400 KiB): request headers
/// beyond it are answered 431. 64 KiB holds any sane header block, and keeps 1,024 connections
/// at 64 MiB per core.
pub const HEADER_BUFFER_BYTES: usize = 64 << 10;

/// What a core's receiver needs from the configuration.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    pub listen: std::net::SocketAddr,
    /// The bearer token, if auth is on (`crate::bearer`).
    pub token: Option<crate::bearer::Token>,
    pub body_bytes_max: usize,
    pub body_memory_bytes_max: usize,
    pub records_max: usize,
    pub connections_max: u32,
    pub deadlines: Deadlines,
    pub retry_after_s: u32,
    /// Serve HTTPS with this certificate (reloaded on SIGHUP).
    pub tls: Option<std::sync::Arc<crate::tls::Certificate>>,
}

/// Requests answered since the last [`Listening::take_counts`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub accepted: u64,
    pub refused: u64,
}

struct Receiver {
    settings: ReceiverSettings,
    tls: Option<futures_rustls::TlsAcceptor>,
    inbox: Rc<Inbox>,
    budget: Rc<Budget>,
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
        budget: Rc::new(Budget::new(settings.body_memory_bytes_max)),
        tls: settings
            .tls
            .as_ref()
            .map(|c| futures_rustls::TlsAcceptor::from(c.server_config())),
        settings,
        inbox,
        counts: RefCell::new(Counts::default()),
    });
    let (stop_tx, stop_rx) = local_channel::new_bounded::<()>(1);
    let r = receiver.clone();
    glommio::spawn_local(async move {
        let max = r.settings.connections_max as usize;
        let table = Rc::new(Table::new(r.settings.deadlines));
        // A place in the table per permit: a new connection past `max` first makes an unserved
        // one close, then waits for its place.
        let places = Rc::new(Semaphore::new(max as u64));
        loop {
            let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
                stop_rx.recv().await; // only ever ends: nothing is sent, the sender is dropped
                None
            })
            .await;
            let stream = match accepted {
                None => return,
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(ACCEPT_RETRY_WAIT).await;
                    continue;
                }
            };
            let permit = match places.try_acquire_static_permit(1) {
                Ok(p) => p,
                Err(_) => {
                    table.evict_oldest_unserved();
                    let Ok(p) = places.acquire_static_permit(1).await else {
                        return;
                    };
                    p
                }
            };
            let (entry, nudged) = table.insert();
            let r = r.clone();
            glommio::spawn_local(async move {
                let conn = entry.conn.clone();
                futures_lite::future::or(serve(r, stream, conn.clone()), conn.watchdog(nudged)).await;
                drop(entry);
                drop(permit);
            })
            .detach();
        }
    })
    .detach();
    Ok(Listening {
        receiver,
        _stop: stop_tx,
    })
}

async fn serve(r: Rc<Receiver>, stream: TcpStream, conn: Rc<super::connections::Conn>) {
    if stream.set_read_timeout(Some(r.settings.deadlines.idle)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    match r.tls.clone() {
        None => serve_http(r, Io { stream, conn }).await,
        Some(acceptor) => {
            // The handshake is held to the header deadline, as a request's headers are.
            conn.enter(Phase::Headers);
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            conn.enter(Phase::Idle);
            serve_http(r, Io { stream, conn }).await
        }
    }
}

async fn serve_http<S: Stream>(r: Rc<Receiver>, io: Io<S>) {
    let c = io.conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let (r, c) = (r.clone(), c.clone());
        async move {
            c.enter(Phase::Body);
            let resp = r.handle(req, &c).await;
            c.enter(Phase::Idle);
            Ok::<_, Infallible>(resp)
        }
    });
    // A connection error (a client gone, an idle timeout) ends only that connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(HEADER_BUFFER_BYTES)
        .serve_connection(io, service)
        .await;
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>, conn: &super::connections::Conn) -> Response<Full<Bytes>> {
        if req.method() == Method::GET && req.uri().path() == "/health" {
            return if self.inbox.is_closed() {
                self.refuse(Refusal::new(503, "the receiver is shutting down"), false)
            } else {
                json(StatusCode::OK, "{\"status\":\"ok\"}".into())
            };
        }
        match self.accept(req, conn).await {
            Ok(n) => {
                self.counts.borrow_mut().accepted += 1;
                json(StatusCode::OK, format!("{{\"records\":{n}}}"))
            }
            Err((r, body_read)) => {
                self.counts.borrow_mut().refused += 1;
                self.refuse(r, !body_read)
            }
        }
    }

    /// Take one request's records into the inbox; returns how many once they are durable. A
    /// refusal says whether the body was read (if not, the connection closes).
    async fn accept(&self, req: Request<Incoming>, conn: &super::connections::Conn) -> Result<usize, (Refusal, bool)> {
        let unread = |r: Refusal| (r, false);
        let max = self.settings.body_bytes_max;
        let announced = content_length(&req).map_err(unread)?;
        self.admit(&req).map_err(unread)?;
        if let Some(n) = announced.filter(|&n| n > max as u64) {
            return Err(unread(too_large(n, max)));
        }
        let encoding = Encoding::from_header(req.headers().get(hyper::header::CONTENT_ENCODING).map(|v| v.as_bytes()))
            .map_err(unread)?;
        if !self.inbox.has_room(announced.unwrap_or(0)) {
            return Err(unread(Refusal::new(
                429,
                format!(
                    "the receiver is behind: {} bytes accepted and not yet processed",
                    self.inbox.unread_bytes()
                ),
            )));
        }
        // The announced body is granted whole before it is read; a chunked one grows its grant.
        let mut grant = self.budget.grant(announced.unwrap_or(0) as usize).map_err(unread)?;
        let wire = read_body(req.into_body(), max, announced, &mut grant)
            .await
            .map_err(|r| (r, false))?;
        let decoded = body::decode(encoding, &wire, max, &mut |n| grant.grow(n)).map_err(|r| (r, true))?;
        let n = body::records(&decoded, self.settings.records_max, |_, _| {}).map_err(|r| (r, true))?;
        let done = self.inbox.append(&decoded).map_err(|r| (r, true))?;
        // The inbox holds its own copy until the commit; the grant still counts it.
        drop(decoded);
        drop(wire);
        conn.enter(Phase::Committing);
        let answer = match done.recv().await {
            Some(Ok(())) => Ok(n),
            Some(Err(e)) => Err((Refusal::new(503, format!("the inbox write failed: {e}")), true)),
            None => Err((Refusal::new(503, "the receiver is shutting down"), true)),
        };
        drop(grant);
        answer
    }

    /// What refuses a request from its first line and headers: shutdown, method, auth.
    fn admit(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        if self.inbox.is_closed() {
            return Err(Refusal::new(503, "the receiver is shutting down"));
        }
        if let Some(e) = self.inbox.failure() {
            return Err(Refusal::new(503, format!("the inbox cannot be written: {e}")));
        }
        if req.method() != Method::POST {
            return Err(Refusal::new(
                405,
                format!("{} is not accepted: POST records", req.method()),
            ));
        }
        if let Some(token) = &self.settings.token {
            token.check(req.headers()).map_err(|r| Refusal::new(401, r.message()))?;
        }
        Ok(())
    }

    /// The answer to a refused request; `close` when its body was left unread.
    fn refuse(&self, r: Refusal, close: bool) -> Response<Full<Bytes>> {
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
        if close {
            h.insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// The `Content-Length` a request announces (none for a chunked body), or 400.
fn content_length(req: &Request<Incoming>) -> Result<Option<u64>, Refusal> {
    match req.headers().get(hyper::header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| Refusal::new(400, "Content-Length is not a number")),
    }
}

/// Read a body of at most `max` bytes into one buffer (sized once when announced), growing the
/// grant as a chunked body arrives.
async fn read_body(
    mut body: Incoming,
    max: usize,
    announced: Option<u64>,
    grant: &mut Grant,
) -> Result<Vec<u8>, Refusal> {
    let mut wire = Vec::with_capacity(announced.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refusal::new(400, format!("reading the body failed: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if wire.len() + data.len() > max {
            return Err(too_large(max as u64 + 1, max));
        }
        if wire.len() + data.len() > wire.capacity() {
            let capacity = (wire.len() + data.len()).max(2 * wire.capacity()).min(max);
            grant.grow(capacity - wire.capacity())?;
            wire.reserve_exact(capacity - wire.len());
        }
        wire.extend_from_slice(&data);
    }
    Ok(wire)
}

/// One core's budget for request bodies in memory (`body_memory_bytes_max`).
pub struct Budget {
    used: Cell<usize>,
    max: usize,
}

/// Bytes granted to one request, returned to the budget when dropped.
pub struct Grant {
    budget: Rc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(max: usize) -> Budget {
        Budget {
            used: Cell::new(0),
            max,
        }
    }

    /// Grant `bytes` now, or 503 when they do not fit.
    pub fn grant(self: &Rc<Self>, bytes: usize) -> Result<Grant, Refusal> {
        let mut g = Grant {
            budget: self.clone(),
            bytes: 0,
        };
        g.grow(bytes)?;
        Ok(g)
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.get()
    }
}

impl Grant {
    /// Add `bytes` to the grant, or 503 when they do not fit.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Refusal> {
        let b = &self.budget;
        if b.used.get() + bytes > b.max {
            return Err(Refusal::new(
                503,
                format!(
                    "the receiver is reading {} bytes of bodies and has no room for {bytes} more (body_memory_bytes_max {})",
                    b.used.get(),
                    b.max
                ),
            ));
        }
        b.used.set(b.used.get() + bytes);
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.used.set(self.budget.used.get() - self.bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_grants_what_fits_and_takes_it_back_on_drop() {
        let b = Rc::new(Budget::new(100));
        let mut g = b.grant(60).unwrap();
        assert_eq!(b.grant(41).err().unwrap().status, 503);
        g.grow(40).unwrap();
        assert!(g.grow(1).unwrap_err().reason.contains("body_memory_bytes_max 100"));
        assert_eq!(b.used(), 100);
        drop(g);
        assert_eq!(b.used(), 0);
        assert!(b.grant(100).is_ok());
    }
}
