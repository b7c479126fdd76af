//! The listeners: the credentials endpoint (with the optional IMDSv2 emulation on the same
//! port) and the admin endpoint.
//!
//! [`serve`] takes an already bound listener ("bind outside, serve inside"), so tests bind
//! `127.0.0.1:0` and the CLI binds and logs addresses before anything else. Both listeners share
//! the limits here: a cap on open connections (at the cap, a new connection takes the slot of one
//! that is only waiting), a first-byte deadline and a header read timeout against clients that
//! hold connections without asking, and a cap on header size. Handlers answer from memory.

pub mod admin;
pub mod auth;
pub mod credentials;
mod head_deadline;
pub mod imds;
mod slots;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use admin::AdminApp;
pub use auth::{Auth, AuthToken};
pub use credentials::{CredentialsApp, Roles};
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
    /// How long a new connection may take to send its first byte.
    pub first_byte_timeout: Duration,
    /// The read buffer, and so the largest request head accepted (at least 8 KiB).
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish once the listener stops.
    pub drain_timeout: Duration,
}

/// The default cap on open connections per listener. An app's SDK fetches credentials with a
/// connection or two; the cap bounds what a local flood of connections costs: about 30 MiB
/// resident at most with every slot held and churning (bench/hostile.md).
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
        }
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` completes, then lets in-flight
/// requests finish (up to `limits.drain_timeout`) and returns.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    accept_until(listener, &limits, shutdown, |accepted, connections| {
        one_hop(&accepted.stream);
        connections
            .later()
            .spawn_accepted(accepted, handler.clone());
    })
    .await;
}

/// Accepts connections on `listener` into slots until `shutdown` completes, handing each to
/// `serve` with the listener's [`Connections`]; then lets in-flight requests finish (up to
/// `limits.drain_timeout`).
pub(crate) async fn accept_until(
    listener: TcpListener,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(Accepted, &Connections),
) {
    let acceptor = Acceptor::new(listener, limits);
    let connections = Connections::new(limits);
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

/// Loopback traffic never needs a hop; a hop limit of 1 (IPv4 TTL, IPv6 unicast hops) keeps
/// answers, IMDS tokens included, from being routed anywhere if a non-loopback bind was allowed.
fn one_hop(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let set = match stream.local_addr() {
        Ok(addr) if addr.is_ipv6() => socket.set_unicast_hops_v6(1),
        _ => socket.set_ttl_v4(1),
    };
    if let Err(e) = set {
        tracing::debug!(error = %e, "cannot set the hop limit of a connection");
    }
}

/// Accepts the connections of one listener, each into a slot (see `slots.rs`).
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    slots: Arc<Slots>,
    first_byte_timeout: Duration,
}

/// A connection just accepted: its slot, and the deadlines it will be served with.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    slot: Slot,
    watch: Watch,
}

/// A connection's slot and deadlines, apart from its stream (which is being TLS handshaken).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) slot: Slot,
    watch: Watch,
}

impl Accepted {
    pub(crate) fn take_stream(self) -> (TcpStream, Pending) {
        let Accepted {
            stream,
            slot,
            watch,
        } = self;
        (stream, Pending { slot, watch })
    }
}

impl Pending {
    /// Serves `io`, the connection's stream after its handshake, in the connection's slot.
    pub(crate) fn spawn<IO, H, F>(self, later: Later, io: IO, handler: H) -> JoinHandle<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        later.spawn_in(io, handler, self.slot, self.watch)
    }
}

/// One connection's header-read timer, its watchdog and what its slot sees of it.
#[derive(Debug)]
pub(crate) struct Watch {
    timer: head_deadline::HeadTimer,
    watchdog: head_deadline::Watchdog,
    activity: head_deadline::Activity,
}

impl Watch {
    fn new(first_byte_within: Duration) -> Self {
        let (timer, watchdog, activity) = head_deadline::pair(first_byte_within);
        Self {
            timer,
            watchdog,
            activity,
        }
    }
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, limits: &Limits) -> Self {
        Self {
            listener,
            slots: Slots::new(limits.max_connections),
            first_byte_timeout: limits.first_byte_timeout,
        }
    }

    /// The next connection, in a slot: a free one, or one taken from a waiting connection
    /// (so a connection is accepted first and room made for it after, never ahead of one).
    /// Only a shutdown cancels it; a connection accepted and waiting for room is then dropped.
    pub(crate) async fn next(&self) -> Accepted {
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
        let watch = Watch::new(self.first_byte_timeout);
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
    header_read_timeout: Duration,
    first_byte_timeout: Duration,
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
            header_read_timeout: limits.header_read_timeout,
            first_byte_timeout: limits.first_byte_timeout,
            graceful: GracefulShutdown::new(),
        }
    }

    /// Serves one accepted connection with `handler` on a task of its own, holding `guard` until
    /// the connection ends: when the client closes it, when it sends nothing within the
    /// first-byte deadline or a request head is later than the header-read timeout (the
    /// connection is dropped), or after a graceful shutdown.
    pub fn spawn<IO, H, F, G>(&self, io: IO, handler: H, guard: G) -> JoinHandle<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
        G: Send + 'static,
    {
        self.later().spawn(io, handler, guard)
    }

    /// A connection to be served later, from another task (after a TLS handshake), still
    /// counted by [`Connections::shutdown`] until it ends or is dropped.
    pub fn later(&self) -> Later {
        Later {
            builder: self.builder.clone(),
            header_read_timeout: self.header_read_timeout,
            first_byte_timeout: self.first_byte_timeout,
            watcher: self.graceful.watcher(),
        }
    }

    /// Asks every connection to finish its request in flight and close; completes when all have.
    pub async fn shutdown(self) {
        self.graceful.shutdown().await;
    }
}

/// A connection of [`Connections`] served from another task (see [`Connections::later`]).
#[derive(Debug)]
pub struct Later {
    builder: http1::Builder,
    header_read_timeout: Duration,
    first_byte_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Later {
    /// Serves `io` as [`Connections::spawn`] does.
    pub fn spawn<IO, H, F, G>(self, io: IO, handler: H, guard: G) -> JoinHandle<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
        G: Send + 'static,
    {
        let watch = Watch::new(self.first_byte_timeout);
        self.run(io, handler, watch, guard)
    }

    /// Serves a connection from an [`Acceptor`] in its slot.
    pub(crate) fn spawn_accepted<H, F>(self, accepted: Accepted, handler: H) -> JoinHandle<()>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let (stream, pending) = accepted.take_stream();
        pending.spawn(self, stream, handler)
    }

    fn spawn_in<IO, H, F>(self, io: IO, handler: H, slot: Slot, watch: Watch) -> JoinHandle<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let slot_ref = slot.reference();
        let task = self.run(io, handler, watch, slot);
        slot_ref.closes_with(task.abort_handle());
        task
    }

    fn run<IO, H, F, G>(self, io: IO, handler: H, watch: Watch, guard: G) -> JoinHandle<()>
    where
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
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let io = head_deadline::Noting::new(io, &activity);
        let connection = self
            .watcher
            .watch(builder.serve_connection(TokioIo::new(io), service));
        // The watchdog is a task of its own so that the connection's task, woken for every
        // request, polls nothing but the connection. It ends as soon as the connection does
        // (the sender is dropped with the connection's task), so connections that come and go
        // quickly leave nothing behind.
        let (ended, connection_ended) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = connection.await;
            drop(guard);
            drop(ended);
        });
        let abort = task.abort_handle();
        let period = self.header_read_timeout;
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

/// A JSON error body with both spellings of the keys the SDKs read (docs/sdk-clients.md §3.2).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "Code": code,
        "Message": message,
    });
    json_response(status, Bytes::from(body.to_string()))
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

/// Why a request to either listener is refused before anything else looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An absolute-form (`GET http://host/path`) or authority-form target: a proxy's request.
    Target,
    /// HTTP/1.1 without `Host`, or with more than one.
    HostCount,
    /// A `Host` that is not this machine's loopback (DNS rebinding).
    Host,
    /// A header a proxy adds (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `Via`): this server
    /// answers processes on this machine only, never through a proxy.
    Forwarded(&'static str),
}

