//! Flags and `STS_SIDECAR_*` variables, layered over the file's TOML table before it is read as
//! data: flag > variable > file. Every value written records its origin (`--role-arn`,
//! `STS_SIDECAR_DURATION`) so that a problem with it names where it came from.
//!
//! Flags are the shorthand for one role: the role and source flags apply to the first role and
//! to its source. A kind-specific flag (`--token-file`, `--oidc-token-url`, ...) or `--source KIND`
//! picks the kind; if the first role's source in the file is of another kind, the flags replace
//! it (flags win). With no source anywhere, the Kubernetes IRSA variables
//! (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`) configure a file
//! source and the default role; without them, the historical default is a token-service source.

use std::collections::HashMap;

use super::file::SourceSpec;
use super::{ENV_PREFIX, Env, Overrides};

/// The IRSA token file variable (set by the EKS pod identity webhook).
pub const ENV_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// The IRSA role variable.
pub const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
/// The IRSA session name variable (optional).
pub const ENV_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";

/// Where a setting lands in the table.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A key of a top-level section: (`server`, `listen`).
    Key(&'static str, &'static str),
    /// A key of the first `[[role]]`.
    Role(&'static str),
    /// The kind of the first role's source.
    Kind,
    /// A key of the first role's source, for sources of these kinds. `selects`: giving it
    /// picks the (single) kind.
    Source {
        key: &'static str,
        kinds: &'static [&'static str],
        selects: bool,
    },
}

/// One setting that flags or variables can give.
#[derive(Debug, Clone, Copy)]
struct Setting {
    /// The name: `--NAME` for a flag, `STS_SIDECAR_NAME` (upper case, `_`) for a variable.
    name: &'static str,
    /// Whether there is a command-line flag (otherwise only the variable).
    flag: bool,
    target: Target,
}

const fn key(name: &'static str, flag: bool, section: &'static str, k: &'static str) -> Setting {
    Setting {
        name,
        flag,
        target: Target::Key(section, k),
    }
}

const fn source(
    name: &'static str,
    flag: bool,
    k: &'static str,
    kinds: &'static [&'static str],
    selects: bool,
) -> Setting {
    Setting {
        name,
        flag,
        target: Target::Source {
            key: k,
            kinds,
            selects,
        },
    }
}

/// Every setting flags and variables can give: the one list of them.
const SETTINGS: &[Setting] = &[
    key("listen", true, "server", "listen"),
    key("admin-listen", true, "server", "admin_listen"),
    key("auth-token-file", true, "server", "auth_token_file"),
    key("imds", true, "server", "imds"),
    key("allow-non-loopback", false, "server", "allow_non_loopback"),
    key("max-connections", false, "server", "max_connections"),
    key(
        "header-read-timeout-secs",
        false,
        "server",
        "header_read_timeout_secs",
    ),
    key("cold-start-wait-ms", false, "server", "cold_start_wait_ms"),
    key("drain-secs", false, "server", "drain_secs"),
    key("imds-v1", false, "server", "imds_v1"),
    key("cert-file", true, "identity", "cert_file"),
    key("key-file", true, "identity", "key_file"),
    key("sts-region", true, "sts", "region"),
    key("sts-endpoint", true, "sts", "endpoint"),
    key("sts-timeout-secs", false, "sts", "timeout_secs"),
    key("rolesanywhere-endpoint", true, "rolesanywhere", "endpoint"),
    key(
        "rolesanywhere-timeout-secs",
        false,
        "rolesanywhere",
        "timeout_secs",
    ),
    Setting {
        name: "trust-anchor-arn",
        flag: true,
        target: Target::Role("trust_anchor_arn"),
    },
    Setting {
        name: "profile-arn",
        flag: true,
        target: Target::Role("profile_arn"),
    },
    Setting {
        name: "role-arn",
        flag: true,
        target: Target::Role("arn"),
    },
    Setting {
        name: "role-session-name",
        flag: true,
        target: Target::Role("session_name"),
    },
    Setting {
        name: "duration",
        flag: true,
        target: Target::Role("duration_secs"),
    },
    Setting {
        name: "source",
        flag: true,
        target: Target::Kind,
    },
    source("token-service-url", true, "url", &["token-service"], true),
    source(
        "token-service-ca",
        true,
        "ca_file",
        &["token-service"],
        true,
    ),
    source(
        "token-service-timeout-secs",
        false,
        "timeout_secs",
        &["token-service"],
        false,
    ),
    source("token-file", true, "path", &["file"], true),
    source(
        "gcp-service-account",
        true,
        "service_account",
        &["gcp-metadata"],
        true,
    ),
    source("oidc-token-url", true, "token_url", &["oidc"], true),
    source("oidc-issuer", true, "issuer", &["oidc"], true),
    source("oidc-client-id", true, "client_id", &["oidc"], true),
    source(
        "oidc-client-secret-file",
        true,
        "client_secret_file",
        &["oidc"],
        true,
    ),
    source("oidc-scope", true, "scope", &["oidc"], true),
    source("token-command", true, "command", &["command"], true),
    source(
        "audience",
        true,
        "audience",
        &["gcp-metadata", "oidc", "github-actions"],
        false,
    ),
];

