//! What the HTTP sources share: one client setup (rustls, no redirects, bounded time) and a
//! bounded body read. Nothing here logs a request or a body.

use std::time::Duration;

use super::Error;

/// The largest answer a source reads; an identity token is a few KiB.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A client for one source. `proxy`: honour `HTTPS_PROXY`/`NO_PROXY` (not for the metadata
/// server, which is only reachable directly).
pub(crate) fn client(
    timeout: Duration,
    extra_roots: &[reqwest::Certificate],
    proxy: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .tls_certs_merge(extra_roots.iter().cloned())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sts-sidecar/", env!("CARGO_PKG_VERSION")));
    if !proxy {
        builder = builder.no_proxy();
    }
    builder.build()
}

/// Reads at most [`MAX_BODY`] bytes; `None` if the body is larger.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A transport failure calling `origin`.
pub(crate) fn unreachable(origin: &str, source: reqwest::Error, hint: &str) -> Error {
    let hint = match tls_problem(&source) {
        Some(words) => format!("{words}; {hint}"),
        None => hint.to_owned(),
    };
    Error::Unreachable {
        origin: origin.to_owned(),
        source,
        hint,
    }
}

/// What a refused server certificate means, in a user's words (rustls names the cases, e.g.
/// `CaUsedAsEndEntity`); `None` when the failure was not the server's certificate.
pub(crate) fn tls_problem(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::CertificateError as C;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        // An io::Error hides its inner error from source(): look inside it too.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if let Some(rustls::Error::InvalidCertificate(cert)) = inner
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .or_else(|| e.downcast_ref::<rustls::Error>())
        {
            return Some(match cert {
                // webpki's CaUsedAsEndEntity, which rustls passes on as an `Other` error
                // (webpki is not a dependency of ours to downcast to).
                C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                    "the server presents a CA certificate as its own (a self-signed \
                     certificate marked CA:TRUE): give the server a certificate signed by a CA, \
                     and that CA to the sidecar"
                }
                C::UnknownIssuer => {
                    "the server's certificate is not signed by a CA the sidecar trusts (the \
                     system's roots, or the CA bundle configured for it)"
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "the server's certificate is not for the host name in the URL"
                }
                C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired",
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet (check this machine's clock)"
                }
                C::Revoked => "the server's certificate is revoked",
                _ => "the server's certificate was refused",
            });
        }
        next = inner.or_else(|| e.source());
    }
    None
}

/// Describes a body that is not what was expected by its shape, never its content.
pub(crate) fn shape(body: &[u8], html: bool) -> String {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        "an empty body".to_owned()
    } else if html || trimmed.starts_with(b"<") {
        format!("an HTML page ({} bytes)", body.len())
    } else if std::str::from_utf8(trimmed).is_err() {
        format!("{} bytes of binary data", body.len())
    } else {
        format!("a {}-byte body", body.len())
    }
}

/// Whether the response says it is HTML.
pub(crate) fn is_html(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::sync::Arc;

    /// A TLS server on loopback presenting `cert` (with `key`) to one connection.
    async fn serve_once(cert: rcgen::Certificate, key: KeyPair) -> std::net::SocketAddr {
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        addr
    }

    async fn refusal(cert_is_ca: bool, trust_it: bool) -> Error {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        if cert_is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).expect("cert");
        let roots = if trust_it {
            vec![reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("root")]
        } else {
            Vec::new()
        };
        let addr = serve_once(cert, key).await;
        let client = client(Duration::from_secs(5), &roots, false).expect("client");
        let e = client
            .get(format!("https://{addr}/token"))
            .send()
            .await
            .expect_err("refused");
        unreachable("the token service", e, "check the URL")
    }

    #[tokio::test]
    async fn a_refused_server_certificate_is_said_in_a_users_words() {
        // See: issue #24. A self-signed test certificate marked CA:TRUE, given as its own CA,
        // was reported as rustls' `CaUsedAsEndEntity` alone.
        let e = refusal(true, true).await;
        let hint = e.hint();
        assert!(
            hint.starts_with("the server presents a CA certificate as its own")
                && hint.ends_with("; check the URL"),
            "{hint}"
        );
        let e = refusal(false, false).await;
        assert!(
            e.hint()
                .starts_with("the server's certificate is not signed by a CA the sidecar trusts"),
            "{}",
            e.hint()
        );
        // A refusal that is not about the certificate keeps the plain hint.
        let client = client(Duration::from_secs(5), &[], false).expect("client");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let e = client
            .get(format!("https://{addr}/"))
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(unreachable("x", e, "check the URL").hint(), "check the URL");
    }
}