/// Headers that mean a request came through a proxy (name as matched, name as shown).
/// `X-Forwarded-*` is matched by prefix.
const PROXY_HEADERS: [(&str, &str); 4] = [
    ("forwarded", "Forwarded"),
    ("x-real-ip", "X-Real-IP"),
    ("via", "Via"),
    ("x-client-ip", "X-Client-IP"),
];

impl Refusal {
    /// The JSON error response for it.
    pub(crate) fn response(self) -> Response<Body> {
        match self {
            Refusal::Target => error_response(
                StatusCode::BAD_REQUEST,
                "InvalidTarget",
                "the request target must be a path (origin form), not a URL",
            ),
            Refusal::HostCount => error_response(
                StatusCode::BAD_REQUEST,
                "InvalidHost",
                "an HTTP/1.1 request needs exactly one Host header",
            ),
            Refusal::Host => error_response(
                StatusCode::FORBIDDEN,
                "InvalidHost",
                "the Host header must name a loopback address",
            ),
            Refusal::Forwarded(header) => error_response(
                StatusCode::FORBIDDEN,
                "Forwarded",
                &format!(
                    "requests carrying {header} are refused: this endpoint is for processes on this machine, not through a proxy"
                ),
            ),
        }
    }
}

/// What every request to the credentials and admin listeners must satisfy: an origin-form
/// target, one `Host` naming loopback (none is allowed for HTTP/1.0), no proxy's header.
pub(crate) fn screen<B>(req: &Request<B>, extra_hosts: &[IpAddr]) -> Result<(), Refusal> {
    let uri = req.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Refusal::Target);
    }
    let headers = req.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() || (host.is_none() && req.version() != Version::HTTP_10) {
        return Err(Refusal::HostCount);
    }
    if !host_allowed(host, extra_hosts) {
        return Err(Refusal::Host);
    }
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-forwarded-") {
            return Err(Refusal::Forwarded(if name == "x-forwarded-for" {
                "X-Forwarded-For"
            } else {
                "an X-Forwarded- header"
            }));
        }
        if let Some((_, shown)) = PROXY_HEADERS.iter().find(|(n, _)| *n == name) {
            return Err(Refusal::Forwarded(shown));
        }
    }
    Ok(())
}

