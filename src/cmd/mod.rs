//! One file per subcommand: argument handling and exit codes, nothing else (the sidecar itself
//! is assembled by [`crate::app`]). Errors here are `anyhow` with context; `main` prints them
//! with their causes and exits with [`ExitError::code`].

pub mod check;
pub mod credential_process;
pub mod exec;
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
