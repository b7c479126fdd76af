//! Logging: `tracing` to stderr, filtered by `STS_SIDECAR_LOG` (default `info`), formatted by
//! `STS_SIDECAR_LOG_FORMAT` (`plain`, default, or `json`).
//!
//! Dependencies' targets are held at `info` whatever the filter says, unless the filter names
//! them: the AWS SDK's debug logs repeat upstream error messages verbatim, and an upstream that
//! echoed the identity token would otherwise put it in a log line. Naming a target (e.g.
//! `aws_smithy_runtime=debug`) lifts that cap for it, knowingly.

use tracing_subscriber::EnvFilter;

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

/// The filter for a `STS_SIDECAR_LOG` value (default `info`).
pub fn filter(spec: Option<&str>) -> Result<EnvFilter, String> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let invalid = |e: &dyn std::fmt::Display| {
        format!("{}: invalid filter {spec:?}: {e}", crate::config::ENV_LOG)
    };
    let mut filter = EnvFilter::try_new(spec).map_err(|e| invalid(&e))?;
    for target in CAPPED_TARGETS {
        if !spec.contains(target) {
            let directive = format!("{target}=info").parse().map_err(|e| invalid(&e))?;
            filter = filter.add_directive(directive);
        }
    }
    Ok(filter)
}

/// Installs the global subscriber. Returns an error naming the variable that is wrong.
pub fn init(spec: Option<&str>, format: Option<&str>) -> Result<(), String> {
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(spec)?)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format.map(str::trim) {
        None | Some("") | Some("plain") => builder.try_init(),
        Some("json") => builder.json().flatten_event(true).try_init(),
        Some(other) => {
            return Err(format!(
                "{}: must be plain or json, got {other:?}",
                crate::config::ENV_LOG_FORMAT
            ));
        }
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
