//! One file per subcommand: argument handling and exit codes, nothing else (the sidecar itself
//! is assembled by [`crate::app`]). Errors here are `anyhow` with context; `main` prints them
//! with their causes and exits with [`ExitError::code`].

pub mod check;
pub mod completions;
pub mod credential_process;
pub mod exec;
pub mod gcp_credentials;
pub mod issuer;
pub mod serve;

/// An error with the exit code it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{source:#}")]
pub struct ExitError {
    /// 64 for configuration and usage errors, 1 otherwise.
    pub code: i32,
    /// What went wrong.
    #[source]
    pub source: anyhow::Error,
}

/// Exit code for configuration and usage errors (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: i32 = 1;

impl ExitError {
    /// A configuration or usage error.
    pub fn config(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_CONFIG,
            source: source.into(),
        }
    }

    /// A runtime failure.
    pub fn failure(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_FAILURE,
            source: source.into(),
        }
    }
}

impl From<crate::app::Error> for ExitError {
    fn from(e: crate::app::Error) -> Self {
        if e.is_config() {
            Self::config(e)
        } else {
            Self::failure(e)
        }
    }
}

impl From<crate::config::Error> for ExitError {
    fn from(e: crate::config::Error) -> Self {
        Self::config(e)
    }
}

/// Stops a command that would serve with certificate, key or CA files that do not exist or
/// cannot be read (see [`crate::app::unreadable_files`]): each is logged as an error and named
/// in the exit message.
pub fn require_files(config: &crate::config::Config) -> Result<(), ExitError> {
    refuse_unreadable(crate::app::unreadable_files(
        config,
        std::path::Path::to_path_buf,
    ))
}

/// Exit 64 naming each of `unreadable`, if there is any.
pub fn refuse_unreadable(unreadable: Vec<crate::app::UnreadableFile>) -> Result<(), ExitError> {
    if unreadable.is_empty() {
        return Ok(());
    }
    for f in &unreadable {
        tracing::error!(origin = %f.origin, path = %f.path.display(), "{}", f.problem);
    }
    let lines: Vec<String> = unreadable.iter().map(ToString::to_string).collect();
    Err(ExitError::config(anyhow::anyhow!(
        "files the configuration names cannot be used:\n  {}",
        lines.join("\n  ")
    )))
}