/// Whether a `Host` header names this machine's loopback (DNS-rebinding defence): `localhost`,
/// any `127.0.0.0/8` address, `[::1]`, or one of `extra` (a non-loopback listen address the
/// config allowed). A request without `Host` (HTTP/1.0) passes: browsers always send one.
fn host_allowed(host: Option<&HeaderValue>, extra: &[IpAddr]) -> bool {
    let Some(host) = host else { return true };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, "")) => inside,
            Some((inside, port)) if port.strip_prefix(':').is_some_and(valid_port) => inside,
            _ => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || extra.contains(&ip),
        Err(_) => false,
    }
}

/// A port number as written after the colon: one to five digits.
fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connections_that_close_leave_no_task_behind() {
        let connections = Connections::new(&Limits::default());
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let mut clients = Vec::new();
        for _ in 0..100 {
            let (client, server) = tokio::io::duplex(1024);
            connections.spawn(
                server,
                |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
                (),
            );
            clients.push(client);
        }
        // Every connection is open and every watchdog asleep until the deadline; then they close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(metrics.num_alive_tasks(), before + 200);
        drop(clients);
        // Well before the 5 s header-read deadline: the watchdogs must have ended with their
        // connections rather than waiting for it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(metrics.num_alive_tasks(), before);
    }

    async fn closed_after(client: &mut tokio::io::DuplexStream) -> (Duration, Vec<u8>) {
        use tokio::io::AsyncReadExt as _;
        let start = tokio::time::Instant::now();
        let mut buf = Vec::new();
        client
            .read_to_end(&mut buf)
            .await
            .expect("closed, not failed");
        (start.elapsed(), buf)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_at_the_first_byte_deadline() {
        let connections = Connections::new(&Limits::default());
        let (mut client, server) = tokio::io::duplex(1024);
        let task = connections.spawn(
            server,
            |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
            (),
        );
        let (waited, buf) = closed_after(&mut client).await;
        assert!(buf.is_empty(), "{buf:?}");
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1_100),
            "{waited:?}"
        );
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_at_the_header_read_deadline() {
        use tokio::io::AsyncWriteExt as _;
        let connections = Connections::new(&Limits::default());
        let (mut client, server) = tokio::io::duplex(1024);
        let task = connections.spawn(
            server,
            |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
            (),
        );
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        // Answered, then idle between requests: closed 5 s later, not at the first-byte deadline.
        let (waited, buf) = closed_after(&mut client).await;
        assert!(buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_100),
            "{waited:?}"
        );
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
    }

    #[tokio::test(start_paused = true)]
    async fn pipelined_requests_are_all_answered_after_the_client_half_closes() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let connections = Connections::new(&Limits::default());
        let (client, server) = tokio::io::duplex(1 << 20);
        connections.spawn(
            server,
            |_req: Request<Incoming>| async {
                // An answer that is not ready at once, so that the read EOF comes first.
                tokio::task::yield_now().await;
                json_response(StatusCode::OK, Bytes::from_static(b"{}"))
            },
            (),
        );
        let (mut read, mut write) = tokio::io::split(client);
        let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        write.write_all(&request.repeat(50)).await.unwrap();
        write.shutdown().await.unwrap();
        let mut answers = Vec::new();
        read.read_to_end(&mut answers).await.unwrap();
        let text = String::from_utf8_lossy(&answers);
        assert_eq!(text.matches("HTTP/1.1 200").count(), 50, "{text}");
    }

    #[tokio::test]
    async fn answers_leave_with_a_hop_limit_of_one_over_ipv4_and_ipv6() {
        // See: issue #20 item 8 (IPv6 kept 64 hops).
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let listener = TcpListener::bind(local).await.expect(local);
            let addr = listener.local_addr().unwrap();
            let _client = TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            one_hop(&accepted);
            let socket = socket2::SockRef::from(&accepted);
            let hops = if addr.is_ipv6() {
                socket.unicast_hops_v6().unwrap()
            } else {
                socket.ttl_v4().unwrap()
            };
            assert_eq!(hops, 1, "{local}");
        }
    }

    fn allowed(host: &str) -> bool {
        host_allowed(Some(&HeaderValue::from_str(host).unwrap()), &[])
    }

    #[test]
    fn accepts_only_loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:61679",
            "127.0.0.1:61679",
            "127.1.2.3",
            "[::1]:80",
            "[::1]",
            "LOCALHOST:1",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:61679",
            "10.0.0.1:80",
            "[fd00::1]:80",
            "localhost.evil.example",
            "127.0.0.1:",
            "127.0.0.1:x",
            "[::1]x",
            "169.254.170.2",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
        assert!(host_allowed(None, &[]));
        let extra: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(host_allowed(
            Some(&HeaderValue::from_static("10.0.0.5:9")),
            &[extra]
        ));
    }
}
