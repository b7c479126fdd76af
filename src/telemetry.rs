//! Logging: `tracing` to stderr, filtered by `STS_SIDECAR_LOG` (default `info`), formatted by
//! `STS_SIDECAR_LOG_FORMAT` (`plain`, default, or `json`).
//!
//! Dependencies' targets are held at `info` whatever the filter says, unless the filter names
//! them: the AWS SDK's debug logs repeat upstream error messages verbatim, and an upstream that
//! echoed the identity token would otherwise put it in a log line. Naming a target (e.g.
//! `aws_smithy_runtime=debug`) lifts that cap for it, knowingly.
//!
//! Every event is one line of at most [`MAX_LINE`] bytes ([`OneLine`]): a line break inside a
//! field is written as `\n`, and a longer event is cut, the cut marked. Values that come from a
//! request are escaped and cut where they are logged already (`report::Untrusted`); this is the
//! rule for everything else, so that nothing a client sends can forge a line or flood the log.

use std::io::Write as _;
use std::str::FromStr as _;

use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The log filter (`tracing` target syntax, default `info`).
pub const ENV_LOG: &str = "STS_SIDECAR_LOG";
/// The log format: `plain` (default) or `json`.
pub const ENV_LOG_FORMAT: &str = "STS_SIDECAR_LOG_FORMAT";

/// The levels a directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Why a log setting is wrong (the message names the variable).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filter cannot be used.
    #[error("{ENV_LOG}: {0}")]
    Filter(String),
    /// The format is neither plain nor json.
    #[error("{ENV_LOG_FORMAT}: must be plain or json, got {0:?}")]
    Format(String),
    /// A logger was installed already.
    #[error("cannot install the logger")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// Dependency targets capped at `info` unless named in the filter.
const CAPPED_TARGETS: [&str; 11] = [
    "aws_config",
    "aws_runtime",
    "aws_sdk_sts",
    "aws_smithy_http_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
];

/// The filter for a `STS_SIDECAR_LOG` value (default `info`): comma-separated `LEVEL` and
/// `target=LEVEL` entries, e.g. `warn,sts_sidecar=debug`. (`Targets` rather than `EnvFilter`:
/// the same syntax for what we need, without a regex engine in the binary.)
///
/// A directive without `=` must be a level: tracing reads `warning` as the name of a target and
/// would silence every other line, so a misspelled level is refused, naming the closest one.
pub fn filter(spec: Option<&str>) -> Result<Targets, Error> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let hint = crate::checker::closest(&level.to_ascii_lowercase(), LEVELS)
                .map(|l| format!(" (did you mean {l}?)"))
                .unwrap_or_default();
            return Err(Error::Filter(format!(
                "{level:?} in {spec:?} is not a level{hint}: use {} (alone, or as target=level)",
                LEVELS.join(", ")
            )));
        }
    }
    let mut filter = Targets::from_str(spec)
        .map_err(|e| Error::Filter(format!("invalid filter {spec:?}: {e}")))?;
    // The targets the spec names itself, exactly: naming hyper_util must not lift hyper's cap.
    let named: Vec<&str> = spec
        .split(',')
        .filter_map(|d| d.split_once('=').map(|(t, _)| t.trim()))
        .collect();
    for target in CAPPED_TARGETS {
        if !named.contains(&target) {
            // Whatever the filter gives this target, but never more than INFO.
            let cap = [Level::INFO, Level::WARN, Level::ERROR]
                .into_iter()
                .find(|level| filter.would_enable(target, level))
                .map_or(LevelFilter::OFF, LevelFilter::from_level);
            filter = filter.with_target(target, cap);
        }
    }
    Ok(filter)
}

/// The longest line an event is written as, newline included.
pub const MAX_LINE: usize = 4096;

/// What an event cut at [`MAX_LINE`] ends with.
const CUT: &str = " [line cut]\n";

/// Writes each event to stderr as one line of at most [`MAX_LINE`] bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneLine;

/// One event's bytes, written when dropped (tracing formats an event, then writes it).
#[derive(Debug, Default)]
pub struct EventBuffer(Vec<u8>);

impl std::io::Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Keep a little more than a line can hold: the rest would be cut anyway.
        let room = (2 * MAX_LINE).saturating_sub(self.0.len());
        self.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = one_line(&self.0);
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLine {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer::default()
    }
}

