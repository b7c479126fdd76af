//! A fake IAM Roles Anywhere that checks what the real one checks before it answers
//! `POST /sessions`:
//!
//! - the `Authorization` header's algorithm, credential (the certificate serial in decimal and
//!   the scope `<date>/<region>/rolesanywhere/aws4_request`), signed headers (which must include
//!   `host`, `x-amz-date`, `x-amz-x509` and, when sent, `x-amz-x509-chain`) and signature;
//! - the canonical request, rebuilt from the bytes received (method, path, the query re-encoded
//!   and sorted, the signed headers' values, the body's hash), and the signature over its string
//!   to sign, verified with the public key of the certificate in `X-Amz-X509` (RSA PKCS#1 v1.5 or
//!   ECDSA over SHA-256);
//! - the certificate chain (`X-Amz-X509` plus `X-Amz-X509-Chain`) up to the trust anchor it was
//!   given, for client authentication, at the current time;
//! - `X-Amz-Date` within 5 minutes of now, and the three ARNs in the query.
//!
//! A request that fails a check gets `403 AccessDeniedException` saying which; a good one gets
//! `201` with a `credentialSet`, unless a reply was scripted (each error the real service
//! answers, 5xx, throttling, slowness). Every request is recorded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::Engine as _;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use parking_lot::Mutex;
use rustls_pki_types::CertificateDer;
use tokio::task::JoinHandle;

use super::{FakeRequest, reply};
use crate::backend::x509_sign;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the fake answers to a request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaReply {
    /// `201` with credentials.
    Session,
    /// `403 AccessDeniedException` with this message.
    AccessDenied(String),
    /// `400 ValidationException` with this message.
    Validation(String),
    /// `404 ResourceNotFoundException`.
    NotFound,
    /// `429 ThrottlingException`.
    Throttled,
    /// This status with an empty body.
    Status(u16),
    /// Wait, then `201`.
    Slow(Duration),
}

/// One request the fake accepted.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The certificate serial (decimal).
    pub serial: String,
    /// The signing algorithm.
    pub algorithm: String,
    /// How many certificates were presented (leaf plus chain).
    pub chain_len: usize,
    /// `roleArn` from the query.
    pub role_arn: String,
    /// `durationSeconds` from the body.
    pub duration_secs: u64,
    /// `roleSessionName` from the body, if any.
    pub session_name: Option<String>,
    /// The subject CN, which becomes the source identity.
    pub cn: String,
}

/// A running fake Roles Anywhere.
#[derive(Debug)]
pub struct FakeRolesAnywhere {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
    https: bool,
}

#[derive(Debug)]
struct State {
    region: String,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    calls: AtomicUsize,
    serial: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    refused: Mutex<Vec<String>>,
    next: Mutex<VecDeque<RaReply>>,
    lifetime_cap: Mutex<Option<u64>>,
}

