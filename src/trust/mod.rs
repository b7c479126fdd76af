//! The trust-policy doctor behind `check`: what a role's trust policy must say for a token
//! ([`Trust::for_claims`]), and, given the policy itself (`check --trust-policy FILE`, the JSON
//! that `aws iam get-role --query Role.AssumeRolePolicyDocument` prints), which statement and
//! which condition the token fails ([`evaluate`]).
//!
//! The evaluation covers what web-identity trust policies use: `Allow` statements for
//! `sts:AssumeRoleWithWebIdentity` with a `Federated` principal, and the `StringEquals`,
//! `StringLike`, `StringNotEquals` and `StringNotLike` operators, optionally with `ForAnyValue:`
//! or `ForAllValues:`. Condition keys are read from the token as IAM does: `<provider>:sub`,
//! `<provider>:aud` (for Google the token's `azp` when it has one), `<provider>:oaud` (Google: the
//! token's `aud`), and any other `<provider>:<claim>`. It is a diagnosis, not IAM: anything else
//! is reported as not evaluated rather than guessed.

pub mod chained;

use serde_json::Value;

use crate::token::Claims;

/// What a role's trust policy must say for a token with these claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The federated principal: an IAM OIDC provider ARN, or `accounts.google.com`.
    pub principal: String,
    /// Condition keys and the token's values for them.
    pub conditions: Vec<(String, String)>,
    /// Anything a user gets wrong about this provider.
    pub notes: Vec<String>,
}

impl Trust {
    /// The principal and condition keys for a token with `claims`, for roles in `account`.
    pub fn for_claims(claims: &Claims, account: &str) -> Trust {
        let iss = claims.iss.as_deref().unwrap_or("");
        let provider = iss.trim_start_matches("https://").trim_end_matches('/');
        let sub = claims
            .sub
            .clone()
            .unwrap_or_else(|| "(no sub claim)".to_owned());
        let aud = claims.aud.first().cloned();
        if provider == "accounts.google.com" {
            let azp = claims.extra("azp").map(str::to_owned);
            let mut conditions = vec![(
                "accounts.google.com:aud".to_owned(),
                azp.clone()
                    .or_else(|| aud.clone())
                    .unwrap_or_else(|| "(none)".to_owned()),
            )];
            if let Some(aud) = &aud {
                conditions.push(("accounts.google.com:oaud".to_owned(), aud.clone()));
            }
            conditions.push(("accounts.google.com:sub".to_owned(), sub));
            return Trust {
                principal: "accounts.google.com".to_owned(),
                conditions,
                notes: vec![
                    "Google is built into IAM: no OIDC provider to create".to_owned(),
                    "for Google, accounts.google.com:aud matches the token's azp (the service \
                     account's unique id) when it has one, and accounts.google.com:oaud matches \
                     its aud (the audience you asked for)"
                        .to_owned(),
                ],
            };
        }
        let mut notes = Vec::new();
        let aud_value = match &aud {
            Some(a) => a.clone(),
            None => {
                let instead = claims
                    .extra("client_id")
                    .map(|c| {
                        format!(" (it has client_id = {c} instead, as Cognito access tokens do)")
                    })
                    .unwrap_or_default();
                notes.push(format!(
                    "the token has no aud claim{instead}: STS refuses tokens without one"
                ));
                "(none)".to_owned()
            }
        };
        if provider == "token.actions.githubusercontent.com" {
            let repo = claims.extra("repository").unwrap_or("OWNER/REPO");
            notes.push(format!(
                "sub names the repository and the ref or environment; StringLike \
                 \"repo:{repo}:*\" allows every branch"
            ));
        }
        if let Some(org) = provider.strip_prefix("oidc.circleci.com/org/") {
            let project = claims
                .extra("oidc.circleci.com/project-id")
                .unwrap_or("<project id>");
            notes.push(format!(
                "CircleCI: aud is the organization id ({org}), which the IAM OIDC provider for \
                 https://{provider} must list as its audience; sub is \
                 org/{org}/project/<project id>/user/<user id> (CIRCLE_OIDC_TOKEN_V2 adds \
                 /vcs-origin/<repository>/vcs-ref/<ref>); StringLike \"org/{org}/project/{project}/*\" \
                 allows every user and ref of the project"
            ));
        } else if let (Some(project), Some(_)) =
            (claims.extra("project_path"), claims.extra("ref_type"))
        {
            notes.push(format!(
                "GitLab: sub is project_path:{project}:ref_type:<branch|tag>:ref:<name> unless \
                 the project changed its components; StringLike \"project_path:{project}:*\" \
                 allows every branch and tag; aud is what the job asked for under id_tokens, and \
                 the IAM OIDC provider for https://{provider} must list it"
            ));
        }
        if claims.aud.len() > 1 {
            notes.push(format!(
                "the token has {} audiences; STS matches one of them against the provider's \
                 client IDs",
                claims.aud.len()
            ));
        }
        Trust {
            principal: format!("arn:aws:iam::{account}:oidc-provider/{provider}"),
            conditions: vec![
                (format!("{provider}:aud"), aud_value),
                (format!("{provider}:sub"), sub),
            ],
            notes,
        }
    }
}

