//! Decoding (not verifying) the claims of a compact JWS. STS verifies the signature; we only
//! need `exp` to know how long to keep the token, and `iss`/`sub`/`aud` to report what we got.

use base64::Engine as _;
use serde::Deserialize;

/// The claims we read from an identity token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: Option<String>,
    /// Subject (on CF: `org_guid:space_guid:app_guid`).
    pub sub: Option<String>,
    /// Audiences (a single string in the token becomes one entry).
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds, when the token has a numeric `iat`.
    pub iat: Option<i64>,
    /// Every other claim with a scalar value (`azp`, `email`, `repository`, `client_id`, ...),
    /// in the token's order, as text: what a trust policy may test, for `check` to print.
    pub extra: Vec<(String, String)>,
}

impl Claims {
    /// The value of another claim, if the token has it.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a string is not a usable JWT. Never carries any part of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three non-empty dot-separated parts.
    #[error("it is not three dot-separated base64url parts")]
    Shape,
    /// The header is not base64url-encoded JSON with an `alg`.
    #[error("its header is not base64url JSON with an alg")]
    Header,
    /// The payload is not base64url-encoded JSON.
    #[error("its payload is not base64url JSON")]
    Payload,
    /// There is no numeric `exp` claim.
    #[error("it has no numeric exp claim")]
    NoExp,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
}

/// Claims `decode_claims` reads into their own fields; `iat`/`nbf`/`jti` are not worth printing.
const NOT_EXTRA: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

/// Decodes the claims of a compact JWS without verifying it.
pub fn decode_claims(token: &str) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Shape);
    }
    if !signature
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    {
        return Err(JwtError::Shape);
    }
    let header: RawHeader = decode_json(header).ok_or(JwtError::Header)?;
    if header.alg.is_empty() {
        return Err(JwtError::Header);
    }
    let raw: serde_json::Map<String, serde_json::Value> =
        decode_json(payload).ok_or(JwtError::Payload)?;
    let exp = raw
        .get("exp")
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .ok_or(JwtError::NoExp)?;
    let text = |name: &str| raw.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let aud = match raw.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let extra = raw
        .iter()
        .filter(|(k, _)| !NOT_EXTRA.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect();
    let iat = raw
        .get("iat")
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)));
    Ok(Claims {
        iss: text("iss"),
        sub: text("sub"),
        aud,
        exp,
        iat,
        extra,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64(r#"{"kid":"first","typ":"JWT","alg":"RS256"}"#),
            b64(payload)
        )
    }

    #[test]
    fn decodes_the_token_services_claims() {
        let c = decode_claims(&jwt(
            r#"{"iss":"https://cits.example","sub":"o:s:a","aud":"sts.amazonaws.com","exp":1767268800,"iat":1}"#,
        ))
        .unwrap();
        assert_eq!(c.sub.as_deref(), Some("o:s:a"));
        assert_eq!(c.aud, vec!["sts.amazonaws.com"]);
        assert_eq!(c.exp, 1_767_268_800);
        assert!(c.extra.is_empty(), "{:?}", c.extra);
    }

    #[test]
    fn keeps_other_scalar_claims_for_check() {
        let c = decode_claims(&jwt(
            r#"{"exp":5,"azp":"1234","email_verified":true,"n":7,"obj":{"a":1},"iat":1}"#,
        ))
        .unwrap();
        assert_eq!(c.extra("azp"), Some("1234"));
        assert_eq!(c.extra("email_verified"), Some("true"));
        assert_eq!(c.extra("n"), Some("7"));
        assert_eq!(c.extra("obj"), None);
        assert_eq!(c.extra("iat"), None);
    }

    #[test]
    fn accepts_an_audience_list() {
        let c = decode_claims(&jwt(r#"{"aud":["a","b"],"exp":5}"#)).unwrap();
        assert_eq!(c.aud, vec!["a", "b"]);
    }

    #[test]
    fn rejects_what_is_not_a_jwt() {
        assert_eq!(decode_claims(""), Err(JwtError::Shape));
        assert_eq!(decode_claims("<html>oops</html>"), Err(JwtError::Shape));
        assert_eq!(decode_claims("a.b"), Err(JwtError::Shape));
        assert_eq!(decode_claims("a.b.c.d"), Err(JwtError::Shape));
        assert_eq!(decode_claims("!!.b.c"), Err(JwtError::Header));
        assert_eq!(
            decode_claims(&format!("{}.x.c", b64(r#"{"alg":"RS256"}"#))),
            Err(JwtError::Payload)
        );
        assert_eq!(decode_claims(&jwt(r#"{"sub":"x"}"#)), Err(JwtError::NoExp));
        assert_eq!(
            decode_claims(&format!("{}\n", jwt(r#"{"exp":1}"#))),
            Err(JwtError::Shape)
        );
    }
}