impl Drop for FakeRolesAnywhere {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRolesAnywhere {
    /// Starts on `127.0.0.1:0` for `region`, trusting certificates that chain to `anchor_pem`.
    pub async fn start(region: &str, anchor_pem: &str) -> Result<Self, BoxError> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            region,
            anchor_pem,
            None,
        )
        .await
    }

    /// Starts on `addr`, over TLS when `tls` is given (for signers that only speak https).
    pub async fn start_on(
        addr: SocketAddr,
        region: &str,
        anchor_pem: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self, BoxError> {
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(anchor_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()?;
        let state = Arc::new(State {
            region: region.to_owned(),
            verifier,
            calls: AtomicUsize::new(0),
            serial: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            next: Mutex::new(VecDeque::new()),
            lifetime_cap: Mutex::new(None),
        });
        let handler_state = state.clone();
        let https = tls.is_some();
        let (addr, task) = super::serve_fake_on(addr, tls, move |req| {
            let state = handler_state.clone();
            async move { state.handle(req).await }
        })
        .await?;
        Ok(Self {
            addr,
            state,
            task,
            https,
        })
    }

    /// The endpoint (`http://127.0.0.1:<port>`, or `https://` over TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// Requests received.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Requests that passed every check.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    /// Why requests were refused.
    pub fn refused(&self) -> Vec<String> {
        self.state.refused.lock().clone()
    }

    /// Answer the next good request with `reply`.
    pub fn push_reply(&self, reply: RaReply) {
        self.state.next.lock().push_back(reply);
    }

    /// Refuse durations above `secs` as the profile's limit does.
    pub fn set_duration_limit(&self, secs: u64) {
        *self.state.lifetime_cap.lock() = Some(secs);
    }
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut r = reply(
        status,
        "application/json",
        serde_json::json!({ "message": message }).to_string(),
    );
    if let Ok(v) = http::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

impl State {
    async fn handle(&self, req: FakeRequest) -> Response<Full<Bytes>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let checked = match self.check(&req) {
            Ok(c) => c,
            Err(why) => {
                self.refused.lock().push(why.clone());
                return error(403, "AccessDeniedException", &why);
            }
        };
        if let Some(cap) = *self.lifetime_cap.lock()
            && checked.duration_secs > cap
        {
            return error(
                400,
                "ValidationException",
                "Requested DurationSeconds exceeds the profile's durationSeconds",
            );
        }
        let next = self.next.lock().pop_front().unwrap_or(RaReply::Session);
        match next {
            RaReply::Session => {}
            RaReply::Slow(d) => tokio::time::sleep(d).await,
            RaReply::AccessDenied(m) => return error(403, "AccessDeniedException", &m),
            RaReply::Validation(m) => return error(400, "ValidationException", &m),
            RaReply::NotFound => {
                return error(404, "ResourceNotFoundException", "Trust anchor not found");
            }
            RaReply::Throttled => return error(429, "ThrottlingException", "Rate exceeded"),
            RaReply::Status(s) => return reply(s, "application/json", ""),
        }
        let n = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let expiration =
            crate::clock::now_unix() + i64::try_from(checked.duration_secs).unwrap_or(3600);
        let (account, role_name) = checked
            .role_arn
            .split_once("::")
            .and_then(|(_, rest)| rest.split_once(":role/"))
            .unwrap_or(("000000000000", "role"));
        let session = checked
            .session_name
            .clone()
            .unwrap_or_else(|| checked.cn.clone());
        self.seen.lock().push(checked.clone());
        let body = serde_json::json!({
            "credentialSet": [{
                "assumedRoleUser": {
                    "arn": format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
                    "assumedRoleId": format!("AROAFAKERA{n:010}:{session}"),
                },
                "credentials": {
                    "accessKeyId": format!("ASIAFAKERA{n:010}"),
                    "secretAccessKey": format!("rasecret{n:032}"),
                    "sessionToken": format!("FwoGZXIvYXdzEFAKERA{}{n:08}", "y".repeat(200)),
                    "expiration": crate::clock::format_rfc3339(expiration),
                },
                "packedPolicySize": 0,
                "roleArn": checked.role_arn,
                "sourceIdentity": checked.cn,
            }],
            "subjectArn": format!("arn:aws:rolesanywhere:{}:{account}:subject/fake", self.region),
        });
        reply(201, "application/json", body.to_string())
    }

    fn check(&self, req: &FakeRequest) -> Result<Seen, String> {
        if req.head.method != http::Method::POST || req.head.uri.path() != "/sessions" {
            return Err(format!(
                "unexpected {} {}",
                req.head.method,
                req.head.uri.path()
            ));
        }
        let header = |name: &str| {
            req.head
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let auth = header("authorization").ok_or("no Authorization header")?;
        let (algorithm, rest) = auth.split_once(' ').ok_or("malformed Authorization")?;
        let field = |name: &str| {
            rest.split(", ")
                .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let credential = field("Credential").ok_or("no Credential")?;
        let signed = field("SignedHeaders").ok_or("no SignedHeaders")?;
        let signature_hex = field("Signature").ok_or("no Signature")?;
        let (serial, scope) = credential.split_once('/').ok_or("malformed Credential")?;
        let names: Vec<&str> = signed.split(';').collect();
        for required in ["host", "x-amz-date", "x-amz-x509"] {
            if !names.contains(&required) {
                return Err(format!("{required} is not a signed header"));
            }
        }
        let chain_header = header("x-amz-x509-chain");
        if chain_header.is_some() && !names.contains(&"x-amz-x509-chain") {
            return Err("x-amz-x509-chain is not a signed header".to_owned());
        }
        let amz_date = header("x-amz-date").ok_or("no X-Amz-Date")?;
        let signed_at = parse_amz_date(&amz_date).ok_or("malformed X-Amz-Date")?;
        if (signed_at - crate::clock::now_unix()).abs() > 300 {
            return Err("Signature expired: X-Amz-Date is more than 5 minutes from now".to_owned());
        }
        let want_scope = format!(
            "{}/{}/rolesanywhere/aws4_request",
            &amz_date[..8],
            self.region
        );
        if scope != want_scope {
            return Err(format!("Credential scope {scope} is not {want_scope}"));
        }

        // The canonical request from what arrived.
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(req.head.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        pairs.sort();
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", x509_sign::encode(k), x509_sign::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        // The ARNs come as query parameters (the official helper) or in the JSON body (the
        // service accepts both).
        let json: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&req.body).map_err(|_| "the body is not JSON")?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| json.get(k).and_then(|v| v.as_str()).map(str::to_owned))
        };
        let role_arn = get("roleArn").ok_or("no roleArn")?;
        get("profileArn").ok_or("no profileArn")?;
        get("trustAnchorArn").ok_or("no trustAnchorArn")?;
        let mut canonical = format!("{}\n{}\n{query}\n", req.head.method, req.head.uri.path());
        for name in &names {
            let value = header(name).ok_or_else(|| format!("signed header {name} is missing"))?;
            canonical.push_str(&format!("{name}:{}\n", value.trim()));
        }
        canonical.push('\n');
        canonical.push_str(&signed);
        canonical.push('\n');
        canonical.push_str(&x509_sign::hex(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &req.body).as_ref(),
        ));
        let string_to_sign = format!(
            "{algorithm}\n{amz_date}\n{scope}\n{}",
            x509_sign::hex(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes())
                    .as_ref()
            )
        );

        // The certificate, its key and its chain.
        let b64 = base64::engine::general_purpose::STANDARD;
        let leaf_der = b64
            .decode(header("x-amz-x509").ok_or("no X-Amz-X509")?)
            .map_err(|_| "X-Amz-X509 is not base64")?;
        let chain: Vec<CertificateDer<'static>> = match &chain_header {
            None => Vec::new(),
            Some(c) => c
                .split(',')
                .map(|p| b64.decode(p.trim()).map(CertificateDer::from))
                .collect::<Result<_, _>>()
                .map_err(|_| "X-Amz-X509-Chain is not base64")?,
        };
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der)
            .map_err(|_| "X-Amz-X509 is not a certificate")?;
        if leaf.serial.to_str_radix(10) != serial {
            return Err(format!(
                "Credential serial {serial} is not the certificate's"
            ));
        }
        let signature = hex_decode(&signature_hex).ok_or("Signature is not hex")?;
        let key_bits = leaf.public_key().subject_public_key.data.to_vec();
        let curve = leaf
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let verified = match (algorithm, curve.as_deref()) {
            ("AWS4-X509-RSA-SHA256", _) => {
                UnparsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, &key_bits)
                    .verify(string_to_sign.as_bytes(), &signature)
                    .is_ok()
            }
            ("AWS4-X509-ECDSA-SHA256", Some("1.2.840.10045.3.1.7")) => {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, &key_bits)
                    .verify(string_to_sign.as_bytes(), &signature)
                    .is_ok()
            }
            ("AWS4-X509-ECDSA-SHA256", Some("1.3.132.0.34")) => {
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA256_ASN1, &key_bits)
                    .verify(string_to_sign.as_bytes(), &signature)
                    .is_ok()
            }
            (other, _) => return Err(format!("unsupported algorithm {other}")),
        };
        if !verified {
            return Err(
                "The request signature we calculated does not match the signature you provided"
                    .to_owned(),
            );
        }
        let now = rustls_pki_types::UnixTime::now();
        self.verifier
            .verify_client_cert(&CertificateDer::from(leaf_der.clone()), &chain, now)
            .map_err(|e| format!("Untrusted certificate: {e}"))?;
        let body = json;
        let duration_secs = body
            .get("durationSeconds")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(3600);
        if !(900..=43_200).contains(&duration_secs) {
            return Err("durationSeconds must be from 900 to 43200".to_owned());
        }
        let cn = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("")
            .to_owned();
        Ok(Seen {
            serial: serial.to_owned(),
            algorithm: algorithm.to_owned(),
            chain_len: 1 + chain.len(),
            role_arn,
            duration_secs,
            session_name: body
                .get("roleSessionName")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            cn,
        })
    }
}

fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    crate::clock::parse_rfc3339(&rfc)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
