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

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    exp: Option<serde_json::Number>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

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
    let raw: RawClaims = decode_json(payload).ok_or(JwtError::Payload)?;
    let exp = raw
        .exp
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .ok_or(JwtError::NoExp)?;
    let aud = match raw.aud {
        None => Vec::new(),
        Some(Audience::One(a)) => vec![a],
        Some(Audience::Many(a)) => a,
    };
    Ok(Claims {
        iss: raw.iss,
        sub: raw.sub,
        aud,
        exp,
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
