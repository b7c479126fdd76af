//! Prometheus metrics for the admin listener: credential and certificate expiry, refresh
//! outcomes by error class, upstream latency and requests by status. Labels never carry secrets.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleInfoLabels {
    role: String,
    source: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    role: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    status: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    credential_expiry: Family<RoleLabels, Gauge>,
    refreshes: Family<RefreshLabels, Counter>,
    upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    requests: Family<RequestLabels, Counter>,
    /// `requests{listener="credentials",status="200"}`, resolved once: the hot path.
    credentials_ok: Counter,
    certificate_expiry: Gauge,
    identity_token_expiry: Family<SourceLabels, Gauge>,
    role_info: Family<RoleInfoLabels, Gauge>,
    auth_failures: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sts_sidecar");
        let credential_expiry = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "credential_expiry_timestamp_seconds",
            "Expiry of the credentials currently served, per role (Unix seconds)",
            credential_expiry.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "refreshes",
            "Credential refresh attempts per role, by outcome (success or error class)",
            refreshes.clone(),
        );
        let upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_request_duration_seconds",
            "Latency of calls to the token service and STS",
            upstream_latency.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by listener and HTTP status",
            requests.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the instance identity certificate last read (Unix seconds)",
            certificate_expiry.clone(),
        );
        let identity_token_expiry = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "identity_token_expiry_timestamp_seconds",
            "exp of the identity token last fetched, per identity source (Unix seconds)",
            identity_token_expiry.clone(),
        );
        let role_info = Family::<RoleInfoLabels, Gauge>::default();
        registry.register(
            "role_info",
            "Always 1: which identity source (name and kind) each role gets its token from",
            role_info.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Credentials requests refused for their authorization token, by reason (missing, wrong)",
            auth_failures.clone(),
        );
        let credentials_ok = requests
            .get_or_create(&RequestLabels {
                listener: "credentials",
                status: 200,
            })
            .clone();
        Self {
            registry,
            credential_expiry,
            refreshes,
            upstream_latency,
            requests,
            credentials_ok,
            certificate_expiry,
            identity_token_expiry,
            role_info,
            auth_failures,
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Records the expiry of the credentials now served for `role`.
    pub fn set_credential_expiry(&self, role: &str, unix: i64) {
        self.credential_expiry
            .get_or_create(&RoleLabels {
                role: role.to_owned(),
            })
            .set(unix);
    }

    /// Counts one refresh attempt for `role` with its outcome.
    pub fn count_refresh(&self, role: &str, outcome: &'static str) {
        self.refreshes
            .get_or_create(&RefreshLabels {
                role: role.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Records one upstream call's latency.
    pub fn observe_upstream(&self, upstream: &'static str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "success" } else { "error" };
        self.upstream_latency
            .get_or_create(&UpstreamLabels { upstream, outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one answered request.
    pub fn count_request(&self, listener: &'static str, status: u16) {
        if status == 200 && listener == "credentials" {
            self.credentials_ok.inc();
            return;
        }
        self.requests
            .get_or_create(&RequestLabels { listener, status })
            .inc();
    }

    /// Counts one credentials request refused for its authorization token.
    pub fn count_auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records the identity certificate's notAfter.
    pub fn set_certificate_expiry(&self, unix: i64) {
        self.certificate_expiry.set(unix);
    }

    /// Records the exp of the identity token last fetched from `source`.
    pub fn set_identity_token_expiry(&self, source: &str, unix: i64) {
        self.identity_token_expiry
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .set(unix);
    }

    /// Records which source (`name`, of `kind`) `role` gets its identity from.
    pub fn set_role_source(&self, role: &str, source: &str, kind: &str) {
        self.role_info
            .get_or_create(&RoleInfoLabels {
                role: role.to_owned(),
                source: source.to_owned(),
                kind: kind.to_owned(),
            })
            .set(1);
    }
}
