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
//! 5. [`server`]: the credentials endpoint and the admin endpoint, built from [`listener`]
//!    (connection slots, deadlines, bounded bodies: what a connection may cost before anything
//!    about it is known), which the issuer's listeners use too.
//!
//! Around them, dependencies flow one way: [`cli`] and [`cmd`] (one file per subcommand:
//! arguments and exit codes) use [`app`] (the sidecar assembled from the config: sources,
//! backends, listeners, refreshers), which uses [`config`] (file, variables and flags into one
//! typed `Config`), which uses the pipeline modules above; at the bottom are leaves that know
//! nothing of the rest: [`checker`] (configuration problems and origins), [`env`], [`clock`]
//! (the only wall-clock reader), [`metrics`], [`report`] (errors in words), [`secret`]
//! (redacting newtypes), [`telemetry`], and [`trust`] (IAM trust-policy evaluation for `check`).
//! `python3 scripts/import-graph.py` prints the graph and fails on a cycle.
//!
//! Beside the sidecar, in the same binary: [`issuer`] (`sts-sidecar issuer`, the token service
//! the `token-service` source calls: proofs behind one seam, a grant pipeline, budgets per
//! instance, key material with a lifecycle) with [`jws`] (JWS signing and verification, shared
//! with the sources). The issuer imports nothing from [`server`]: both stand on [`listener`]. Shared leaves: [`files`] (token files read without blocking or trusting too
//! much) and [`hardening`] (no core dumps, no same-user debugger).
//!
//! # Following a credential
//!
//! From `main.rs` to the wire in eight files: `main.rs` (parse, dispatch) → `cmd/serve.rs`
//! (load the config, bind) → `app.rs` (build sources and backends, start) → `token/cache.rs`
//! (the identity token, cached) → `token/token_service.rs` (one kind of source) →
//! `backend/sts.rs` (`AssumeRoleWithWebIdentity`) → `cache.rs` (the refresher publishes) →
//! `server/credentials.rs` (the answer).

#![forbid(unsafe_code)]

pub mod app;
pub mod backend;
pub mod cache;
pub mod checker;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod env;
pub mod files;
pub mod hardening;
pub mod identity;
pub mod issuer;
pub mod jws;
pub mod listener;
pub mod metrics;
pub mod report;
pub mod secret;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod token;
pub mod trust;