/// `event` as one line: inner line breaks written as `\n` and `\r`, cut at [`MAX_LINE`] bytes
/// (on a character boundary), ending with one newline.
pub fn one_line(event: &[u8]) -> Vec<u8> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    let mut out = Vec::with_capacity(body.len().min(MAX_LINE) + 1);
    let limit = MAX_LINE - CUT.len();
    let mut cut = false;
    for (i, &b) in body.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => std::slice::from_ref(&body[i]),
        };
        if out.len() + escaped.len() > limit {
            cut = true;
            break;
        }
        out.extend_from_slice(escaped);
    }
    if cut {
        // Back to a character boundary: never half a UTF-8 sequence.
        while out.last().is_some_and(|b| b & 0b1100_0000 == 0b1000_0000) {
            out.pop();
        }
        if out.last().is_some_and(|b| *b >= 0b1100_0000) {
            out.pop();
        }
        out.extend_from_slice(CUT.as_bytes());
    } else {
        out.push(b'\n');
    }
    out
}

/// Installs the global subscriber. Returns an error naming the variable that is wrong.
pub fn init(spec: Option<&str>, format: Option<&str>) -> Result<(), Error> {
    use std::io::IsTerminal as _;
    let filter = filter(spec)?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format.map(str::trim) {
        None | Some("") | Some("plain") => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(OneLine),
            )
            .try_init(),
        Some("json") => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(OneLine),
            )
            .try_init(),
        Some(other) => return Err(Error::Format(other.to_owned())),
    };
    result.map_err(Error::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_of_at_most_4_kib() {
        // See: issue #23 item 4 (a form key holding a newline forged a "token issued" line).
        let forged = b"refused description=\"x\nINFO token issued org_guid=victim\"\n";
        let line = one_line(forged);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(line.ends_with(b"\"\n"));
        let text = String::from_utf8(line).unwrap();
        assert!(text.contains("x\\nINFO"), "{text}");
        let long = format!("{}\n", "é".repeat(30_000));
        let line = one_line(long.as_bytes());
        assert!(line.len() <= MAX_LINE, "{}", line.len());
        let text = String::from_utf8(line).expect("cut on a character boundary");
        assert!(text.ends_with(CUT), "{}", &text[text.len() - 20..]);
        assert_eq!(one_line(b"short\n"), b"short\n");
    }

    #[test]
    fn dependencies_are_capped_at_info_unless_named() {
        let f = filter(Some("trace")).expect("filter");
        assert!(f.would_enable("sts_sidecar::cache", &Level::TRACE));
        assert!(f.would_enable("aws_smithy_runtime::client::orchestrator", &Level::INFO));
        assert!(!f.would_enable("aws_smithy_runtime::client::orchestrator", &Level::DEBUG));
        let named = filter(Some("info,aws_smithy_runtime=debug")).expect("filter");
        assert!(named.would_enable("aws_smithy_runtime::client::orchestrator", &Level::DEBUG));
        let quiet = filter(Some("warn")).expect("filter");
        assert!(!quiet.would_enable("reqwest::connect", &Level::INFO));
        assert!(filter(Some("info,,=bogus")).is_err());
    }

    #[test]
    fn a_word_that_is_not_a_level_is_refused() {
        // See: issue #17 (STS_SIDECAR_LOG=warning silenced every line).
        let e = filter(Some("warning"))
            .expect_err("not a level")
            .to_string();
        assert!(
            e.contains("STS_SIDECAR_LOG") && e.contains("did you mean warn?"),
            "{e}"
        );
        assert!(filter(Some("sts_sidecar=verbose")).is_err());
        assert!(filter(Some("WARN,sts_sidecar=debug")).is_ok());
    }

    #[test]
    fn naming_one_crate_does_not_lift_the_cap_on_another() {
        // See: issue #10 (a substring match let hyper_util=trace lift hyper's cap).
        let f = filter(Some("trace,hyper_util=trace")).expect("filter");
        assert!(f.would_enable("hyper_util::client", &Level::TRACE));
        assert!(!f.would_enable("hyper::proto::h1", &Level::DEBUG));
        let f = filter(Some("trace,aws_smithy_runtime_api=trace")).expect("filter");
        assert!(!f.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
    }
}
