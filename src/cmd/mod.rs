//! One file per subcommand. Errors here are `anyhow` with context; `main` maps them to exit
//! codes through [`ExitError`].

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
