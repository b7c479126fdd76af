//! The listeners: the credentials endpoint (and, later, IMDS) and the admin endpoint.
//!
//! [`serve`] takes an already bound listener ("bind outside, serve inside"), so tests bind
//! `127.0.0.1:0` and the CLI binds and logs addresses before anything else. Both listeners share
//! the limits here: a cap on open connections (accepting stops while it is reached), a header
//! read timeout against slow clients, and a cap on header size. Handlers answer from memory.

pub mod admin;
pub mod auth;
pub mod credentials;
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
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&limits);
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
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::debug!("drain deadline reached with connections still open");
        }
    }
}

/// The HTTP/1.1 settings of every connection: header read timeout, header size cap, keep-alive.
/// Public so that the fuzz targets drive exactly these settings over in-memory streams.
pub fn connection_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024))
        .keep_alive(true);
    builder
}

/// A JSON error body with both spellings of the keys the SDKs read (sdk-contract.md §3.2).
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
            Some((inside, port)) if port.is_empty() || valid_port(port) => inside,
            _ => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || extra.contains(&ip),
        Err(_) => false,
    }
}

fn valid_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
