//! The one integration test binary: sts-sidecar in-process on `127.0.0.1:0` against fake
//! upstreams that speak the real protocols (token service over mTLS, STS query/XML).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

// Shared stack builder and HTTP helpers.
mod support;
// A backend that follows a script, for paused-time tests of the refresh policy.
mod scripted;

// The real binary: help, exit codes, signals.
mod cli;
// exec, credential-process and check as users run them.
mod commands;
// The fakes answer like the real upstreams.
mod fakes;
// IMDSv2 emulation.
mod imds;
// Table-driven configuration cases from tests/data/config_cases.toml.
mod config;
// The real Rust SDK container provider against the running server.
mod sdk;
// The credentials and admin endpoints end to end, cold start and coalescing.
mod serve;
// Paused-time refresh schedule, backoff, stale-while-failing, floor, readiness.
mod refresh;
// Every identity source end to end against its fake, and the token cache's rules.
mod sources;
// IAM Roles Anywhere roles against a fake that verifies signatures and chains.
mod roles_anywhere;
// sts-sidecar issuer: proofs, forgeries, keys, rotation, the sidecar through it.
mod issuer;
// Instance identity rotation, including a key replaced before its certificate.
mod rotation;
// Seven simulated days of random faults.
mod soak;
// Marker secrets never reach logs, errors or Debug output.
mod secrets;
