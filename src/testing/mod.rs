//! In-process fake upstreams and a Diego-shaped test PKI, shared by the unit tests, the
//! integration tests and the dev stack example. Each fake runs on `127.0.0.1:0`, can be told to
//! fail on purpose, and counts the calls it saw.

pub mod fake_idp;
pub mod fake_roles_anywhere;
pub mod fake_sts;
pub mod fake_token_service;
pub mod jwt;
pub mod pki;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as a fake sees it: head, whole body, and the TLS client's certificates.
#[derive(Debug)]
pub struct FakeRequest {
    /// Method, URI, headers.
    pub head: http::request::Parts,
    /// The body.
    pub body: Bytes,
    /// The client certificate chain, if it presented one over TLS.
    pub peer_certs: Vec<CertificateDer<'static>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `handler` on `127.0.0.1:0`, over TLS when `tls` is given. Returns the address and the
/// accept task (abort it to stop the fake).
pub async fn serve_fake<H, F>(
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
) -> Result<(SocketAddr, JoinHandle<()>), BoxError>
where
    H: Fn(FakeRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_fake_on(SocketAddr::from(([127, 0, 0, 1], 0)), tls, handler).await
}

/// Like [`serve_fake`], on a chosen address (the dev stack and docker-compose use fixed ports).
pub async fn serve_fake_on<H, F>(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
) -> Result<(SocketAddr, JoinHandle<()>), BoxError>
where
    H: Fn(FakeRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => serve_connection(TokioIo::new(stream), Vec::new(), handler).await,
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let peer = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                            .unwrap_or_default();
                        serve_connection(TokioIo::new(tls), peer, handler).await;
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

async fn serve_connection<I, H, F>(io: I, peer: Vec<CertificateDer<'static>>, handler: H)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(FakeRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let peer_certs = peer.clone();
        async move {
            let (head, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, Infallible>(
                handler(FakeRequest {
                    head,
                    body,
                    peer_certs,
                })
                .await,
            )
        }
    });
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

/// A response with a status, a content type and a body.
pub fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// An issuer's settings for tests: `url` as the issuer URL, the CA bundle and signing key
/// files, assertions and mTLS accepted, every other setting at its default (the reload
/// interval an hour: tests reload by hand or with paused time). Change what a test needs.
pub fn issuer_settings(
    url: &str,
    ca: std::path::PathBuf,
    signing_key: std::path::PathBuf,
) -> crate::issuer::Settings {
    use crate::issuer::{Accept, Budget, KeySource, Settings};
    use std::time::Duration;
    Settings {
        issuer_url: url.to_owned(),
        token_urls: Vec::new(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_origin: "test".into(),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_listen_origin: "test".into(),
        ca: vec![KeySource::File(ca)],
        signing_key: KeySource::File(signing_key),
        publish_keys: Vec::new(),
        tls: None,
        accept: Accept::default(),
        audiences: vec!["sts.amazonaws.com".into()],
        lifetime: Duration::from_secs(3600),
        allow_orgs: Vec::new(),
        allow_spaces: Vec::new(),
        session_tags: false,
        source_identity: false,
        jwks_max_age: Duration::from_secs(600),
        reload_interval: Duration::from_secs(3600),
        budget: Budget::default(),
        limits: crate::listener::Limits {
            reads_bodies: true,
            ..crate::listener::Limits::default()
        },
    }
}