/// The names of every flag the layering knows (for tests that build [`Overrides`] by name).
pub fn flag_names() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().filter(|s| s.flag).map(|s| s.name)
}

/// The TOML table with flags and variables written into it, and where each written value came
/// from (by key path, e.g. `role[0].arn`).
#[derive(Debug)]
pub(crate) struct Layered {
    pub(crate) root: toml::Table,
    pub(crate) origins: HashMap<String, String>,
    /// Problems found while layering: (origin, message).
    pub(crate) problems: Vec<(String, String)>,
}

struct Given {
    setting: Setting,
    value: String,
    origin: String,
}

/// Writes the flags and variables into `root` (the file's table, or an empty one).
pub(crate) fn apply(mut root: toml::Table, flags: &Overrides, env: &dyn Env) -> Layered {
    let mut out = Layered {
        root: toml::Table::new(),
        origins: HashMap::new(),
        problems: Vec::new(),
    };
    let given: Vec<Given> = SETTINGS
        .iter()
        .filter_map(|s| {
            if s.flag
                && let Some(v) = flags.get(s.name)
            {
                return Some(Given {
                    setting: *s,
                    value: v.to_owned(),
                    origin: format!("--{}", s.name),
                });
            }
            let var = env_name(s.name);
            env.var(&var).map(|value| Given {
                setting: *s,
                value,
                origin: var,
            })
        })
        .collect();

    for g in &given {
        match g.setting.target {
            Target::Key(section, k) => {
                if let Some(t) = table_at(&mut root, section) {
                    t.insert(k.to_owned(), toml::Value::String(g.value.clone()));
                    out.origins
                        .insert(format!("{section}.{k}"), g.origin.clone());
                }
            }
            Target::Role(k) => {
                if let Some(t) = first_role(&mut root) {
                    t.insert(k.to_owned(), toml::Value::String(g.value.clone()));
                    out.origins.insert(format!("role[0].{k}"), g.origin.clone());
                }
            }
            Target::Kind | Target::Source { .. } => {}
        }
    }
    layer_source(&mut root, &given, env, &mut out);
    out.root = root;
    out
}

/// `STS_SIDECAR_<NAME>` for a setting name.
fn env_name(name: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        name.replace('-', "_").to_ascii_uppercase()
    )
}

/// The kind a selecting setting picks, if it picks one.
fn selected_kind(g: &Given) -> Option<String> {
    match g.setting.target {
        Target::Kind => Some(g.value.trim().to_owned()),
        Target::Source {
            kinds,
            selects: true,
            ..
        } => kinds.first().map(|k| (*k).to_owned()),
        _ => None,
    }
}