/// The result of evaluating one policy against one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether some statement allows the token.
    pub allowed: bool,
    /// One line per statement: what matched and what did not.
    pub lines: Vec<String>,
}

/// Why a trust policy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON at all.
    #[error("is not JSON")]
    Json(#[source] serde_json::Error),
    /// JSON without a `Statement`.
    #[error("has no Statement")]
    NoStatement,
    /// One statement, not a policy document (IAM refuses it as a trust policy).
    #[error(
        "is a single statement, not a policy document: IAM wants {{\"Version\": \"2012-10-17\", \
         \"Statement\": [ <this statement> ]}}"
    )]
    BareStatement,
}

/// The statements of a whole policy document.
fn statements(policy: &str) -> Result<Vec<Value>, PolicyError> {
    let doc: Value = serde_json::from_str(policy).map_err(PolicyError::Json)?;
    match doc.get("Statement") {
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(one @ Value::Object(_)) => Ok(vec![one.clone()]),
        _ if doc.get("Effect").is_some() => Err(PolicyError::BareStatement),
        _ => Err(PolicyError::NoStatement),
    }
}

/// Evaluates the trust `policy` (JSON text) for a token with `claims`, a role in `account`.
pub fn evaluate(policy: &str, claims: &Claims, account: &str) -> Result<Verdict, PolicyError> {
    let statements = statements(policy)?;
    let expected = Trust::for_claims(claims, account);
    let provider = expected
        .principal
        .rsplit_once(":oidc-provider/")
        .map_or(expected.principal.as_str(), |(_, p)| p);
    let mut lines = Vec::new();
    let mut allowed = false;
    for (i, st) in statements.iter().enumerate() {
        let at = format!("statement {i}");
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            lines.push(format!("{at}: not an Allow statement"));
            continue;
        }
        let actions = strings(st.get("Action"));
        let action_ok = actions.iter().any(|a| {
            a == "*" || a == "sts:*" || a.eq_ignore_ascii_case("sts:AssumeRoleWithWebIdentity")
        });
        if !action_ok {
            lines.push(format!(
                "{at}: its Action ({}) is not sts:AssumeRoleWithWebIdentity",
                actions.join(", ")
            ));
            continue;
        }
        let federated = strings(st.get("Principal").and_then(|p| p.get("Federated")));
        if !federated.contains(&expected.principal) {
            lines.push(format!(
                "{at}: its Federated principal ({}) is not {} (the token's issuer)",
                if federated.is_empty() {
                    "none".to_owned()
                } else {
                    federated.join(", ")
                },
                expected.principal
            ));
            continue;
        }
        let mut failed = Vec::new();
        let mut unknown = Vec::new();
        if let Some(Value::Object(ops)) = st.get("Condition") {
            for (op, keys) in ops {
                let Value::Object(keys) = keys else { continue };
                for (key, wanted) in keys {
                    let wanted = strings(Some(wanted));
                    match condition(op, key, &wanted, claims, provider) {
                        Some(true) => {}
                        Some(false) => failed.push(format!(
                            "{op} {key} {:?} does not match the token's {}",
                            wanted,
                            shown(&token_values(key, claims, provider))
                        )),
                        None => unknown.push(format!("{op} {key}")),
                    }
                }
            }
        }
        if failed.is_empty() && unknown.is_empty() {
            allowed = true;
            lines.push(format!("{at}: allows this token"));
        } else if failed.is_empty() {
            lines.push(format!(
                "{at}: principal and action match; not evaluated: {}",
                unknown.join("; ")
            ));
        } else {
            lines.push(format!("{at}: condition {}", failed.join("; and ")));
        }
    }
    Ok(Verdict { allowed, lines })
}

/// A string or an array of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn shown(values: &Option<Vec<String>>) -> String {
    match values {
        None => "(no such claim)".to_owned(),
        Some(v) if v.len() == 1 => format!("{:?}", v[0]),
        Some(v) => format!("{v:?}"),
    }
}

