//! The issuer's metrics (Prometheus text on the admin listener). Labels hold only fixed words
//! and configured audiences, never anything a client chose.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::keys::ChainCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AudienceLabel {
    pub(super) audience: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub(super) outcome: &'static str,
}

/// The issuer's metrics.
pub(super) struct IssuerMetrics {
    pub(super) registry: Registry,
    pub(super) issued: Family<AudienceLabel, Counter>,
    pub(super) refused: Family<ReasonLabel, Counter>,
    pub(super) duration: Family<OutcomeLabel, Histogram>,
    pub(super) reloads: Family<OutcomeLabel, Counter>,
    pub(super) checks: Counter,
    pub(super) remembered: Gauge,
    pub(super) instances: Gauge,
    pub(super) chains_remembered: Gauge,
    pub(super) published_keys: Gauge,
    pub(super) chains: ChainCounters,
}

impl IssuerMetrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("sts_sidecar_issuer");
        let issued = Family::<AudienceLabel, Counter>::default();
        registry.register(
            "tokens_issued",
            "Tokens issued, by audience",
            issued.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "refusals",
            "Token requests refused, by reason",
            refused.clone(),
        );
        let duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer a token request, by outcome",
            duration.clone(),
        );
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reloads",
            "Key and certificate reloads, by outcome (loaded, refused)",
            reloads.clone(),
        );
        let checks = Counter::default();
        registry.register(
            "key_checks",
            "Times the key material files were looked at for changes (every reload interval, \
             and on SIGHUP)",
            checks.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let remembered = gauge(
            &mut registry,
            "assertions_remembered",
            "Assertion ids held to refuse replays",
        );
        let instances = gauge(
            &mut registry,
            "instances_tracked",
            "Instances whose token budget is being counted",
        );
        let chains_remembered = gauge(
            &mut registry,
            "chains_remembered",
            "Verified certificate chains remembered",
        );
        let published_keys = gauge(
            &mut registry,
            "published_keys",
            "Keys in the JWKS (signing, published, retired)",
        );
        let chains = ChainCounters::default();
        registry.register(
            "chain_verifications_saved",
            "Chain verifications answered from memory",
            chains.hits.clone(),
        );
        registry.register(
            "chain_verifications",
            "Chain verifications made",
            chains.misses.clone(),
        );
        Self {
            registry,
            issued,
            refused,
            duration,
            reloads,
            checks,
            remembered,
            instances,
            chains_remembered,
            published_keys,
            chains,
        }
    }
}

impl std::fmt::Debug for IssuerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuerMetrics")
    }
}
