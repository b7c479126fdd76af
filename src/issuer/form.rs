//! The token request's form: `grant_type`, `assertion` and `audience` from an
//! `application/x-www-form-urlencoded` body, and `audience` from the query too. Every key at
//! most once (RFC 6749 section 3.2: which of two would count?); other keys are ignored.

use http::header;

pub use super::refusal::FormError;
use super::{GRANT_JWT_BEARER, Refusal};
use crate::report::Untrusted;

/// The token request's form (body) and query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form {
    /// The signed assertion, if any.
    pub assertion: Option<String>,
    /// The audience asked for, if any.
    pub audience: Option<String>,
}

impl Form {
    /// Reads the form of a request with head `parts` and body `body`.
    pub fn read(parts: &http::request::Parts, body: &[u8]) -> Result<Form, Refusal> {
        let mut form = Form::default();
        let mut grant: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let mut take = |k: &str, v: String, form: &mut Form| -> Result<(), FormError> {
            if !seen.insert(k.to_owned()) {
                return Err(FormError::Duplicate(Untrusted::new(k)));
            }
            match k {
                "grant_type" => grant = Some(v),
                "assertion" => form.assertion = Some(v),
                "audience" => form.audience = Some(v),
                _ => {}
            }
            Ok(())
        };
        if let Some(query) = parts.uri.query() {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k == "audience" {
                    take(&k, v.into_owned(), &mut form)?;
                }
            }
        }
        if !body.trim_ascii().is_empty() {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
            if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
                return Err(FormError::ContentType.into());
            }
            for (k, v) in form_urlencoded::parse(body) {
                take(&k, v.into_owned(), &mut form)?;
            }
        }
        match (grant.as_deref(), &form.assertion) {
            (Some(GRANT_JWT_BEARER), Some(_)) | (None, None) => Ok(form),
            (Some(GRANT_JWT_BEARER), None) => Err(FormError::NoAssertion.into()),
            (Some(other), _) => Err(Refusal::UnsupportedGrant(Untrusted::new(other))),
            (None, Some(_)) => Err(FormError::NoGrant.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(uri: &str, content_type: Option<&str>, body: &str) -> Result<Form, Refusal> {
        let mut req = http::Request::post(uri);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let (parts, ()) = req.body(()).expect("request").into_parts();
        Form::read(&parts, body.as_bytes())
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn reads_the_grant_the_audience_and_an_empty_body() {
        let f = read(
            "/token?audience=vault",
            FORM,
            &format!("grant_type={GRANT_JWT_BEARER}&assertion=a.b.c&other=x"),
        )
        .expect("form");
        assert_eq!(f.assertion.as_deref(), Some("a.b.c"));
        assert_eq!(f.audience.as_deref(), Some("vault"));
        assert_eq!(read("/token", None, "  ").expect("empty"), Form::default());
        assert!(matches!(
            read("/token", Some("application/json"), "{}"),
            Err(Refusal::Form(FormError::ContentType))
        ));
    }

    #[test]
    fn refuses_duplicates_and_grants_without_their_parts() {
        assert!(matches!(
            read("/token?audience=a", FORM, "audience=b"),
            Err(Refusal::Form(FormError::Duplicate(_)))
        ));
        assert!(matches!(
            read("/token", FORM, &format!("grant_type={GRANT_JWT_BEARER}")),
            Err(Refusal::Form(FormError::NoAssertion))
        ));
        assert!(matches!(
            read("/token", FORM, "assertion=a.b.c"),
            Err(Refusal::Form(FormError::NoGrant))
        ));
        assert!(matches!(
            read("/token", FORM, "grant_type=client_credentials"),
            Err(Refusal::UnsupportedGrant(_))
        ));
    }

    #[test]
    fn a_duplicated_key_cannot_forge_a_log_line() {
        // See: issue #23 item 4.
        let key = format!(
            "x%0A2026-12-07T00:00:00Z%20INFO%20token%20issued%20org_guid%3Dvictim{}",
            "y".repeat(30_000)
        );
        let e = read("/token", FORM, &format!("{key}=1&{key}=2")).expect_err("duplicate");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }
}
