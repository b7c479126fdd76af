//! The issuer's configuration: every problem at once, defaults, variables, URLs, budgets.
use std::collections::HashMap;

use super::*;
use crate::issuer::ProofKind;

fn settings(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, Error> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let matches = command().try_get_matches_from(args).expect("parses");
    load(&matches, &env, Purpose::Serve)
}

#[test]
fn every_problem_is_named_at_once() {
    let e = settings(&["--lifetime", "10", "--tls-cert", "c.pem"], &[])
        .expect_err("incomplete")
        .to_string();
    for want in [
        "--issuer-url: not set",
        "--instance-identity-ca: not set",
        "--signing-key: not set",
        "--lifetime: must be a whole number from 300 to 43200, got 10",
        "--tls-cert: needs --tls-key too",
    ] {
        assert!(e.contains(want), "missing {want:?} in {e}");
    }
}

#[test]
fn cloud_foundry_defaults_and_variables() {
    let s = settings(
        &[
            "--instance-identity-ca",
            "ca.pem",
            "--signing-key",
            "env:SIGNING_KEY",
        ],
        &[
            ("PORT", "8081"),
            ("STS_SIDECAR_ISSUER_URL", "https://issuer.example.com/"),
            ("SIGNING_KEY", "-----BEGIN PRIVATE KEY-----"),
            ("STS_SIDECAR_AUDIENCE", "sts.amazonaws.com,vault"),
        ],
    )
    .expect("settings");
    assert_eq!(s.listen, "0.0.0.0:8081".parse().unwrap());
    assert_eq!(s.issuer_url, "https://issuer.example.com");
    assert_eq!(s.audiences, ["sts.amazonaws.com", "vault"]);
    assert_eq!(
        s.accept,
        Accept::of(&[ProofKind::Assertion, ProofKind::Mtls])
    );
    assert!(matches!(&s.signing_key, KeySource::Env { var, .. } if var == "SIGNING_KEY"));
    assert!(!format!("{s:?}").contains("BEGIN PRIVATE KEY"));
    assert_eq!(s.limits.max_connections, 256);
    assert!(s.limits.reads_bodies);
    assert_eq!(s.budget, Budget::default());
}

#[test]
fn a_plain_http_issuer_only_on_loopback() {
    let e = settings(
        &[
            "--issuer-url",
            "http://issuer.example.com",
            "--instance-identity-ca",
            "ca.pem",
            "--signing-key",
            "k.pem",
        ],
        &[],
    )
    .expect_err("http")
    .to_string();
    assert!(e.contains("--issuer-url: must be an https:// URL"), "{e}");
    assert!(
        settings(
            &[
                "--issuer-url",
                "http://127.0.0.1:8080",
                "--instance-identity-ca",
                "ca.pem",
                "--signing-key",
                "k.pem",
            ],
            &[],
        )
        .is_ok()
    );
}

#[test]
fn token_urls_and_budgets() {
    let s = settings(
        &[
            "--issuer-url",
            "https://keys.example.com",
            "--token-url",
            "https://issuer.apps.internal:8443/,https://keys.example.com",
            "--instance-identity-ca",
            "ca.pem",
            "--signing-key",
            "k.pem",
            "--instance-burst",
            "5",
            "--instance-refill-secs",
            "60",
        ],
        &[],
    )
    .expect("settings");
    assert_eq!(s.token_urls, ["https://issuer.apps.internal:8443"]);
    assert_eq!(
        s.assertion_audiences(),
        [
            "https://keys.example.com",
            "https://issuer.apps.internal:8443"
        ]
    );
    assert_eq!(s.budget.burst, 5);
    assert_eq!(s.budget.interval, Duration::from_secs(60));
    let e = settings(
        &[
            "--issuer-url",
            "https://keys.example.com",
            "--token-url",
            "http://issuer.internal",
        ],
        &[],
    )
    .expect_err("plain http off loopback")
    .to_string();
    assert!(e.contains("--token-url: must be an https:// URL"), "{e}");
}

#[test]
fn publishing_needs_only_the_url_and_the_keys() {
    let env = HashMap::new();
    let matches = command()
        .try_get_matches_from([
            "--issuer-url",
            "https://k.example.com",
            "--signing-key",
            "k.pem",
        ])
        .expect("parses");
    assert!(load(&matches, &env, Purpose::Publish).is_ok());
    assert!(load(&matches, &env, Purpose::Serve).is_err());
}