/// The token's values for a condition key, as IAM reads them; `None` if the key is not the
/// token issuer's or the token has no such claim.
fn token_values(key: &str, claims: &Claims, provider: &str) -> Option<Vec<String>> {
    let name = key.strip_prefix(provider)?.strip_prefix(':')?;
    let google = provider == "accounts.google.com";
    match name {
        "sub" => claims.sub.clone().map(|s| vec![s]),
        "aud" if google => claims
            .extra("azp")
            .map(|a| vec![a.to_owned()])
            .or_else(|| (!claims.aud.is_empty()).then(|| claims.aud.clone())),
        "aud" => (!claims.aud.is_empty()).then(|| claims.aud.clone()),
        "oaud" => (!claims.aud.is_empty()).then(|| claims.aud.clone()),
        other => claims.extra(other).map(|v| vec![v.to_owned()]),
    }
}

/// Whether one condition holds; `None` when it cannot be evaluated here.
fn condition(
    op: &str,
    key: &str,
    wanted: &[String],
    claims: &Claims,
    provider: &str,
) -> Option<bool> {
    holds(op, wanted, token_values(key, claims, provider))
}

/// Whether a string condition `op` with `wanted` holds for the request's `values` (`None`: the
/// key is not in the request); `None` when the operator is not evaluated here.
fn holds(op: &str, wanted: &[String], values: Option<Vec<String>>) -> Option<bool> {
    let (set, op) = match op.split_once(':') {
        Some((set, op)) => (Some(set), op),
        None => (None, op),
    };
    let matches: fn(&str, &str) -> bool = match op {
        "StringEquals" | "StringNotEquals" => |pattern, value| pattern == value,
        "StringLike" | "StringNotLike" => glob,
        _ => return None,
    };
    let negated = op.starts_with("StringNot");
    let Some(values) = values else {
        // A missing key fails every positive operator and satisfies the negated ones.
        return Some(negated);
    };
    let hit = |v: &String| wanted.iter().any(|w| matches(w, v));
    let result = match set {
        Some("ForAllValues") => values.iter().all(hit),
        Some("ForAnyValue") | None => values.iter().any(hit),
        Some(_) => return None,
    };
    Some(if negated { !result } else { result })
}

