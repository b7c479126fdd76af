//! The listener kit every HTTP listener of the binary is built from: the sidecar's credentials
//! and admin endpoints, and the issuer's service and admin endpoints.
//!
//! It owns what a connection may cost before anything about it is authenticated, and nothing
//! about what a request means (routes, authorization and answers belong to `server/` and
//! `issuer/`). A listener holds at most `max_connections` connections ([`slots`]: at the cap, a
//! new connection takes the slot of one that is only waiting); each has a first-byte deadline,
//! a deadline for every request head, and one for a body being read ([`deadline`], [`body`]);
//! heads are capped in size and bodies in size and rate. A connection costs no read buffer
//! until its first byte arrives (see [`Later::spawn_accepted`]), so a flood of silent
//! connections costs little more than their sockets.
//!
//! [`accept_until`] takes an already bound listener ("bind outside, serve inside"), so tests
//! bind `127.0.0.1:0` and the commands bind and log addresses before anything else.

pub mod body;
mod deadline;
mod slots;

use std::convert::Infallible;
use std::future::Future;
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use body::BodyError;
use body::BodyWatch;
use slots::{Slot, Slots};

/// The body type of every response.
pub type Body = Full<Bytes>;

/// Limits applied to every connection of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most. At the cap, a new connection takes the slot of one that is
    /// only waiting (see `slots.rs`); accepting pauses only while every slot is answering.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (and how long a connection may
    /// sit idle between requests).
    pub header_read_timeout: Duration,
    /// How long a new connection may take to send its first byte (for TLS: to finish its
    /// handshake and send its first byte of HTTP).
    pub first_byte_timeout: Duration,
    /// The read buffer, and so the largest request head accepted (at least 8 KiB).
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish once the listener stops.
    pub drain_timeout: Duration,
    /// Whether handlers read request bodies ([`body::read`]): a body being read then counts as
    /// waiting, for the slots. Off where requests have no body to read (the sidecar).
    pub reads_bodies: bool,
}

/// The default cap on open connections per listener of the sidecar. An app's SDK fetches
/// credentials with a connection or two; the cap bounds what a local flood of connections costs
/// (bench/hostile.md).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(5),
            // A client on loopback that connects sends its request at once.
            first_byte_timeout: Duration::from_secs(1),
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(2),
            reads_bodies: false,
        }
    }
}

/// Accepts connections on `listener` into slots until `shutdown` completes, handing each to
/// `serve` with the listener's [`Connections`]; then lets in-flight requests finish (up to
/// `limits.drain_timeout`).
pub async fn accept_until(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(Accepted, &Connections),
) {
    let acceptor = Acceptor::new(listener, &limits);
    let connections = Connections::new(&limits);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.next() => accepted,
            () = &mut shutdown => break,
        };
        serve(accepted, &connections);
    }
    drop(acceptor);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::debug!("drain deadline reached with connections still open");
        }
    }
}

/// Accepts the connections of one listener, each into a slot (see `slots.rs`).
#[derive(Debug)]
struct Acceptor {
    listener: TcpListener,
    slots: Arc<Slots>,
    first_byte_timeout: Duration,
}

/// A connection just accepted: its slot, and the deadlines it will be served with.
#[derive(Debug)]
pub struct Accepted {
    stream: TcpStream,
    slot: Slot,
    watch: Watch,
}

impl Accepted {
    /// The connection's socket (to set options on).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// One connection's header-read timer, its watchdog and what its slot sees of it.
#[derive(Debug)]
struct Watch {
    timer: deadline::HeadTimer,
    watchdog: deadline::Watchdog,
    activity: deadline::Activity,
}

impl Watch {
    fn new(first_byte_within: Duration, fd: Option<std::os::fd::RawFd>) -> Self {
        let (timer, watchdog, activity) = deadline::pair(first_byte_within, fd);
        Self {
            timer,
            watchdog,
            activity,
        }
    }
}

impl Acceptor {
    fn new(listener: TcpListener, limits: &Limits) -> Self {
        Self {
            listener,
            slots: Slots::new(limits.max_connections),
            first_byte_timeout: limits.first_byte_timeout,
        }
    }

