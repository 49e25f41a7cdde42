//! One client connection's limits: the caps on how many are open (in all, and per client
//! address), the timeouts that close a connection whose caller is too slow, and what a
//! refused connection is told.
//!
//! The timeouts live in the connection's I/O ([`Guarded`]) and in its request bodies
//! ([`DeadlineBody`]), so they hold alike for HTTP/1.1 and HTTP/2, plain or TLS:
//! - a request head must be complete within `header_read_timeout` of the connection opening,
//!   or of the first byte of a later request; bytes trickling in do not extend it;
//! - a connection with no request in progress is closed after `idle_timeout`;
//! - a request body must be complete within `body_read_timeout` of its head (408 otherwise);
//! - a caller that takes none of its answer for `send_timeout` is disconnected (for HTTP/2
//!   this watches the connection's socket; a single stream held up by flow control while the
//!   connection moves is not timed).
//!
//! When `max_connections` are open, a new connection takes the place of the one that has
//! waited longest without a request in progress (idle, or still sending its head), so that
//! idle and slow connections cannot lock callers out; only when every connection is busy with
//! a request is the new one refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::Peer;
use crate::config::ServerConfig;
use crate::server::error::ApiError;
use crate::telemetry::Metrics;

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a request head may take (from the connection opening, or from the first byte of
    /// a later request).
    pub header_read_timeout: Duration,
    /// Longest a request body may take, from the end of its head.
    pub body_read_timeout: Duration,
    /// Longest a connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Longest a caller may go without taking any of its answer.
    pub send_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one address; 0 for no cap.
    pub max_connections_per_client: usize,
    /// How long requests in flight may take to finish once shutdown starts; the listener
    /// closes what is left a little before it, so the audit log can close in time.
    pub shutdown_deadline: Duration,
}

impl Limits {
    /// The limits `[server]` sets.
    pub fn from_config(config: &ServerConfig) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            header_read_timeout: ms(config.header_read_timeout_ms),
            body_read_timeout: ms(config.body_read_timeout_ms),
            idle_timeout: ms(config.idle_timeout_ms),
            send_timeout: ms(config.send_timeout_ms),
            max_connections: config.max_connections,
            max_connections_per_client: config.max_connections_per_client,
            shutdown_deadline: ms(config.shutdown_deadline_ms),
        }
    }

    /// What is kept of the shutdown deadline for closing the audit log after the connections:
    /// a tenth of it, at most a second.
    pub fn shutdown_reserve(&self) -> Duration {
        (self.shutdown_deadline / 10).min(Duration::from_secs(1))
    }

    /// How long connections may drain once shutdown starts.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_deadline
            .saturating_sub(self.shutdown_reserve())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&ServerConfig::default())
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every connection is busy with a request.
    Total,
    /// The caller's address has its share.
    PerClient,
}

impl Refused {
    fn reason(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerClient => "max_connections_per_client",
        }
    }
}

/// Who may connect: the open connections, per address, and which to evict when full.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    open: usize,
    /// Connections told to close that have not closed yet.
    evicting: usize,
    per_client: HashMap<IpAddr, usize>,
    connections: HashMap<u64, Arc<Activity>>,
    next_id: u64,
}

/// What the parts of one connection share.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Requests whose answer is not finished.
    in_flight: AtomicUsize,
    /// Requests whose answer is finished.
    finished: AtomicU64,
    /// Milliseconds after the admission's epoch when the connection last had no request.
    quiet_since_ms: AtomicU64,
    /// Set when the connection is told to make room for a new one.
    evicted: AtomicBool,
    /// The connection's reader, waiting while a request was in progress: woken when the last
    /// one ends, so that it starts the idle clock.
    reader: futures_util::task::AtomicWaker,
    /// Wakes the connection's task to close it.
    pub(crate) evict: tokio::sync::Notify,
}

impl Activity {
    /// Whether a request is in progress.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    ip: IpAddr,
    pub(crate) activity: Arc<Activity>,
}

