//! The config file as data: one serde struct per section, every value a [`Field`] so that a
//! value of the wrong type is reported with its key instead of hiding the rest. The file is read
//! once; unknown keys are reported with the keys the section knows (taken from the struct);
//! sources are read by the kind their `type` names. Defaults and "required" are the business of
//! [`super::build`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Problem;
use crate::checker::{Checker, Field, shown};
use crate::token::{self, KindName};

/// The top-level keys of the file.
const SECTIONS: [&str; 8] = [
    "server",
    "identity_tokens",
    "identity",
    "token_service",
    "sts",
    "rolesanywhere",
    "source",
    "role",
];

/// The whole file.
#[derive(Debug, Default)]
pub(crate) struct File {
    /// `[server]`
    pub(crate) server: Server,
    /// `[identity]`: the certificate and key, for the sources and roles that present them.
    pub(crate) identity: Identity,
    /// `[sts]`
    pub(crate) sts: Sts,
    /// `[rolesanywhere]`
    pub(crate) rolesanywhere: RolesAnywhere,
    /// `[token_service]` (named `token-service`, the one source of configs written before named
    /// sources), then every `[source.NAME]`, in file order.
    pub(crate) sources: Vec<FileSource>,
    /// `[[role]]`
    pub(crate) roles: Vec<Role>,
    /// `[identity_tokens]`
    pub(crate) identity_tokens: IdentityTokens,
}

/// `[identity_tokens]`: the identity-token endpoint's audiences and source.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct IdentityTokens {
    pub(crate) audiences: Field<Vec<String>>,
    pub(crate) source: Field<String>,
    pub(crate) azure_token_file: Field<PathBuf>,
    pub(crate) azure_audience: Field<String>,
}

/// One source of the file.
#[derive(Debug)]
pub(crate) struct FileSource {
    /// Its name.
    pub(crate) name: String,
    /// Its key path: `source.NAME`, or `token_service`.
    pub(crate) at: String,
    /// Its section, `None` when its `type` is missing or unknown (already reported).
    pub(crate) spec: Option<token::Spec>,
}

impl FileSource {
    /// Its kind, when known.
    pub(crate) fn kind(&self) -> Option<KindName> {
        self.spec.as_ref().map(token::Spec::kind)
    }
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Server {
    pub(crate) listen: Field<SocketAddr>,
    pub(crate) admin_listen: Field<SocketAddr>,
    pub(crate) allow_non_loopback: Field<bool>,
    pub(crate) auth_token_file: Field<PathBuf>,
    pub(crate) auth_token_file_mode: Field<String>,
    pub(crate) max_connections: Field<u64>,
    pub(crate) header_read_timeout_secs: Field<u64>,
    pub(crate) cold_start_wait_ms: Field<u64>,
    pub(crate) drain_secs: Field<u64>,
    pub(crate) imds: Field<bool>,
    pub(crate) imds_v1: Field<bool>,
}

/// `[identity]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Identity {
    pub(crate) cert_file: Field<PathBuf>,
    pub(crate) key_file: Field<PathBuf>,
}

/// `[sts]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Sts {
    pub(crate) region: Field<String>,
    pub(crate) endpoint: Field<String>,
    pub(crate) timeout_secs: Field<u64>,
}

/// `[rolesanywhere]`: where and how `CreateSession` is called, for every Roles Anywhere role.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RolesAnywhere {
    pub(crate) endpoint: Field<String>,
    pub(crate) fips: Field<bool>,
    pub(crate) dual_stack: Field<bool>,
    pub(crate) timeout_secs: Field<u64>,
}

/// `[[role]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Role {
    pub(crate) alias: Field<String>,
    pub(crate) arn: Field<String>,
    pub(crate) session_name: Field<String>,
    pub(crate) duration_secs: Field<u64>,
    /// The name of a `[source.NAME]`; may be left out when there is only one.
    pub(crate) source: Field<String>,
    /// With `profile_arn`: a Roles Anywhere role.
    pub(crate) trust_anchor_arn: Field<String>,
    /// With `trust_anchor_arn`: a Roles Anywhere role.
    pub(crate) profile_arn: Field<String>,
    /// The alias of the role whose credentials assume this one (role chaining).
    pub(crate) via: Field<String>,
    /// The external ID for the chained `AssumeRole`.
    pub(crate) external_id: Field<String>,
}