    /// The next connection, in a slot: a free one, or one taken from a waiting connection
    /// (so a connection is accepted first and room made for it after, never ahead of one).
    /// Only a shutdown cancels it; a connection accepted and waiting for room is then dropped.
    async fn next(&self) -> Accepted {
        let stream = loop {
            match self.listener.accept().await {
                Ok((stream, _)) => break stream,
                Err(e) => {
                    // Out of file descriptors: a waiting connection gives its descriptor
                    // back, as it would give its slot at the cap. Otherwise (or if none is
                    // waiting) pause instead of spinning.
                    let out_of_files = matches!(
                        e.raw_os_error().map(nix::errno::Errno::from_raw),
                        Some(nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)
                    );
                    if out_of_files && self.slots.shed() {
                        // Closing takes a moment: the connection's task must be dropped.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.slots.room().await;
        let _ = stream.set_nodelay(true);
        let watch = Watch::new(self.first_byte_timeout, Some(stream.as_raw_fd()));
        let slot = self.slots.take(watch.activity.clone());
        Accepted {
            stream,
            slot,
            watch,
        }
    }
}

/// The connections of one listener: each is served with the listener's limits (HTTP/1.1
/// keep-alive, header size cap, first-byte and header-read deadlines) and watched for a
/// graceful shutdown. Public so that the fuzz targets drive exactly these settings over
/// in-memory streams.
///
/// Dropping it asks every connection to shut down gracefully, as [`Connections::shutdown`] does
/// without waiting: keep it for as long as its connections should be served.
#[derive(Debug)]
pub struct Connections {
    builder: http1::Builder,
    limits: Limits,
    graceful: GracefulShutdown,
}

impl Connections {
    /// Connections served with `limits`.
    pub fn new(limits: &Limits) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8 * 1024))
            .keep_alive(true)
            // A client may pipeline requests and shut its side down at once: answer them all
            // before closing, rather than dropping what is in flight at the read EOF.
            .half_close(true);
        Self {
            builder,
            limits: *limits,
            graceful: GracefulShutdown::new(),
        }
    }

    /// Serves one connection over `io` with `handler` on a task of its own, holding `guard`
    /// until the connection ends: when the client closes it, when it sends nothing within the
    /// first-byte deadline or a request head is later than the header-read timeout (the
    /// connection is dropped), or after a graceful shutdown.
    pub fn spawn<IO, H, F, G>(&self, io: IO, handler: H, guard: G) -> JoinHandle<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
        G: Send + 'static,
    {
        let watch = Watch::new(self.limits.first_byte_timeout, None);
        self.later()
            .run(std::future::ready(Some((io, handler))), watch, guard)
    }

    /// A connection to be served later, from another task, still counted by
    /// [`Connections::shutdown`] until it ends or is dropped.
    pub fn later(&self) -> Later {
        Later {
            builder: self.builder.clone(),
            limits: self.limits,
            watcher: self.graceful.watcher(),
        }
    }

    /// Asks every connection to finish its request in flight and close; completes when all have.
    pub async fn shutdown(self) {
        self.graceful.shutdown().await;
    }
}

/// A connection of [`Connections`] to be served (see [`Connections::later`]).
#[derive(Debug)]
pub struct Later {
    builder: http1::Builder,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Later {
    /// Serves a connection from the listener in its slot with `handler`, once its first byte
    /// has arrived: until then it holds no read buffer.
    pub fn spawn_accepted<H, F>(self, accepted: Accepted, handler: H) -> JoinHandle<()>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        self.start_accepted(accepted, move |stream| async move {
            first_byte(&stream).await.then_some((stream, handler))
        })
    }

    /// Serves a connection from the listener in its slot: `start` turns its stream into what
    /// HTTP is served over and the handler for it (a TLS handshake, say), or gives up (`None`).
    /// `start` runs under the connection's first-byte deadline and counts as waiting, for the
    /// slots, until HTTP is read.
    pub fn start_accepted<S, Fut, IO, H, F>(self, accepted: Accepted, start: S) -> JoinHandle<()>
    where
        S: FnOnce(TcpStream) -> Fut,
        Fut: Future<Output = Option<(IO, H)>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let Accepted {
            stream,
            slot,
            watch,
        } = accepted;
        let slot_ref = slot.reference();
        let task = self.run(start(stream), watch, slot);
        slot_ref.closes_with(task.abort_handle());
        task
    }

    fn run<S, IO, H, F, G>(self, start: S, watch: Watch, guard: G) -> JoinHandle<()>
    where
        S: Future<Output = Option<(IO, H)>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
        G: Send + 'static,
    {
        let Watch {
            timer,
            watchdog,
            activity,
        } = watch;
        let mut builder = self.builder;
        builder.timer(timer);
        let watcher = self.watcher;
        let reads_bodies = self.limits.reads_bodies;
        // The watchdog is a task of its own so that the connection's task, woken for every
        // request, polls nothing but the connection. It ends as soon as the connection does
        // (the sender is dropped with the connection's task), so connections that come and go
        // quickly leave nothing behind.
        let (ended, connection_ended) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Some((io, handler)) = start.await {
                let watch = BodyWatch(activity.clone());
                let service = service_fn(move |mut req: Request<Incoming>| {
                    if reads_bodies {
                        req.extensions_mut().insert(watch.clone());
                    }
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let io = deadline::Noting::new(io, &activity);
                let connection = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
                let _ = connection.await;
            }
            drop(guard);
            drop(ended);
        });
        let abort = task.abort_handle();
        let period = self.limits.header_read_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = connection_ended => {}
                () = watchdog.expired(period) => {
                    tracing::debug!("closed a connection that sent nothing, or whose request head was late");
                    abort.abort();
                }
            }
        });
        task
    }
}

/// Waits until the client's first byte has arrived (without reading it); false when the client
/// closed or the socket failed first. Readiness alone can be reported for a socket that has
/// nothing to read, so the byte is peeked at.
pub async fn first_byte(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte).await, Ok(n) if n > 0)
}

/// A response with `Content-Type: application/json` exactly (no charset: Go SDKs need that).
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests;
