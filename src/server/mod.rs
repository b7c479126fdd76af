//! The sidecar's listeners: the credentials endpoint (with the optional IMDSv2 emulation on the
//! same port) and the admin endpoint, both on loopback.
//!
//! Connections, their limits and deadlines come from the listener kit ([`crate::listener`]);
//! this module adds what is particular to a loopback endpoint: answers that cannot leave the
//! machine ([`serve`] sets a hop limit of one), and the screen every request passes first (an
//! origin-form target, a loopback `Host`, no proxy's headers). Handlers answer from memory.

pub mod admin;
pub mod auth;
pub mod credentials;
mod identity_tokens;
pub mod imds;

use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};

use crate::listener::{Body, Limits, json_response, text_response};
pub use admin::AdminApp;
pub use auth::{Auth, AuthToken};
pub use credentials::{CredentialsApp, Roles};

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` completes, then lets in-flight
/// requests finish (up to `limits.drain_timeout`) and returns. Every answer leaves with a hop
/// limit of one.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    crate::listener::accept_until(listener, limits, shutdown, |accepted, connections| {
        one_hop(accepted.stream());
        connections
            .later()
            .spawn_accepted(accepted, handler.clone());
    })
    .await;
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