/// Parses the file's text; a syntax error names the line and column.
pub(crate) fn parse(text: &str, name: &str) -> Result<toml::Table, Problem> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        Problem {
            key: name.to_owned(),
            message: format!("not valid TOML{at}: {}", e.message().trim_end()),
        }
    })
}

/// Every key path of `table` (`server.listen`, `role[0].arn`, `role[0]`), for naming the file
/// in messages about keys it has.
pub(crate) fn key_paths(table: &toml::Table) -> HashSet<String> {
    let mut out = HashSet::new();
    collect_keys(table, "", &mut out);
    out
}

fn collect_keys(table: &toml::Table, prefix: &str, out: &mut HashSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &path, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        let item_path = format!("{path}[{i}]");
                        collect_keys(t, &item_path, out);
                        out.insert(item_path);
                    }
                }
            }
            _ => {}
        }
        out.insert(path);
    }
}

/// Reads the file's table as data, reporting every structural problem.
pub(crate) fn read(c: &mut Checker<'_>, mut table: toml::Table) -> File {
    let mut file = File {
        server: c.section("server", table.remove("server")),
        identity: c.section("identity", table.remove("identity")),
        sts: c.section("sts", table.remove("sts")),
        rolesanywhere: c.section("rolesanywhere", table.remove("rolesanywhere")),
        identity_tokens: c.section("identity_tokens", table.remove("identity_tokens")),
        ..File::default()
    };
    if let Some(value) = table.remove("token_service") {
        let spec = match value {
            toml::Value::Table(t) => Some(KindName::TokenService.read(c, "token_service", t)),
            other => {
                c.problem(
                    "token_service",
                    format!("must be a table, got {}", shown(&other)),
                );
                None
            }
        };
        file.sources.push(FileSource {
            name: KindName::TokenService.name().to_owned(),
            at: "token_service".to_owned(),
            spec,
        });
    }
    match table.remove("source") {
        None => {}
        Some(toml::Value::Table(sources)) => {
            for (name, value) in sources {
                let at = format!("source.{name}");
                let spec = read_source(c, &at, value);
                file.sources.push(FileSource { name, at, spec });
            }
        }
        Some(other) => c.problem(
            "source",
            format!(
                "must be a table of sources ([source.NAME]), got {}",
                shown(&other)
            ),
        ),
    }
    match table.remove("role") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let role = c.section(&format!("role[{i}]"), Some(item));
                file.roles.push(role);
            }
        }
        Some(toml::Value::Table(_)) => c.problem(
            "role",
            "must be an array of tables: write [[role]], not [role]",
        ),
        Some(other) => c.problem(
            "role",
            format!(
                "must be an array of tables ([[role]]), got {}",
                shown(&other)
            ),
        ),
    }
    for key in table.keys() {
        c.problem(key, format!("unknown key (known: {})", SECTIONS.join(", ")));
    }
    file
}

/// Reads `[source.NAME]` by the kind its `type` names.
fn read_source(c: &mut Checker<'_>, at: &str, value: toml::Value) -> Option<token::Spec> {
    let toml::Value::Table(mut table) = value else {
        c.problem(
            at,
            format!("must be a table ([{at}]), got {}", shown(&value)),
        );
        return None;
    };
    let known = || {
        KindName::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match table.remove("type") {
        None => {
            c.problem(
                &format!("{at}.type"),
                format!("missing: every source needs type = one of {}", known()),
            );
            return None;
        }
        Some(toml::Value::String(kind)) => match KindName::from_name(kind.trim()) {
            Some(k) => k,
            None => {
                c.problem(
                    &format!("{at}.type"),
                    format!("unknown source type {kind:?} (known: {})", known()),
                );
                return None;
            }
        },
        Some(other) => {
            c.problem(
                &format!("{at}.type"),
                format!("must be one of {}, got {}", known(), shown(&other)),
            );
            return None;
        }
    };
    Some(kind.read(c, at, table))
}