fn layer_source(root: &mut toml::Table, given: &[Given], env: &dyn Env, out: &mut Layered) {
    // Which kind do the flags pick (if any)? Two different kinds are an error naming both.
    let mut picked: Option<(String, &str)> = None;
    for g in given {
        let Some(kind) = selected_kind(g) else {
            continue;
        };
        if !SourceSpec::KINDS.contains(&kind.as_str()) {
            out.problems.push((
                g.origin.clone(),
                format!(
                    "unknown identity source {kind:?} (known: {})",
                    SourceSpec::KINDS.join(", ")
                ),
            ));
            return;
        }
        match &picked {
            Some((k, origin)) if *k != kind => {
                out.problems.push((
                    g.origin.clone(),
                    format!(
                        "selects the identity source {kind}, but {origin} selects {k}: give the \
                         settings of one"
                    ),
                ));
                return;
            }
            Some(_) => {}
            None => picked = Some((kind, g.origin.as_str())),
        }
    }

    // A Roles Anywhere first role needs no source: make none up for it.
    let roles_anywhere = root
        .get("role")
        .and_then(|r| r.as_array())
        .and_then(|r| r.first())
        .and_then(|r| r.as_table())
        .is_some_and(|r| r.contains_key("trust_anchor_arn") || r.contains_key("profile_arn"));
    if roles_anywhere && picked.is_none() && file_sources(root).is_empty() {
        return;
    }

    // The first role's source in the file: the one it names, or the only one there is.
    let named = root
        .get("role")
        .and_then(|r| r.as_array())
        .and_then(|r| r.first())
        .and_then(|r| r.get("source"))
        .and_then(|s| s.as_str())
        .map(str::to_owned);
    let existing = file_sources(root);
    let target = match named {
        Some(name) => existing.iter().find(|s| s.name == name).cloned(),
        None if existing.len() == 1 => existing.first().cloned(),
        None => None,
    };

    let target = match (picked, target) {
        (Some((kind, _)), Some(t)) if t.kind.as_deref() == Some(kind.as_str()) => t,
        (Some((kind, origin)), _) => {
            let origin = origin.to_owned();
            let same_name = existing
                .iter()
                .find(|s| s.name == kind && s.kind.as_deref() == Some(kind.as_str()))
                .cloned();
            match same_name {
                Some(t) => {
                    set_role_source(root, out, &t.name, &origin);
                    t
                }
                // Keep the historical layout (and its key names in messages).
                None if kind == "token-service" && existing.is_empty() => legacy_source(root),
                // A new source from the flags alone, for the first role.
                None => new_source(root, out, &kind, &origin),
            }
        }
        (None, Some(t)) => t,
        (None, None) if existing.is_empty() => match env
            .var(ENV_WEB_IDENTITY_TOKEN_FILE)
            .filter(|v| !v.trim().is_empty())
        {
            Some(_) => return irsa(root, env, out),
            None => legacy_source(root),
        },
        (None, None) => return,
    };

    for g in given {
        let Target::Source { key, kinds, .. } = g.setting.target else {
            continue;
        };
        if !target.kind.as_deref().is_some_and(|k| kinds.contains(&k)) {
            if g.origin.starts_with("--") {
                out.problems.push((
                    g.origin.clone(),
                    format!(
                        "applies to {} sources, but the first role's source {} is {}",
                        kinds.join(" and "),
                        target.path,
                        target.kind.as_deref().unwrap_or("of no known type")
                    ),
                ));
            }
            continue;
        }
        if let Some(t) = source_table(root, &target.path) {
            t.insert(key.to_owned(), toml::Value::String(g.value.clone()));
            out.origins
                .insert(format!("{}.{key}", target.path), g.origin.clone());
        }
    }
}

/// A source the file defines.
#[derive(Debug, Clone)]
struct FileSource {
    name: String,
    /// Its key path: `source.NAME`, or `token_service` for the historical section.
    path: String,
    kind: Option<String>,
}

