//! Logging: `tracing` to stderr, filtered by `STS_SIDECAR_LOG` (default `info`), formatted by
//! `STS_SIDECAR_LOG_FORMAT` (`plain`, default, or `json`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Returns an error naming the variable that is wrong.
pub fn init(filter: Option<&str>, format: Option<&str>) -> Result<(), String> {
    let filter = match filter {
        Some(f) if !f.trim().is_empty() => EnvFilter::try_new(f)
            .map_err(|e| format!("{}: invalid filter {f:?}: {e}", crate::config::ENV_LOG))?,
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
