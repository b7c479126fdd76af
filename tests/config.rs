//! Table-driven configuration cases from `tests/data/config_cases.toml`: file, environment and
//! flags in; the typed config or every expected error out.

use std::collections::HashMap;

use sts_sidecar::config::{AuthSource, Config, Overrides, RoleBackend};
use sts_sidecar::token::Settings as SourceSettings;

#[derive(serde::Deserialize)]
struct Cases {
    defaults: Defaults,
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Defaults {
    env: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    file: Option<String>,
    #[serde(default)]
    env: HashMap<String, String>,
    #[serde(default)]
    flags: HashMap<String, String>,
    expect: Option<HashMap<String, String>>,
    error_contains: Option<Vec<String>>,
}

/// The flags as a command line, parsed as `serve` parses it (with the case's variables).
fn overrides(
    flags: &HashMap<String, String>,
    env: &HashMap<String, String>,
) -> Result<Overrides, String> {
    let mut names: Vec<&String> = flags.keys().collect();
    names.sort();
    let mut argv = Vec::new();
    for name in names {
        argv.push(format!("--{}={}", name.replace('_', "-"), flags[name]));
    }
    Overrides::from_args(argv, env).map_err(|e| e.to_string())
}

fn token_service(config: &Config) -> &sts_sidecar::token::token_service::Settings {
    let name = config.roles[0].source().expect("a web-identity role");
    match config.source(name).map(|s| &s.settings) {
        Some(SourceSettings::TokenService(s)) => s,
        other => panic!("the default role's source is not a token service: {other:?}"),
    }
}

fn field(config: &Config, name: &str) -> String {
    let role = &config.roles[0];
    match name {
        "listen" => config.listen.to_string(),
        "admin_listen" => config.admin_listen.to_string(),
        "role_arn" => role.arn.clone(),
        "account_id" => role.account_id.clone(),
        "session_name" => role.session_name.clone(),
        "duration" => role.duration.as_secs().to_string(),
        "identity_tokens" => config
            .identity_tokens
            .as_ref()
            .map(|t| format!("{}: {}", t.source, t.audiences.join(",")))
            .unwrap_or_default(),
        "alias" => role.alias.clone(),
        "roles" => config.roles.len().to_string(),
        "second_alias" => config.roles[1].alias.clone(),
        "second_account" => config.roles[1].account_id.clone(),
        "region" => config.sts.region.clone(),
        "endpoint" => config.sts.endpoint.clone().unwrap_or_default(),
        "token_service_url" => token_service(config).url.clone(),
        "cert_file" => match &role.backend {
            RoleBackend::RolesAnywhere(ra) => ra.identity.cert_path.display().to_string(),
            RoleBackend::WebIdentity { .. } => token_service(config)
                .identity
                .cert_path
                .display()
                .to_string(),
            RoleBackend::Chained { .. } => String::new(),
        },
        "cert_origin" => token_service(config).identity.cert_origin.clone(),
        "source" => role.source().unwrap_or("").to_owned(),
        "source_kind" => config
            .source(role.source().unwrap_or(""))
            .map(|s| s.settings.kind().to_string())
            .unwrap_or_default(),
        "sources" => config
            .sources
            .iter()
            .map(|s| format!("{}:{}", s.name, s.settings.kind()))
            .collect::<Vec<_>>()
            .join(","),
        "role_sources" => config
            .roles
            .iter()
            .map(|r| match (&r.backend, r.source()) {
                (RoleBackend::Chained { via, .. }, _) => format!("(via {via})"),
                (_, Some(source)) => source.to_owned(),
                (_, None) => "(roles-anywhere)".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(","),
        "warnings" => config.warnings.join(" | "),
        "backend" => role.kind().replace("sts", "web-identity"),
        "ra_endpoint" | "ra_region" | "ra_session" => match &role.backend {
            RoleBackend::RolesAnywhere(ra) => match name {
                "ra_endpoint" => ra.endpoint.clone(),
                "ra_region" => ra.region.clone(),
                _ => ra.session_name.clone().unwrap_or_default(),
            },
            RoleBackend::WebIdentity { .. } | RoleBackend::Chained { .. } => String::new(),
        },
        "via" => match &role.backend {
            RoleBackend::Chained { via, external_id } => format!(
                "{via}{}",
                if external_id.is_some() {
                    " (external id)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        },
        "gcp_url" => match config
            .source(role.source().unwrap_or(""))
            .map(|s| &s.settings)
        {
            Some(SourceSettings::GcpMetadata(s)) => s.url.clone(),
            _ => String::new(),
        },
        "command" => match config
            .source(role.source().unwrap_or(""))
            .map(|s| &s.settings)
        {
            Some(SourceSettings::Command(s)) => s.argv.join("|"),
            _ => String::new(),
        },
        "max_connections" => config.limits.max_connections.to_string(),
        "drain" => config.drain.as_secs().to_string(),
        "auth_token_file_mode" => format!("{:04o}", config.auth_token_file_mode),
        "auth" => match &config.auth {
            AuthSource::Fixed(_) => "fixed".to_owned(),
            AuthSource::File(p) => format!("file:{}", p.display()),
            AuthSource::Generated(_) => "generated".to_owned(),
            AuthSource::Unset => "unset".to_owned(),
        },
        other => panic!("unknown expectation {other}"),
    }
}

#[test]
fn config_cases() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/config_cases.toml"
    ))
    .expect("cases");
    let cases: Cases = toml::from_str(&text).expect("cases parse");
    assert!(cases.case.len() >= 15);
    for case in &cases.case {
        let mut env = cases.defaults.env.clone();
        env.extend(case.env.clone());
        env.retain(|_, v| !v.is_empty());
        let result = overrides(&case.flags, &env).and_then(|flags| {
            Config::parse(case.file.as_deref().map(|f| (f, "case.toml")), &flags, &env)
                .map_err(|e| e.to_string())
        });
        match (&case.expect, &case.error_contains, result) {
            (Some(expect), None, Ok(config)) => {
                for (name, want) in expect {
                    assert_eq!(&field(&config, name), want, "{}: {name}", case.name);
                }
            }
            (None, Some(wanted), Err(text)) => {
                for want in wanted {
                    assert!(
                        text.contains(want.as_str()),
                        "{}: missing {want:?} in\n{text}",
                        case.name
                    );
                }
            }
            (_, _, Ok(config)) => panic!("{}: expected an error, got {config:?}", case.name),
            (_, _, Err(e)) => panic!("{}: unexpected error\n{e}", case.name),
        }
    }
}

#[test]
fn reads_the_file_named_by_sts_sidecar_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[token_service]\nurl = \"https://c.example.com\"\n[[role]]\narn = \"arn:aws:iam::123456789012:role/x\"\n").expect("write");
    let env: HashMap<String, String> = [
        ("STS_SIDECAR_CONFIG", path.display().to_string()),
        ("CF_INSTANCE_CERT", "/c".into()),
        ("CF_INSTANCE_KEY", "/k".into()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "0123456789abcdef".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::load(&Overrides::default(), &env).expect("loads");
    assert_eq!(token_service(&config).url, "https://c.example.com");
    let mut missing = Overrides::default();
    missing.common.config = Some(dir.path().join("nope.toml"));
    let e = Config::load(&missing, &env)
        .expect_err("missing file")
        .to_string();
    assert!(
        e.contains("--config: cannot read") && e.contains("nope.toml"),
        "{e}"
    );
}

#[test]
fn the_reference_config_s_source_examples_parse_when_uncommented() {
    let env: HashMap<String, String> = [
        ("CF_INSTANCE_CERT", "/c"),
        ("CF_INSTANCE_KEY", "/k"),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "0123456789abcdef"),
        (
            "VCAP_APPLICATION",
            r#"{"application_name":"a","organization_name":"o","space_name":"s"}"#,
        ),
        ("CF_INSTANCE_INDEX", "0"),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "https://pipelines.example.com/t?api-version=2.0",
        ),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let path = format!("{}/config/sts-sidecar.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("config file");
    let start = text.find("# ---- source examples\n").expect("start marker");
    let end = text
        .find("# ---- end of source examples")
        .expect("end marker");
    let examples: String = text[start..end]
        .lines()
        .skip(1)
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix("#"))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let uncommented = format!("{}{examples}\n{}", &text[..start], &text[end..]);
    let config = Config::parse(
        Some((&uncommented, "sts-sidecar.toml")),
        &Overrides::default(),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = config
        .sources
        .iter()
        .map(|s| s.settings.kind().name())
        .collect();
    for kind in [
        "token-service",
        "file",
        "gcp-metadata",
        "oidc",
        "github-actions",
        "command",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

#[test]
fn the_shipped_config_files_parse() {
    let env: HashMap<String, String> = [
        ("CF_INSTANCE_CERT", "/c"),
        ("CF_INSTANCE_KEY", "/k"),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "0123456789abcdef"),
        ("VCAP_APPLICATION", r#"{"application_name":"a","organization_name":"o","space_name":"s","application_id":"1","organization_id":"2","space_id":"3"}"#),
        ("CF_INSTANCE_INDEX", "0"),
        ("CF_INSTANCE_GUID", "g"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for name in ["sts-sidecar.toml", "cf.toml"] {
        let path = format!("{}/config/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("config file");
        Config::parse(Some((&text, name)), &Overrides::default(), &env)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
