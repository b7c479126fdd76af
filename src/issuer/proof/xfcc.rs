//! `X-Forwarded-Client-Cert`, as a router in front of the issuer writes it.
//!
//! The gorouter with `forwarded_client_cert: sanitize_set` removes whatever the client sent and
//! writes the first certificate of the client's TLS handshake as PEM with the
//! `-----BEGIN/END CERTIFICATE-----` lines and the newlines removed: the base64 of the DER.
//! (Some releases base64-encoded that text once more; both are read.) Envoy writes elements such
//! as `Hash=...;Cert="<url-encoded PEM>"`, which are read too. Only a certificate travels in the
//! header, never proof that the caller holds its key: the issuer accepts the header only when
//! told to (`--accept xfcc`) and still verifies the certificate to the CA.

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::{Presented, Proof, Proven, Refusal, Verifier};

/// The header's name.
pub const HEADER: &str = "x-forwarded-client-cert";

/// The certificate in `X-Forwarded-Client-Cert`.
#[derive(Debug)]
pub struct Xfcc;

impl Proof for Xfcc {
    const NAME: &'static str = "xfcc";
    const HOW: &'static str = "the certificate in X-Forwarded-Client-Cert";
    const DEFAULT: bool = false;
    const CAUTION: Option<&'static str> = Some(
        "X-Forwarded-Client-Cert is accepted: it proves only what the router in front put there; \
         the router must remove what clients send (gorouter: forwarded_client_cert: \
         sanitize_set; `forward` and `always_forward` both pass a header the client wrote) and \
         nothing else may reach the issuer",
    );

    fn verify(req: &Presented<'_>, v: &Verifier<'_>) -> Option<Result<Proven, Refusal>> {
        let mut values = req.headers.get_all(HEADER).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return Some(Err(Refusal::Xfcc(XfccError::Several)));
        }
        let proven = parse(first.as_bytes())
            .map_err(Refusal::Xfcc)
            .and_then(|chain| v.chains.verify(&chain, v.now))
            .map(|verified| Proven {
                instance: verified.instance,
                not_after: verified.not_after,
                jti: None,
            });
        Some(proven)
    }
}

pub use super::super::refusal::{MAX_XFCC as MAX_LEN, XfccError};

/// The certificate (and any chain) in one header value.
pub fn parse(value: &[u8]) -> Result<Vec<CertificateDer<'static>>, XfccError> {
    if value.len() > MAX_LEN {
        return Err(XfccError::TooLong);
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| XfccError::Format)?
        .trim();
    if text.is_empty() {
        return Err(XfccError::Format);
    }
    // Envoy-style elements: key=value pairs separated by `;`, elements by `,`.
    if text.contains("Cert=") {
        if split_outside_quotes(text, ',').len() > 1 {
            return Err(XfccError::Several);
        }
        let cert = split_outside_quotes(text, ';')
            .into_iter()
            .find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("Cert").then(|| v.trim())
            })
            .ok_or(XfccError::Format)?;
        let pem = percent_decode(cert.trim_matches('"')).ok_or(XfccError::Format)?;
        return pem_chain(pem.as_bytes());
    }
    if text.contains(',') {
        return Err(XfccError::Several);
    }
    if text.contains("-----BEGIN") {
        return pem_chain(text.as_bytes());
    }
    let decoded = decode_b64(text).ok_or(XfccError::Format)?;
    if decoded.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(decoded)]);
    }
    // Base64 of the base64 text.
    let inner = std::str::from_utf8(&decoded).map_err(|_| XfccError::Format)?;
    match decode_b64(inner.trim()) {
        Some(der) if der.first() == Some(&0x30) => Ok(vec![CertificateDer::from(der)]),
        _ => Err(XfccError::Format),
    }
}

fn pem_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, XfccError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        Err(XfccError::Format)
    } else {
        Ok(chain)
    }
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&compact))
        .ok()
}

/// Splits on `sep` outside double quotes.
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `%XX` decoding (the only escaping Envoy applies to the PEM).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        rcgen::CertificateParams::new(vec!["x".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert")
            .der()
            .to_vec()
    }

    #[test]
    fn reads_the_formats_routers_write() {
        let der = der();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        // gorouter sanitize_set: the PEM without its armour and newlines.
        assert_eq!(parse(b64.as_bytes()).unwrap()[0].as_ref(), der.as_slice());
        // Older gorouters: that text base64-encoded again.
        let twice = base64::engine::general_purpose::STANDARD.encode(&b64);
        assert_eq!(parse(twice.as_bytes()).unwrap()[0].as_ref(), der.as_slice());
        // Envoy: Cert="<url-encoded PEM>".
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let encoded: String = pem
            .bytes()
            .map(|b| match b {
                b'\n' => "%0A".to_owned(),
                b' ' => "%20".to_owned(),
                b'+' => "%2B".to_owned(),
                b'/' => "%2F".to_owned(),
                b'=' => "%3D".to_owned(),
                _ => (b as char).to_string(),
            })
            .collect();
        let element = format!("By=spiffe://x;Hash=abc;Cert=\"{encoded}\";Subject=\"CN=x\"");
        assert_eq!(
            parse(element.as_bytes()).unwrap()[0].as_ref(),
            der.as_slice()
        );
    }

    #[test]
    fn refuses_what_names_no_single_certificate() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der());
        assert_eq!(
            parse(format!("{b64},{b64}").as_bytes()),
            Err(XfccError::Several)
        );
        assert_eq!(parse(b"not a certificate"), Err(XfccError::Format));
        assert_eq!(parse(b""), Err(XfccError::Format));
        assert_eq!(parse(&vec![b'A'; MAX_LEN + 1]), Err(XfccError::TooLong));
        assert_eq!(
            parse(b"Hash=1;Cert=\"x\",Hash=2;Cert=\"y\""),
            Err(XfccError::Several)
        );
    }
}