impl Admission {
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>) -> Admission {
        Admission {
            limits,
            metrics,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Gives a new connection from `ip` a place, evicting the connection that has waited
    /// longest without a request when every place is taken.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let ip = ip.to_canonical();
        let now = self.now_ms();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let cap = self.limits.max_connections_per_client;
        let mine = table.per_client.get(&ip).copied().unwrap_or(0);
        let refused = |reason: Refused| {
            self.metrics.connection_refused(reason.reason());
            Err(reason)
        };
        if cap > 0 && mine >= cap {
            return refused(Refused::PerClient);
        }
        if table.open - table.evicting >= self.limits.max_connections {
            let victim = table
                .connections
                .values()
                .filter(|a| {
                    a.in_flight.load(Ordering::Acquire) == 0 && !a.evicted.load(Ordering::Relaxed)
                })
                .min_by_key(|a| a.quiet_since_ms.load(Ordering::Relaxed))
                .cloned();
            let Some(victim) = victim else {
                return refused(Refused::Total);
            };
            victim.evicted.store(true, Ordering::Relaxed);
            victim.evict.notify_one();
            table.evicting += 1;
            self.metrics.connection_closed("evicted");
        }
        let id = table.next_id;
        table.next_id += 1;
        table.open += 1;
        *table.per_client.entry(ip).or_default() += 1;
        let activity = Arc::new(Activity {
            quiet_since_ms: AtomicU64::new(now),
            ..Activity::default()
        });
        table.connections.insert(id, Arc::clone(&activity));
        self.metrics.connections_open.inc();
        Ok(Ticket {
            admission: Arc::clone(self),
            id,
            ip,
            activity,
        })
    }
}

impl Ticket {
    pub(crate) fn admission(&self) -> Arc<Admission> {
        Arc::clone(&self.admission)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self
            .admission
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        table.open = table.open.saturating_sub(1);
        if self.activity.evicted.load(Ordering::Relaxed) {
            table.evicting = table.evicting.saturating_sub(1);
        }
        table.connections.remove(&self.id);
        if let Some(n) = table.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.per_client.remove(&self.ip);
            }
        }
        self.admission.metrics.connections_open.dec();
    }
}

/// What a refused plain-HTTP connection is sent before it is closed (one non-blocking write;
/// a TLS connection is closed without a word).
pub(crate) fn refusal_bytes() -> &'static [u8] {
    static REFUSAL: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let body = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"the gateway has too many open connections; try again shortly"}]}"#;
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    &REFUSAL
}

/// The error a timed-out read or write ends the connection with.
fn timed_out(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

/// Whether the first bytes are HTTP/2's connection preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// This many bytes of `PRI ` seen so far.
    Unknown(usize),
    Http1,
    Http2,
}

/// A connection's I/O, closed (with an error to hyper) when the caller is too slow: reading
/// a head, idle between requests, or taking its answer.
pub(crate) struct Guarded<I> {
    io: I,
    activity: Arc<Activity>,
    admission: Arc<Admission>,
    opened: Instant,
    /// The `finished` count last seen: when it moves, a request ended.
    seen: u64,
    /// When the head of the next request started to arrive.
    head_started: Option<Instant>,
    protocol: Protocol,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_stalled: Option<Instant>,
    /// Why the connection was closed, once it was.
    closed: Option<&'static str>,
}

impl<I> Guarded<I> {
    pub(crate) fn new(io: I, ticket: &Ticket) -> Guarded<I> {
        let now = Instant::now();
        Guarded {
            io,
            activity: Arc::clone(&ticket.activity),
            admission: Arc::clone(&ticket.admission),
            opened: now,
            seen: 0,
            head_started: None,
            protocol: Protocol::Unknown(0),
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            read_deadline: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            write_stalled: None,
            closed: None,
        }
    }

    /// When the connection must have a request head by, and which timeout that is; `None`
    /// while a request is in progress.
    fn read_deadline(&mut self) -> Option<(Instant, &'static str)> {
        if self.activity.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.observe();
        let limits = &self.admission.limits;
        if self.seen == 0 {
            return Some((self.opened + limits.header_read_timeout, "header_timeout"));
        }
        match self.head_started {
            // HTTP/2 sends frames (pings, settings) between requests: only idleness counts.
            Some(at) if self.protocol != Protocol::Http2 => {
                Some((at + limits.header_read_timeout, "header_timeout"))
            }
            _ => {
                let quiet = self
                    .admission
                    .instant(self.activity.quiet_since_ms.load(Ordering::Relaxed));
                Some((quiet + limits.idle_timeout, "idle_timeout"))
            }
        }
    }

