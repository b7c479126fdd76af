//! Arbitrary config files (and `VCAP_APPLICATION`, after a NUL byte): no panic; a config that
//! parses has valid session names and role ARNs; a refused one names at least one problem.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sts_sidecar::backend::arn::role_account;
use sts_sidecar::config::{Config, Overrides};

const AUTH: &str = "fuzz-config-auth-token-5feceb66ffc86f38d952786c6d696c79";

fuzz_target!(|data: &[u8]| {
    let (file, vcap) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), AUTH.into());
    env.insert(
        "CF_INSTANCE_CERT".into(),
        "/etc/cf-instance-credentials/instance.crt".into(),
    );
    env.insert(
        "CF_INSTANCE_KEY".into(),
        "/etc/cf-instance-credentials/instance.key".into(),
    );
    if let Some(vcap) = vcap {
        env.insert(
            "VCAP_APPLICATION".into(),
            String::from_utf8_lossy(vcap).into_owned(),
        );
    }
    match Config::parse(Some((text, "fuzz.toml")), &Overrides::default(), &env) {
        Ok(config) => {
            assert!(
                !config.roles.is_empty(),
                "a config without roles was accepted"
            );
            for role in &config.roles {
                let n = role.session_name.len();
                assert!((2..=64).contains(&n), "session name length {n}");
                assert!(
                    role.session_name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
                    "invalid session name {:?}",
                    role.session_name
                );
                assert!(
                    role_account(&role.arn).is_some(),
                    "accepted ARN {:?}",
                    role.arn
                );
            }
            assert!(
                !format!("{config:?}").contains(AUTH),
                "Debug shows the auth token"
            );
        }
        Err(e) => {
            let shown = format!("{e}");
            assert!(!shown.trim().is_empty(), "an error without a problem");
            assert!(!shown.contains(AUTH), "the auth token in an error: {shown}");
        }
    }
});