/// IAM's `StringLike`: `*` matches any run of characters, `?` any one.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iss: &str, sub: &str, aud: &[&str], extra: &[(&str, &str)]) -> Claims {
        Claims {
            iss: Some(iss.to_owned()),
            sub: Some(sub.to_owned()),
            aud: aud.iter().map(|a| (*a).to_owned()).collect(),
            exp: 0,
            iat: None,
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn every_trust_policy_the_docs_show_is_a_whole_document_check_accepts() {
        // See: issue #24 (the README showed bare statements: pasted into a file, check
        // --trust-policy answered "has no Statement", and IAM wants a whole document).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pages = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
        let c = claims(
            "https://issuer.example.com",
            "a:b:c",
            &["sts.amazonaws.com"],
            &[],
        );
        let mut seen = 0;
        for page in pages {
            let text = std::fs::read_to_string(&page).expect("page");
            for block in text.split("```json\n").skip(1) {
                let block = block.split("```").next().unwrap_or("");
                if !block.contains("\"Effect\"") {
                    continue;
                }
                seen += 1;
                let doc: Value = serde_json::from_str(block)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}):\n{block}", page.display()));
                assert_eq!(doc["Version"], "2012-10-17", "{}:\n{block}", page.display());
                evaluate(block, &c, "123456789012")
                    .unwrap_or_else(|e| panic!("{}: {e}:\n{block}", page.display()));
            }
        }
        assert!(seen >= 6, "only {seen} trust policies found");
        let bare = r#"{"Effect":"Allow","Action":"sts:AssumeRoleWithWebIdentity"}"#;
        assert!(matches!(
            evaluate(bare, &c, "123456789012"),
            Err(PolicyError::BareStatement)
        ));
    }

    #[test]
    fn google_tokens_use_azp_for_aud_and_aud_for_oaud() {
        let c = claims(
            "https://accounts.google.com",
            "1122",
            &["sts.amazonaws.com"],
            &[("azp", "1122"), ("email", "a@p.iam.gserviceaccount.com")],
        );
        let t = Trust::for_claims(&c, "123456789012");
        assert_eq!(t.principal, "accounts.google.com");
        assert!(
            t.conditions
                .contains(&("accounts.google.com:aud".into(), "1122".into()))
        );
        assert!(t.conditions.contains(&(
            "accounts.google.com:oaud".into(),
            "sts.amazonaws.com".into()
        )));
        let policy = r#"{"Statement":[{"Effect":"Allow","Principal":{"Federated":"accounts.google.com"},
            "Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{"StringEquals":{"accounts.google.com:aud":"sts.amazonaws.com"}}}]}"#;
        // A classic mistake: the audience string in :aud instead of :oaud.
        let v = evaluate(policy, &c, "123456789012").unwrap();
        assert!(!v.allowed);
        assert!(
            v.lines[0].contains("accounts.google.com:aud") && v.lines[0].contains("\"1122\""),
            "{v:?}"
        );
    }

    #[test]
    fn knows_gitlab_and_circleci_tokens() {
        // See: issue #25. Their issuers and sub formats, and the keys a policy matches on.
        let gitlab = claims(
            "https://gitlab.com",
            "project_path:acme/platform/deployer:ref_type:branch:ref:main",
            &["sts.amazonaws.com"],
            &[
                ("project_path", "acme/platform/deployer"),
                ("ref_type", "branch"),
            ],
        );
        let t = Trust::for_claims(&gitlab, "123456789012");
        assert_eq!(
            t.principal,
            "arn:aws:iam::123456789012:oidc-provider/gitlab.com"
        );
        assert!(t.conditions.contains(&(
            "gitlab.com:sub".into(),
            "project_path:acme/platform/deployer:ref_type:branch:ref:main".into()
        )));
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("project_path:acme/platform/deployer:*")),
            "{t:?}"
        );
        let p = "arn:aws:iam::123456789012:oidc-provider/gitlab.com";
        let policy = format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{p}"}},
            "Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{{"StringLike":{{"gitlab.com:sub":"project_path:acme/platform/deployer:ref_type:tag:*"}}}}}}}}"#
        );
        let v = evaluate(&policy, &gitlab, "123456789012").unwrap();
        assert!(
            !v.allowed && v.lines[0].contains("ref_type:branch:ref:main"),
            "{v:?}"
        );

        let org = "2f8d5c3e-0000-4000-8000-00000000a0a0";
        let circle = claims(
            &format!("https://oidc.circleci.com/org/{org}"),
            &format!(
                "org/{org}/project/p-1/user/u-1/vcs-origin/github.com/acme/app/vcs-ref/refs/heads/main"
            ),
            &[org],
            &[("oidc.circleci.com/project-id", "p-1")],
        );
        let t = Trust::for_claims(&circle, "123456789012");
        assert_eq!(
            t.principal,
            format!("arn:aws:iam::123456789012:oidc-provider/oidc.circleci.com/org/{org}")
        );
        assert!(
            t.conditions
                .contains(&(format!("oidc.circleci.com/org/{org}:aud"), org.into()))
        );
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains(&format!("org/{org}/project/p-1/*"))),
            "{t:?}"
        );
    }

    #[test]
    fn names_the_condition_a_github_token_fails() {
        let c = claims(
            "https://token.actions.githubusercontent.com",
            "repo:octo-org/octo-app:ref:refs/heads/main",
            &["sts.amazonaws.com"],
            &[("repository", "octo-org/octo-app")],
        );
        let p = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
        let policy = |sub: &str| {
            format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{p}"}},
                "Action":["sts:AssumeRoleWithWebIdentity"],
                "Condition":{{"StringEquals":{{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com"}},
                "StringLike":{{"token.actions.githubusercontent.com:sub":"{sub}"}}}}}}}}"#
            )
        };
        let ok = evaluate(&policy("repo:octo-org/octo-app:*"), &c, "123456789012").unwrap();
        assert!(ok.allowed, "{ok:?}");
        let bad = evaluate(&policy("repo:octo-org/other:*"), &c, "123456789012").unwrap();
        assert!(!bad.allowed);
        assert!(
            bad.lines[0].contains("StringLike token.actions.githubusercontent.com:sub")
                && bad.lines[0].contains("repo:octo-org/octo-app:ref:refs/heads/main"),
            "{bad:?}"
        );
        let other = evaluate(
            &policy("*").replace("token.actions", "x.token.actions"),
            &c,
            "123456789012",
        )
        .unwrap();
        assert!(
            other.lines[0].contains("is not arn:aws:iam::123456789012:oidc-provider/token.actions"),
            "{other:?}"
        );
    }

    #[test]
    fn a_token_without_aud_fails_an_aud_condition_and_unknown_operators_are_not_guessed() {
        let c = claims(
            "https://idp.example.com",
            "client",
            &[],
            &[("client_id", "client")],
        );
        let t = Trust::for_claims(&c, "123456789012");
        assert!(t.notes.iter().any(|n| n.contains("client_id")), "{t:?}");
        let policy = r#"{"Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/idp.example.com"},
            "Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{"StringEquals":{"idp.example.com:aud":"sts.amazonaws.com"},"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}]}"#;
        let v = evaluate(policy, &c, "123456789012").unwrap();
        assert!(!v.allowed);
        assert!(v.lines[0].contains("(no such claim)"), "{v:?}");
    }

    #[test]
    fn string_like_follows_iam_wildcards() {
        assert!(glob("repo:o/r:*", "repo:o/r:ref:refs/heads/main"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*", ""));
        assert!(!glob("repo:o/r", "repo:o/r:x"));
        assert!(glob("*:*:*", "org:space:app"));
    }
}
