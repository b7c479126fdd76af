//! The config file as data: serde structs that mirror the TOML, unknown keys refused. Every
//! field is optional here (defaults and "required" are semantic checks in [`super::checks`]),
//! so one missing key never hides the other problems. Numbers and booleans also accept strings,
//! because flags and `STS_SIDECAR_*` variables are layered into the same table as text
//! ([`super::layer`]); the checks turn them into typed values and name the flag, variable or
//! key when one is not a number.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::token;

/// The whole file (after layering).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    /// `[server]`
    pub(crate) server: Option<Server>,
    /// `[identity]`: the certificate and key, for the sources that present them.
    pub(crate) identity: Option<Identity>,
    /// `[token_service]`: the one token-service source of configs written before named sources.
    pub(crate) token_service: Option<token::token_service::Spec>,
    /// `[sts]`
    pub(crate) sts: Option<Sts>,
    /// `[rolesanywhere]`
    pub(crate) rolesanywhere: Option<RolesAnywhere>,
    /// `[source.NAME]`
    #[serde(default)]
    pub(crate) source: BTreeMap<String, SourceSpec>,
    /// `[[role]]`
    #[serde(default)]
    pub(crate) role: Vec<Role>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Server {
    pub(crate) listen: Option<String>,
    pub(crate) admin_listen: Option<String>,
    pub(crate) allow_non_loopback: Option<Switch>,
    pub(crate) auth_token_file: Option<String>,
    pub(crate) max_connections: Option<Uint>,
    pub(crate) header_read_timeout_secs: Option<Uint>,
    pub(crate) cold_start_wait_ms: Option<Uint>,
    pub(crate) drain_secs: Option<Uint>,
    pub(crate) imds: Option<Switch>,
    pub(crate) imds_v1: Option<Switch>,
}

/// `[identity]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Identity {
    pub(crate) cert_file: Option<String>,
    pub(crate) key_file: Option<String>,
}

/// `[sts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sts {
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) timeout_secs: Option<Uint>,
}

/// `[rolesanywhere]`: where and how `CreateSession` is called, for every Roles Anywhere role.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolesAnywhere {
    pub(crate) endpoint: Option<String>,
    pub(crate) fips: Option<Switch>,
    pub(crate) dual_stack: Option<Switch>,
    pub(crate) timeout_secs: Option<Uint>,
}

/// `[[role]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Role {
    pub(crate) alias: Option<String>,
    pub(crate) arn: Option<String>,
    pub(crate) session_name: Option<String>,
    pub(crate) duration_secs: Option<Uint>,
    /// The name of a `[source.NAME]`; may be left out when there is only one.
    pub(crate) source: Option<String>,
    /// With `profile_arn`: a Roles Anywhere role.
    pub(crate) trust_anchor_arn: Option<String>,
    /// With `trust_anchor_arn`: a Roles Anywhere role.
    pub(crate) profile_arn: Option<String>,
}

/// `[source.NAME]`: one identity source, its kind chosen by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(crate) enum SourceSpec {
    /// The CF Identity Token Service.
    TokenService(token::token_service::Spec),
    /// A token file.
    File(token::file::Spec),
    /// The GCP metadata server.
    GcpMetadata(token::gcp_metadata::Spec),
    /// An OIDC client-credentials grant.
    Oidc(token::oidc::Spec),
    /// A GitHub Actions job's token.
    GithubActions(token::github_actions::Spec),
    /// A program that prints a token.
    Command(token::command::Spec),
}

impl SourceSpec {
    /// Every `type`, as written in the file.
    pub(crate) const KINDS: [&'static str; 6] = [
        "token-service",
        "file",
        "gcp-metadata",
        "oidc",
        "github-actions",
        "command",
    ];
}

/// A whole number, written as a TOML integer or (from a flag or variable) as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Uint {
    /// A TOML integer.
    Number(i64),
    /// Text, parsed by the checks.
    Text(String),
}

/// A boolean, written as a TOML boolean or (from a flag or variable) as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Switch {
    /// A TOML boolean.
    Bool(bool),
    /// Text, parsed by the checks.
    Text(String),
}

impl<'de> Deserialize<'de> for Uint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Uint;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Uint, E> {
                Ok(Uint::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Uint, E> {
                Ok(Uint::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Uint, E> {
                Ok(Uint::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Switch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(Switch::Bool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Switch, E> {
                Ok(Switch::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}