fn file_sources(root: &toml::Table) -> Vec<FileSource> {
    let mut out = Vec::new();
    if root.get("token_service").is_some_and(|t| t.is_table()) {
        out.push(FileSource {
            name: "token-service".to_owned(),
            path: "token_service".to_owned(),
            kind: Some("token-service".to_owned()),
        });
    }
    if let Some(sources) = root.get("source").and_then(|s| s.as_table()) {
        for (name, spec) in sources {
            out.push(FileSource {
                name: name.clone(),
                path: format!("source.{name}"),
                kind: spec.get("type").and_then(|t| t.as_str()).map(str::to_owned),
            });
        }
    }
    out
}

fn legacy_source(root: &mut toml::Table) -> FileSource {
    table_at(root, "token_service");
    FileSource {
        name: "token-service".to_owned(),
        path: "token_service".to_owned(),
        kind: Some("token-service".to_owned()),
    }
}

fn new_source(root: &mut toml::Table, out: &mut Layered, kind: &str, origin: &str) -> FileSource {
    let mut spec = toml::Table::new();
    spec.insert("type".to_owned(), toml::Value::String(kind.to_owned()));
    if let Some(sources) = table_at(root, "source") {
        sources.insert(kind.to_owned(), toml::Value::Table(spec));
    }
    out.origins
        .insert(format!("source.{kind}.type"), origin.to_owned());
    set_role_source(root, out, kind, origin);
    FileSource {
        name: kind.to_owned(),
        path: format!("source.{kind}"),
        kind: Some(kind.to_owned()),
    }
}

fn set_role_source(root: &mut toml::Table, out: &mut Layered, name: &str, origin: &str) {
    if let Some(t) = first_role(root) {
        t.insert("source".to_owned(), toml::Value::String(name.to_owned()));
        out.origins
            .insert("role[0].source".to_owned(), origin.to_owned());
    }
}

/// Kubernetes IRSA: the token file and role the pod identity webhook sets, for the default role.
fn irsa(root: &mut toml::Table, env: &dyn Env, out: &mut Layered) {
    let Some(path) = env.var(ENV_WEB_IDENTITY_TOKEN_FILE) else {
        return;
    };
    let mut spec = toml::Table::new();
    spec.insert("type".to_owned(), toml::Value::String("file".to_owned()));
    spec.insert("path".to_owned(), toml::Value::String(path));
    if let Some(sources) = table_at(root, "source") {
        sources.insert("file".to_owned(), toml::Value::Table(spec));
    }
    out.origins.insert(
        "source.file.path".to_owned(),
        ENV_WEB_IDENTITY_TOKEN_FILE.to_owned(),
    );
    out.origins.insert(
        "source.file.type".to_owned(),
        ENV_WEB_IDENTITY_TOKEN_FILE.to_owned(),
    );
    for (var, k) in [
        (ENV_ROLE_ARN, "arn"),
        (ENV_ROLE_SESSION_NAME, "session_name"),
    ] {
        let Some(value) = env.var(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if let Some(t) = first_role(root)
            && !t.contains_key(k)
        {
            t.insert(k.to_owned(), toml::Value::String(value));
            out.origins.insert(format!("role[0].{k}"), var.to_owned());
        }
    }
}

/// The table at a top-level key, created if missing; `None` if the key holds something else.
fn table_at<'t>(root: &'t mut toml::Table, key: &str) -> Option<&'t mut toml::Table> {
    root.entry(key.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
}

/// The table of a source by its key path (`token_service` or `source.NAME`).
fn source_table<'t>(root: &'t mut toml::Table, path: &str) -> Option<&'t mut toml::Table> {
    match path.strip_prefix("source.") {
        Some(name) => table_at(root, "source")?.get_mut(name)?.as_table_mut(),
        None => table_at(root, path),
    }
}

/// The first `[[role]]`, created if there is none; `None` if `role` is not an array of tables
/// (the data check reports that).
fn first_role(root: &mut toml::Table) -> Option<&mut toml::Table> {
    let roles = root
        .entry("role".to_owned())
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()?;
    if roles.is_empty() {
        roles.push(toml::Value::Table(toml::Table::new()));
    }
    roles.first_mut()?.as_table_mut()
}
