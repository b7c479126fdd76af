//! Request bodies, read with a bound on memory and on time.
//!
//! A body is copied into one buffer as its frames arrive, each frame dropped as soon as it is
//! copied: a frame holds on to the connection's read buffer, so keeping frames (as collecting
//! them does) let a client that sends one byte per TCP segment pin kilobytes per byte. The
//! buffer grows with what has arrived (never past the declared `Content-Length`, at most the
//! limit), so a client that declares a large body and sends little costs little. A declared
//! length over the limit is refused before a byte is read; a chunked body is refused as soon as
//! it passes the limit; a request with neither is an empty body (the curl loops of today's users
//! send exactly that).
//!
//! The body must arrive at a minimum rate: its deadline is [`GRACE`] plus its length at
//! [`MIN_RATE`] (an assertion of 4 KiB: 2 s; the issuer's 16 KiB limit: 5 s). Meanwhile the
//! connection counts as waiting, so that at the listener's cap a client trickling its body is
//! evicted like one trickling its head.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};

use super::deadline::Activity;

/// The rate a body must at least arrive at, in bytes per second.
pub const MIN_RATE: u64 = 4 * 1024;
/// What every body gets on top of its length at [`MIN_RATE`] (a round trip or two).
pub const GRACE: Duration = Duration::from_secs(1);
/// The buffer a body starts with, when it declares no smaller length.
const FIRST_BUFFER: usize = 2 * 1024;

/// The connection a request came on, as its handler sees it (a request extension, set when the
/// listener's [`super::Limits::reads_bodies`] is on).
#[derive(Debug, Clone)]
pub(crate) struct BodyWatch(pub(crate) Activity);

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Declared or sent longer than the limit.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not all there by its deadline.
    #[error("the body did not arrive within {} s", .within.as_secs_f32())]
    TooSlow {
        /// The time it had.
        within: Duration,
    },
    /// The connection ended or failed before the body did.
    #[error("the body was cut off")]
    Cut,
}

impl BodyError {
    /// The HTTP status that says it: 413, 408 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Cut => StatusCode::BAD_REQUEST,
        }
    }
}

/// How long a body of `len` bytes may take to arrive.
pub fn allowed(len: usize) -> Duration {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    GRACE + Duration::from_millis(len.saturating_mul(1000) / MIN_RATE)
}

/// Reads the body of a request whose head is `parts`, at most `limit` bytes, within
/// [`allowed`] of its declared length (of `limit` when chunked).
pub async fn read(
    parts: &http::request::Parts,
    mut body: Incoming,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = body.size_hint().exact();
    let expect = match declared {
        Some(0) => return Ok(Bytes::new()),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= limit => n,
            _ => return Err(BodyError::TooLarge { limit }),
        },
        None => limit,
    };
    let within = allowed(expect);
    let deadline = tokio::time::Instant::now() + within;
    let _waiting = parts
        .extensions
        .get::<BodyWatch>()
        .map(|w| w.0.body(deadline.into_std()));
    let mut buf: Vec<u8> = Vec::with_capacity(expect.min(FIRST_BUFFER));
    let copy = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Cut)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = buf.len() + data.len();
            if len > limit {
                return Err(BodyError::TooLarge { limit });
            }
            if len > buf.capacity() {
                // Double what has arrived, never past what was declared.
                let target = (buf.len() * 2).max(len).min(expect.max(len));
                buf.reserve_exact(target - buf.len());
            }
            buf.extend_from_slice(&data);
            // `data` (and with it the connection's read buffer it points into) is dropped here.
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, copy).await {
        Ok(Ok(())) => Ok(Bytes::from(buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::TooSlow { within }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assertion_has_seconds_and_the_largest_body_five() {
        assert_eq!(allowed(4 * 1024), Duration::from_secs(2));
        assert_eq!(allowed(16 * 1024), Duration::from_secs(5));
        assert_eq!(allowed(0), GRACE);
    }
}
