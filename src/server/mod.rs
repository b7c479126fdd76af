//! The listeners: the credentials endpoint (with the optional IMDSv2 emulation on the same
//! port) and the admin endpoint.
//!
//! [`serve`] takes an already bound listener ("bind outside, serve inside"), so tests bind
//! `127.0.0.1:0` and the CLI binds and logs addresses before anything else. Both listeners share
//! the limits here: a cap on open connections (accepting stops while it is reached), a header
//! read timeout against slow clients, and a cap on header size. Handlers answer from memory.

pub mod admin;
pub mod auth;
pub mod credentials;
mod head_deadline;
pub mod imds;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
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
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use admin::AdminApp;
pub use auth::{Auth, AuthToken};
pub use credentials::{CredentialsApp, Roles};

/// The body type of every response.
pub type Body = Full<Bytes>;

/// Limits applied to every connection of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; accepting pauses while the cap is reached.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The read buffer, and so the largest request head accepted (at least 8 KiB).
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish once the listener stops.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(5),
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
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = Connections::new(&limits);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Loopback traffic never needs a hop; TTL 1 keeps answers (IMDS tokens included) from
        // being routed anywhere if a non-loopback bind was allowed.
        let _ = stream.set_ttl(1);
        connections.spawn(stream, handler.clone(), permit);
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::debug!("drain deadline reached with connections still open");
        }
    }
}

/// The connections of one listener: each is served with the listener's limits (HTTP/1.1
/// keep-alive, header size cap, header-read deadline) and watched for a graceful shutdown.
/// Public so that the fuzz targets drive exactly these settings over in-memory streams.
///
/// Dropping it asks every connection to shut down gracefully, as [`Connections::shutdown`] does
/// without waiting: keep it for as long as its connections should be served.
#[derive(Debug)]
pub struct Connections {
    builder: http1::Builder,
    header_read_timeout: Duration,
    graceful: GracefulShutdown,
}

impl Connections {
    /// Connections served with `limits`.
    pub fn new(limits: &Limits) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8 * 1024))
            .keep_alive(true);
        Self {
            builder,
            header_read_timeout: limits.header_read_timeout,
            graceful: GracefulShutdown::new(),
        }
    }

    /// Serves one accepted connection with `handler` on a task of its own, holding `guard` until
    /// the connection ends: when the client closes it, when a request head is later than the
    /// header-read timeout (the connection is dropped), or after a graceful shutdown.
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
        let (timer, watchdog) = head_deadline::pair();
        let mut builder = self.builder;
        builder.timer(timer);
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
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
                    tracing::debug!("closed a connection whose request head was late");
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

/// Whether a `Host` header names this machine's loopback (DNS-rebinding defence): `localhost`,
/// any `127.0.0.0/8` address, `[::1]`, or one of `extra` (a non-loopback listen address the
/// config allowed). A request without `Host` (HTTP/1.0) passes: browsers always send one.
pub fn host_allowed(host: Option<&HeaderValue>, extra: &[IpAddr]) -> bool {
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

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_at_the_header_read_deadline() {
        use tokio::io::AsyncReadExt as _;
        let connections = Connections::new(&Limits::default());
        let (mut client, server) = tokio::io::duplex(1024);
        let task = connections.spawn(
            server,
            |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
            (),
        );
        let start = tokio::time::Instant::now();
        let mut buf = Vec::new();
        let read = client.read_to_end(&mut buf).await;
        assert!(read.is_ok() && buf.is_empty(), "{read:?} {buf:?}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_100),
            "{waited:?}"
        );
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
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