    /// Notices requests that ended since the last look: the next head starts afresh.
    fn observe(&mut self) {
        let finished = self.activity.finished.load(Ordering::Acquire);
        if finished != self.seen {
            self.seen = finished;
            self.head_started = None;
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        if let Protocol::Unknown(mut matched) = self.protocol {
            const PREFACE: &[u8] = b"PRI ";
            self.protocol = Protocol::Http1;
            for b in bytes {
                if PREFACE.get(matched) != Some(b) {
                    break;
                }
                matched += 1;
                self.protocol = if matched == PREFACE.len() {
                    Protocol::Http2
                } else {
                    Protocol::Unknown(matched)
                };
                if self.protocol == Protocol::Http2 {
                    break;
                }
            }
        }
        if self.head_started.is_none() && self.activity.in_flight.load(Ordering::Acquire) == 0 {
            self.head_started = Some(Instant::now());
        }
    }

    fn close(&mut self, reason: &'static str) -> std::io::Error {
        if self.closed.is_none() {
            self.closed = Some(reason);
            self.admission.metrics.connection_closed(reason);
        }
        timed_out(reason)
    }

    /// Passes a write's result on, failing it when the caller has taken nothing for
    /// `send_timeout`.
    fn on_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Pending => {
                let since = *self.write_stalled.get_or_insert_with(Instant::now);
                let deadline = since + self.admission.limits.send_timeout;
                if self.write_timer.deadline() != deadline {
                    self.write_timer.as_mut().reset(deadline);
                }
                if self.write_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.close("send_timeout")));
                }
                Poll::Pending
            }
            ready => {
                self.write_stalled = None;
                ready
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(reason) = this.closed {
            return Poll::Ready(Err(timed_out(reason)));
        }
        // Notice a request that ended before bytes of the next one are counted.
        this.observe();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Registered before the deadline is worked out: a request that ends after
                // this wakes the reader, one that ended before is seen now.
                this.activity.reader.register(cx.waker());
                let Some((at, reason)) = this.read_deadline() else {
                    return Poll::Pending;
                };
                if this.read_deadline != Some(at) {
                    this.read_timer.as_mut().reset(at);
                    this.read_deadline = Some(at);
                }
                if this.read_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(this.close(reason)));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(reason) = this.closed {
            return Poll::Ready(Err(timed_out(reason)));
        }
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.on_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(reason) = this.closed {
            return Poll::Ready(Err(timed_out(reason)));
        }
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.on_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.on_write(cx, result)
    }
}

/// Marks a request in progress on its connection until its answer is finished (or dropped).
#[derive(Debug)]
struct InFlight {
    activity: Arc<Activity>,
    admission: Arc<Admission>,
}

impl InFlight {
    fn start(activity: &Arc<Activity>, admission: &Arc<Admission>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            activity: Arc::clone(activity),
            admission: Arc::clone(admission),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // INVARIANT: `quiet_since_ms` and `finished` are set before `in_flight` drops, so a
        // reader that sees no request in flight sees when the last one ended.
        self.activity
            .quiet_since_ms
            .store(self.admission.now_ms(), Ordering::Relaxed);
        self.activity.finished.fetch_add(1, Ordering::AcqRel);
        if self.activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activity.reader.wake();
        }
    }
}

/// The request body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub(crate) struct BodyTimeout;

/// Set on a request (as an extension) when its body's deadline passed, so that the audit
/// layer records the 408 the caller is answered with.
#[derive(Debug, Clone)]
pub(crate) struct BodyExpired(pub(crate) Arc<AtomicBool>);

impl BodyExpired {
    /// True once the body's deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body that fails once its deadline passes, noting that it did.
#[derive(Debug)]
pub(crate) struct DeadlineBody<B> {
    inner: B,
    timer: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body, keeping its request in progress until it is sent or dropped.
#[derive(Debug)]
pub(crate) struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as one connection's hyper service: the caller's [`Peer`], request bodies under
/// their deadline, and requests counted in progress.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub(crate) app: Router,
    pub(crate) peer: Peer,
    pub(crate) activity: Arc<Activity>,
    pub(crate) admission: Arc<Admission>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity, &self.admission);
        let (app, peer) = (self.app.clone(), self.peer.clone());
        let (limits, metrics) = (self.admission.limits, Arc::clone(&self.admission.metrics));
        Box::pin(async move {
            let expired = Arc::new(AtomicBool::new(false));
            let (mut parts, body) = request.into_parts();
            let body = if http_body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(DeadlineBody {
                    inner: body,
                    timer: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
                    expired: Arc::clone(&expired),
                })
            };
            parts.extensions.insert(ConnectInfo(peer));
            parts.extensions.insert(BodyExpired(Arc::clone(&expired)));
            let response = match app.oneshot(Request::from_parts(parts, body)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let response = if expired.load(Ordering::Relaxed) {
                metrics.connection_closed("body_timeout");
                body_timeout_answer()
            } else {
                response
            };
            Ok(response.map(|inner| Tracked {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// 408 for a body that did not arrive in time; the connection is closed after it.
pub(crate) fn body_timeout_answer() -> Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        "the request body did not arrive in time",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests;
