//! sts-sidecar turns a platform's proof of identity into AWS credentials for the app's own IAM
//! role and serves them on loopback in the ECS container credentials format, so that every
//! unmodified AWS SDK picks them up from `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
//!
//! # Layout
//!
//! The modules follow the pipeline, top to bottom:
//!
//! 1. [`identity`]: the instance identity certificate and key, read as a matched pair.
//! 2. [`token`]: an identity token (JWT) from one of six sources (the token service, a token
//!    file, the GCP metadata server, an OIDC client-credentials grant, GitHub Actions, a
//!    command), behind one cache that reuses it until near its expiry.
//! 3. [`backend`]: AWS credentials from STS `AssumeRoleWithWebIdentity` with that token, or
//!    from IAM Roles Anywhere `CreateSession` signed with the certificate's key.
//! 4. [`cache`]: one refresher task per role publishes credentials; readers only read.
//! 5. [`server`]: the credentials endpoint and the admin endpoint.
//!
//! Around them: [`cli`] and [`cmd`] (one file per subcommand; `cmd::build` turns the config into
//! sources and backends for all of them), [`config`] (file, environment and flags into one typed
//! `Config`), [`clock`] (the only wall-clock reader), [`metrics`],
//! [`telemetry`] and [`secret`] (redacting newtypes).

#![forbid(unsafe_code)]

pub mod backend;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod secret;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod token;
