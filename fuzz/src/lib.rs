//! What the HTTP fuzz targets share: one runtime, one role holding scripted credentials, and a
//! way to push arbitrary bytes through a listener's real connection settings
//! ([`sts_sidecar::listener::Connections`]) over an in-memory stream.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use sts_sidecar::backend::{Credentials, Error, SecretAccessKey, SessionToken};
use sts_sidecar::cache::{self, Refresh, RoleHandle};
use sts_sidecar::listener::{Body, Connections, Limits};
use sts_sidecar::metrics::Metrics;
use sts_sidecar::server::Roles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The authorization token the credentials listener accepts.
pub const AUTH_TOKEN: &str = "fuzz-auth-token-9f86d081884c7d659a2feaa0c55ad015";

/// A runtime and one ready role.
pub struct World {
    /// Runs everything (single-threaded, so runs are repeatable).
    pub rt: tokio::runtime::Runtime,
    /// The roles served.
    pub roles: Roles,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
}

impl World {
    /// Starts a scripted role and waits until it holds credentials.
    pub fn new() -> World {
        // Paused time: whenever client and server both wait, the clock jumps to the next timer
        // (the header read timeout), so a silent connection ends at once instead of in 5 s.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let metrics = Arc::new(Metrics::new());
        let handle = rt.block_on(async {
            let (handle, _task): (RoleHandle, _) =
                cache::spawn_role("default", OneHour, metrics.clone());
            handle
                .wait_usable(Duration::from_secs(5))
                .await
                .expect("scripted credentials");
            handle
        });
        let roles = Roles::new(vec![handle]).expect("one role");
        World { rt, roles, metrics }
    }

    /// Whether `out` shows secrets: the secret field of either JSON format, or the secret
    /// access key or session token being served right now (the refresher renews them as the
    /// paused clock moves on). The access key id is not a secret (`/status` shows it). Text the
    /// input itself carries does not count (a server may echo a path in an error).
    pub fn shows_secrets(&self, input: &[u8], out: &[u8]) -> bool {
        let mut needles: Vec<Vec<u8>> = vec![b"SecretAccessKey".to_vec()];
        if let Some(snapshot) = self.roles.default_role().current() {
            let c = &snapshot.credentials;
            needles.push(c.secret_access_key.expose().as_bytes().to_vec());
            needles.push(c.session_token.expose().as_bytes().to_vec());
        }
        needles
            .iter()
            .any(|n| contains(out, n) && !contains(input, n))
    }

    /// Sends `input` as raw bytes on one connection served by `handler` with the listeners'
    /// limits, closes the sending side, and returns every byte the server wrote. Panics if the
    /// exchange does not end (a hang is a finding).
    pub fn exchange<H, F>(&self, input: &[u8], handler: H) -> Vec<u8>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        self.rt.block_on(async {
            let (client, server) = tokio::io::duplex(1 << 16);
            // Kept until the exchange is over: dropping it shuts its connections down.
            let connections = Connections::new(&Limits::default());
            let served = connections.spawn(server, handler, ());
            let (mut rd, mut wr) = tokio::io::split(client);
            let write = async {
                // The server may close first (oversized head, bad request): not an error here.
                // The sending side stays open: hyper drops a response in progress when the
                // client half-closes, so shutting down here would hide every answer.
                let _ = wr.write_all(input).await;
                wr
            };
            let read = async {
                let mut out = Vec::new();
                let _ = rd.read_to_end(&mut out).await;
                out
            };
            let exchange = async { tokio::join!(write, read) };
            let (_wr, out) = tokio::time::timeout(Duration::from_secs(60), exchange)
                .await
                .expect("the connection neither answered nor closed within 60 s (virtual)");
            let _ = served.await;
            drop(connections);
            out
        })
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// A backend whose every refresh yields fresh one-hour credentials.
struct OneHour;

impl Refresh for OneHour {
    async fn fetch(&self) -> Result<Credentials, Error> {
        let n = sts_sidecar::clock::now_unix();
        Ok(Credentials {
            access_key_id: format!("ASIAFUZZ{n:012}"),
            secret_access_key: SecretAccessKey::new(format!("fuzz-secret-{n}")),
            session_token: SessionToken::new(format!("fuzz-session-{n}")),
            expiration: n + 3600,
            account_id: "123456789012".to_owned(),
            role_arn: self.role_arn().to_owned(),
            assumed_role_arn: None,
        })
    }

    async fn invalidate_token(&self) {}

    fn role_arn(&self) -> &str {
        "arn:aws:iam::123456789012:role/fuzz"
    }

    fn source(&self) -> String {
        "fuzz".to_owned()
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every status line the server wrote must be well formed.
pub fn assert_responses_well_formed(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    assert!(
        out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
        "not an HTTP response: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(64)])
    );
}
