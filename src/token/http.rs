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
    Error::Unreachable {
        origin: origin.to_owned(),
        source,
        hint: hint.to_owned(),
    }
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
