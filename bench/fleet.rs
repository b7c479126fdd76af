//! Fleet simulation: what 1,000 to 100,000 sidecars do to STS and the token service.
//!
//! One process, paused tokio time. Every simulated sidecar runs the real refresher
//! (`cache::spawn_role_with`: schedule, jitter, backoff, error classes, the serving floor) and
//! the real identity-token cache rules (`token::TokenCache`) against two shared in-process upstreams:
//! a token service and an STS, each with a capacity (a token bucket) and a latency, answering
//! `Throttling` (STS) or HTTP 429 (token service) beyond it and 503 while they are down. Only
//! the network is simulated; every decision about when to call is the product's.
//!
//! ```sh
//! bench/fleet.sh            # every scenario at 1k, 10k and 100k: bench/fleet.md, .json, .svg
//! bench/fleet.sh --quick    # 1k and 10k only, for a smoke run
//! ```
//!
//! Nothing here is asserted: the numbers are written down (bench/fleet.md) and read.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;
use tokio::time::Instant;

use sts_sidecar::backend::{self, Credentials, SecretAccessKey, SessionToken};
use sts_sidecar::cache::{self, Policy, Refresh};
use sts_sidecar::clock;
use sts_sidecar::metrics::Metrics;
use sts_sidecar::token::cache::Lookup;
use sts_sidecar::token::{self, IdentityToken, Stamp, TokenCache};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
/// How long a client request waits for first credentials before it is answered 503 (the
/// default `cold_start_wait`).
const COLD_START_WAIT: Duration = Duration::from_millis(1500);

#[derive(Parser, Debug)]
#[command(about = "Simulates a fleet of sts-sidecars against shared STS and token service fakes")]
struct Args {
    /// Fleet sizes to simulate.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000])]
    sizes: Vec<usize>,
    /// Only 1k and 10k (a smoke run).
    #[arg(long)]
    quick: bool,
    /// STS capacity for the account and region, calls per second (token bucket rate and burst).
    #[arg(long, default_value_t = 600.0)]
    sts_rate: f64,
    /// Token service capacity, calls per second.
    #[arg(long, default_value_t = 200.0)]
    token_service_rate: f64,
    /// STS latency per call, milliseconds.
    #[arg(long, default_value_t = 80)]
    sts_latency_ms: u64,
    /// Token service latency per call, milliseconds.
    #[arg(long, default_value_t = 40)]
    token_service_latency_ms: u64,
    /// Where to write fleet.md, fleet.json and fleet.svg.
    #[arg(long, default_value = "bench")]
    out: std::path::PathBuf,
    /// Seed for start times and token ages (the refresher's own jitter is not seeded).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The token service's JWT lifetime in seconds (the CF Identity Token Service: 12 h;
    /// `sts-sidecar issuer`: 1 h by default).
    #[arg(long, default_value_t = 12 * 3600)]
    jwt_lifetime_secs: u64,
    /// Only these scenarios (steady, steady-12h, restart, sts-outage, token-service-outage,
    /// denied); all by default.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Only the current policy (not the one before the fleet simulation).
    #[arg(long)]
    now_only: bool,
}

// ---------------------------------------------------------------------------------------------
// Upstreams

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Throttled,
    Down,
    Denied,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Counts {
    ok: u32,
    throttled: u32,
    down: u32,
    denied: u32,
}

impl Counts {
    fn total(&self) -> u32 {
        self.ok + self.throttled + self.down + self.denied
    }
}

/// One shared upstream: a token bucket, a latency, an optional outage, and per-second counts.
#[derive(Debug)]
struct Upstream {
    latency: Duration,
    state: Mutex<Bucket>,
    t0: Instant,
    outage: Option<(Instant, Instant)>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    per_second: Vec<Counts>,
}

impl Upstream {
    fn new(
        rate: f64,
        latency: Duration,
        t0: Instant,
        secs: usize,
        outage: Option<(Duration, Duration)>,
    ) -> Self {
        Self {
            latency,
            state: Mutex::new(Bucket {
                rate,
                tokens: rate,
                last: t0,
                per_second: vec![Counts::default(); secs + 1],
            }),
            t0,
            outage: outage.map(|(from, to)| (t0 + from, t0 + to)),
        }
    }

    /// Admits or refuses one call arriving now; `denied` makes an admitted call fail as denied.
    fn admit(&self, denied: bool) -> Answer {
        let now = Instant::now();
        let mut b = self.state.lock();
        let answer = if self
            .outage
            .is_some_and(|(from, to)| now >= from && now < to)
        {
            Answer::Down
        } else {
            let refill = now.saturating_duration_since(b.last).as_secs_f64() * b.rate;
            b.tokens = (b.tokens + refill).min(b.rate);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                if denied { Answer::Denied } else { Answer::Ok }
            } else {
                Answer::Throttled
            }
        };
        let second = now.saturating_duration_since(self.t0).as_secs() as usize;
        let last = b.per_second.len() - 1;
        let c = &mut b.per_second[second.min(last)];
        match answer {
            Answer::Ok => c.ok += 1,
            Answer::Throttled => c.throttled += 1,
            Answer::Down => c.down += 1,
            Answer::Denied => c.denied += 1,
        }
        answer
    }

    fn counts(&self) -> Vec<Counts> {
        self.state.lock().per_second.clone()
    }
}

/// One sidecar's view of the token service (the real `TokenCache` rules sit in front of it).
#[derive(Debug)]
struct SimTokenService {
    upstream: Arc<Upstream>,
    jwt_lifetime: Duration,
    /// A warm fleet's first token is as old as a running instance's would be: issued this long
    /// ago (a cold start gets a fresh token; every later token is fresh).
    first_age: Option<Duration>,
    used_first: AtomicBool,
    subject: String,
}

impl SimTokenService {
    /// A token through the product's cache rules ([`TokenCache`]), as `TokenSource::token`
    /// applies them in front of a real source.
    async fn token(&self, cache: &tokio::sync::Mutex<TokenCache>) -> Result<(), token::Error> {
        let mut cache = cache.lock().await;
        let keep_on_failure = match cache.lookup(&Stamp::Nothing, Instant::now()) {
            Lookup::Use(..) => return Ok(()),
            Lookup::Fetch {
                keep_on_failure, ..
            } => keep_on_failure,
        };
        let result = self.fetch().await;
        cache
            .settle(
                result,
                Stamp::Nothing,
                keep_on_failure,
                Instant::now(),
                |exp| token::Error::Expired {
                    origin: self.origin(),
                    exp,
                    hint: String::new(),
                },
            )
            .map(|_| ())
    }

    async fn fetch(&self) -> Result<IdentityToken, token::Error> {
        let answer = self.upstream.admit(false);
        tokio::time::sleep(self.upstream.latency).await;
        match answer {
            Answer::Ok | Answer::Denied => {
                let age = match self.first_age {
                    Some(age) if !self.used_first.swap(true, Ordering::Relaxed) => age,
                    _ => Duration::ZERO,
                };
                let iat = clock::now_unix() - age.as_secs() as i64;
                let exp = iat + self.jwt_lifetime.as_secs() as i64;
                Ok(IdentityToken::new(jwt(&self.subject, iat, exp)))
            }
            Answer::Throttled | Answer::Down => Err(token::Error::Status {
                origin: self.origin(),
                status: if answer == Answer::Throttled {
                    429
                } else {
                    503
                },
                hint: String::new(),
            }),
        }
    }

    fn origin(&self) -> String {
        "the simulated token service".to_owned()
    }
}

fn jwt(subject: &str, iat: i64, exp: i64) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"iss":"https://token-service.sim","sub":"{subject}","aud":"sts.amazonaws.com","iat":{iat},"exp":{exp}}}"#
        ))
    )
}

/// STS for the whole account: one bucket for every role.
#[derive(Debug)]
struct SimSts {
    upstream: Arc<Upstream>,
    session: Duration,
    /// The role whose trust policy is broken, and when.
    broken: Option<(usize, Instant, Instant)>,
}

impl SimSts {
    async fn assume(&self, role: usize, role_arn: &str) -> Result<Credentials, backend::Error> {
        let now = Instant::now();
        let denied = self
            .broken
            .is_some_and(|(r, from, to)| r == role && now >= from && now < to);
        let answer = self.upstream.admit(denied);
        tokio::time::sleep(self.upstream.latency).await;
        let fail = |code: &str, message: &str| backend::Error::Sts {
            call: "AssumeRoleWithWebIdentity",
            role_arn: role_arn.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            class: backend::sts::classify_code(code),
        };
        match answer {
            Answer::Ok => Ok(Credentials {
                access_key_id: "ASIASIMULATED0000000".to_owned(),
                secret_access_key: SecretAccessKey::new("simulated-secret"),
                session_token: SessionToken::new("simulated-session-token"),
                expiration: clock::now_unix() + self.session.as_secs() as i64,
                account_id: "111122223333".to_owned(),
                role_arn: role_arn.to_owned(),
                assumed_role_arn: None,
            }),
            Answer::Throttled => Err(fail("Throttling", "Rate exceeded")),
            Answer::Down => Err(fail("ServiceUnavailable", "simulated outage")),
            Answer::Denied => Err(fail(
                "AccessDenied",
                "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sidecars

/// What one instance saw, for the figures.
#[derive(Debug)]
struct Record {
    start: Instant,
    first_ok: Option<Instant>,
    /// Until when a client request would be answered 200 (usable credentials held, or first
    /// ones arriving within the cold-start wait).
    covered_until: Instant,
    /// Time during which a client request would have been answered 503.
    uncovered: Duration,
    failed_in_event: bool,
    ok_after_event: Option<Instant>,
}

#[derive(Debug)]
struct Sidecar {
    token: SimTokenService,
    cache: tokio::sync::Mutex<TokenCache>,
    sts: Arc<SimSts>,
    role: usize,
    role_arn: String,
    record: Arc<Mutex<Record>>,
    event: Option<(Instant, Instant)>,
}

impl Refresh for Sidecar {
    async fn fetch(&self) -> Result<Credentials, backend::Error> {
        let result = match self.token.token(&self.cache).await {
            Ok(_) => self.sts.assume(self.role, &self.role_arn).await,
            Err(e) => Err(backend::Error::Token(e)),
        };
        let now = Instant::now();
        let mut guard = self.record.lock();
        let r = &mut *guard;
        let in_event = self.event.is_some_and(|(from, to)| now >= from && now < to);
        match &result {
            Ok(creds) => {
                r.first_ok.get_or_insert(now);
                let usable_from = now.checked_sub(COLD_START_WAIT).unwrap_or(now);
                if usable_from > r.covered_until {
                    r.uncovered += usable_from - r.covered_until;
                }
                let lifetime = clock::until_unix(creds.expiration);
                r.covered_until = r
                    .covered_until
                    .max(now + lifetime.saturating_sub(cache::FLOOR));
                if r.failed_in_event
                    && r.ok_after_event.is_none()
                    && self.event.is_some_and(|(_, to)| now >= to)
                {
                    r.ok_after_event = Some(now);
                }
            }
            Err(_) if in_event => r.failed_in_event = true,
            Err(_) => {}
        }
        result
    }

    async fn invalidate_token(&self) {
        self.cache.lock().await.clear();
    }

    fn role_arn(&self) -> &str {
        &self.role_arn
    }

    fn source(&self) -> String {
        "token-service (simulated)".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    /// Instances of random age, 1 h sessions.
    Steady,
    /// The same with 12 h sessions.
    Steady12h,
    /// Every instance starts within one minute.
    Restart,
    /// STS answers 503 for 30 minutes.
    StsOutage,
    /// The token service answers 503 for an hour.
    TokenServiceOutage,
    /// One role (a tenth of the fleet) is denied for an hour.
    Denied,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Steady,
        Kind::Steady12h,
        Kind::Restart,
        Kind::StsOutage,
        Kind::TokenServiceOutage,
        Kind::Denied,
    ];

    /// The name `--scenarios` takes.
    fn name(self) -> &'static str {
        match self {
            Kind::Steady => "steady",
            Kind::Steady12h => "steady-12h",
            Kind::Restart => "restart",
            Kind::StsOutage => "sts-outage",
            Kind::TokenServiceOutage => "token-service-outage",
            Kind::Denied => "denied",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Steady => "steady",
            Kind::Steady12h => "steady, 12 h sessions",
            Kind::Restart => "mass restart",
            Kind::StsOutage => "STS outage 30 min",
            Kind::TokenServiceOutage => "token service outage 1 h",
            Kind::Denied => "role denied 1 h",
        }
    }

    fn session(self) -> Duration {
        if self == Kind::Steady12h {
            12 * HOUR
        } else {
            HOUR
        }
    }

    fn run_for(self) -> Duration {
        match self {
            Kind::Steady12h => 30 * HOUR,
            Kind::Restart | Kind::StsOutage => 7 * HOUR,
            _ => 5 * HOUR,
        }
    }

    /// When the event happens (outage, denial), from the simulation's start.
    fn event(self) -> Option<(Duration, Duration)> {
        match self {
            Kind::StsOutage => Some((HOUR, HOUR + 30 * MIN)),
            Kind::TokenServiceOutage | Kind::Denied => Some((HOUR, 2 * HOUR)),
            Kind::Steady | Kind::Steady12h | Kind::Restart => None,
        }
    }

    /// Over which stretch the instances start; a warm fleet's tokens have random ages.
    fn starts(self) -> (Duration, bool) {
        match self {
            Kind::Restart => (MIN, false),
            Kind::Steady12h => (6 * HOUR, true),
            _ => (20 * MIN, true),
        }
    }

    /// Where steady-state rates are measured: after every instance has started and settled.
    fn measure_from(self) -> Duration {
        match self {
            Kind::Steady12h => 12 * HOUR,
            _ => HOUR,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    sts_rate: f64,
    token_service_rate: f64,
    jwt_lifetime: Duration,
    sts_latency: Duration,
    token_service_latency: Duration,
}

#[derive(Debug, Serialize)]
struct Outcome {
    scenario: Kind,
    policy: &'static str,
    instances: usize,
    sts: Rates,
    token_service: Rates,
    /// Seconds until 50 %, 99 % and 100 % serve (see `serve_basis`); `None`: never in the run.
    to_serve_secs: [Option<f64>; 3],
    serve_basis: &'static str,
    /// Instances that failed during the event (outage and denial scenarios).
    affected: usize,
    /// Share of client requests (uniform in time over each instance's life) answered 503.
    share_503: f64,
    /// Instances that answered 503 at some point.
    instances_with_503: usize,
    /// Peak / mean of STS calls per minute (per 15 minutes with 12 h sessions) over the last
    /// third of the run: 1.0 is a fleet whose refreshes are spread evenly; 3 means refreshes
    /// still come in waves three times the mean.
    late_peak_to_mean: f64,
    /// Fleet-wide `sts_sidecar_refreshes_total` by outcome, as Prometheus would sum it.
    refresh_outcomes: Vec<(String, u64)>,
    wall_secs: f64,
    #[serde(skip)]
    sts_series: Vec<Counts>,
    #[serde(skip)]
    token_service_series: Vec<Counts>,
}

#[derive(Debug, Serialize)]
struct Rates {
    calls: u64,
    ok: u64,
    throttled: u64,
    failed: u64,
    /// Mean calls per second over the measured stretch (after start-up).
    mean_per_sec: f64,
    /// Highest calls in one second: over the measured stretch in the steady scenarios, over the
    /// whole run (start-up, event and recovery included) in the others.
    peak_per_sec: u32,
}

fn rates(series: &[Counts], from: usize, peak_from: usize) -> Rates {
    let sum = |f: fn(&Counts) -> u32| series.iter().map(|c| u64::from(f(c))).sum::<u64>();
    let tail = &series[from.min(series.len())..];
    let peak_tail = &series[peak_from.min(series.len())..];
    let tail_calls: u64 = tail.iter().map(|c| u64::from(c.total())).sum();
    Rates {
        calls: sum(Counts::total),
        ok: sum(|c| c.ok),
        throttled: sum(|c| c.throttled),
        failed: sum(|c| c.down + c.denied),
        mean_per_sec: tail_calls as f64 / tail.len().max(1) as f64,
        peak_per_sec: peak_tail.iter().map(Counts::total).max().unwrap_or(0),
    }
}

/// A refresh policy and a token-reuse rule, as run.
#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    policy: Policy,
    renew_at_half_life: bool,
}

/// One simulation to run.
#[derive(Debug, Clone, Copy)]
struct Job {
    kind: Kind,
    n: usize,
    variant: Variant,
    setup: Setup,
    seed: u64,
}

fn simulate(job: Job) -> anyhow::Result<Outcome> {
    // The benchmark's own wall time, reported next to the simulated time.
    #[allow(clippy::disallowed_methods)]
    let wall = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let outcome = runtime.block_on(run(job))?;
    // Dropping the runtime ends every refresher.
    drop(runtime);
    Ok(Outcome {
        wall_secs: wall.elapsed().as_secs_f64(),
        ..outcome
    })
}

async fn run(job: Job) -> anyhow::Result<Outcome> {
    let Job {
        kind,
        n,
        variant,
        setup,
        seed,
    } = job;
    let t0 = Instant::now();
    let secs = kind.run_for().as_secs() as usize;
    let event = kind.event();
    let sts_outage = if kind == Kind::StsOutage { event } else { None };
    let ts_outage = if kind == Kind::TokenServiceOutage {
        event
    } else {
        None
    };
    let sts_up = Arc::new(Upstream::new(
        setup.sts_rate,
        setup.sts_latency,
        t0,
        secs,
        sts_outage,
    ));
    let ts_up = Arc::new(Upstream::new(
        setup.token_service_rate,
        setup.token_service_latency,
        t0,
        secs,
        ts_outage,
    ));
    let sts = Arc::new(SimSts {
        upstream: sts_up.clone(),
        session: kind.session(),
        broken: if kind == Kind::Denied {
            event.map(|(from, to)| (0, t0 + from, t0 + to))
        } else {
            None
        },
    });
    let metrics = Arc::new(Metrics::new());
    let event_at = event.map(|(from, to)| (t0 + from, t0 + to));

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ n as u64);
    let (spread, warm) = kind.starts();
    let mut starts: Vec<(Duration, Option<Duration>)> = (0..n)
        .map(|_| {
            let at = spread.mul_f64(rng.random::<f64>());
            let age = warm.then(|| {
                // A running fleet's tokens are of every age up to the point where the policy
                // renews them: half their life now, 5 minutes before `exp` before.
                let renewed_after = if variant.renew_at_half_life {
                    setup.jwt_lifetime / 2
                } else {
                    setup.jwt_lifetime - 5 * MIN
                };
                renewed_after.mul_f64(rng.random::<f64>())
            });
            (at, age)
        })
        .collect();
    starts.sort_by_key(|(at, _)| *at);

    let records: Vec<Arc<Mutex<Record>>> = Vec::with_capacity(n);
    let records = Arc::new(Mutex::new(records));
    let spawner = {
        let records = records.clone();
        let metrics = metrics.clone();
        let ts_up = ts_up.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::with_capacity(n);
            for (i, (at, age)) in starts.into_iter().enumerate() {
                tokio::time::sleep_until(t0 + at).await;
                let now = Instant::now();
                let record = Arc::new(Mutex::new(Record {
                    start: now,
                    first_ok: None,
                    covered_until: now,
                    uncovered: Duration::ZERO,
                    failed_in_event: false,
                    ok_after_event: None,
                }));
                records.lock().push(record.clone());
                // Role 0 is the one that may be denied: a tenth of the fleet.
                let role = i % 10;
                let sidecar = Sidecar {
                    token: SimTokenService {
                        upstream: ts_up.clone(),
                        jwt_lifetime: setup.jwt_lifetime,
                        first_age: age,
                        used_first: AtomicBool::new(false),
                        subject: format!("org:space:app-{role}"),
                    },
                    cache: tokio::sync::Mutex::new(
                        TokenCache::new().renewing_at_half_life(variant.renew_at_half_life),
                    ),
                    sts: sts.clone(),
                    role,
                    role_arn: format!("arn:aws:iam::111122223333:role/app-{role}"),
                    record,
                    event: event_at,
                };
                let (_handle, task) =
                    cache::spawn_role_with("default", sidecar, metrics.clone(), variant.policy);
                tasks.push(task);
            }
            tasks
        })
    };
    tokio::time::sleep(kind.run_for()).await;
    let end = Instant::now();
    let tasks = spawner.await?;
    for t in &tasks {
        t.abort();
    }

    let records = records.lock();
    let mut uncovered = Duration::ZERO;
    let mut alive = Duration::ZERO;
    let mut with_503 = 0;
    let mut firsts = Vec::with_capacity(n);
    let mut recovered = Vec::new();
    let mut affected = 0usize;
    for r in records.iter() {
        let r = r.lock();
        let gap = end.saturating_duration_since(r.covered_until) + r.uncovered;
        uncovered += gap;
        alive += end - r.start;
        if gap > Duration::ZERO {
            with_503 += 1;
        }
        match kind {
            Kind::Restart => firsts.push(r.first_ok.map(|t| t - t0)),
            _ => firsts.push(r.first_ok.map(|t| t - r.start)),
        }
        if r.failed_in_event {
            affected += 1;
            if let (Some(t), Some((_, to))) = (r.ok_after_event, event_at) {
                recovered.push(t - to);
            }
        }
    }
    let (to_serve_secs, serve_basis) = if event.is_some() {
        let mut rec: Vec<Option<Duration>> = recovered.into_iter().map(Some).collect();
        rec.resize(affected, None);
        (
            percentiles(rec),
            "after the event ended, instances that failed during it",
        )
    } else if kind == Kind::Restart {
        (percentiles(firsts), "from the first start, every instance")
    } else {
        (percentiles(firsts), "from each instance's own start")
    };

    let sts_series = sts_up.counts();
    let token_service_series = ts_up.counts();
    let from = kind.measure_from().as_secs() as usize;
    let peak_from = if matches!(kind, Kind::Steady | Kind::Steady12h) {
        from
    } else {
        0
    };
    let late = secs - secs / 3;
    let bin = if kind.session() > HOUR { 15 * 60 } else { 60 };
    let per_minute: Vec<u64> = sts_series[late..]
        .chunks(bin)
        .map(|c| c.iter().map(|x| u64::from(x.total())).sum())
        .collect();
    let mean = per_minute.iter().sum::<u64>() as f64 / per_minute.len().max(1) as f64;
    let peak = per_minute.iter().copied().max().unwrap_or(0) as f64;
    Ok(Outcome {
        scenario: kind,
        policy: variant.name,
        instances: n,
        sts: rates(&sts_series, from, peak_from),
        token_service: rates(&token_service_series, from, peak_from),
        to_serve_secs,
        serve_basis,
        affected,
        share_503: uncovered.as_secs_f64() / alive.as_secs_f64().max(1.0),
        instances_with_503: with_503,
        late_peak_to_mean: if mean > 0.0 { peak / mean } else { 0.0 },
        refresh_outcomes: refresh_outcomes(&metrics.encode()),
        wall_secs: 0.0,
        sts_series,
        token_service_series,
    })
}

fn percentiles(mut values: Vec<Option<Duration>>) -> [Option<f64>; 3] {
    if values.is_empty() {
        return [None; 3];
    }
    // `None` (never) sorts last.
    values.sort_by_key(|v| v.map_or(u128::MAX, |d| d.as_millis()));
    let at = |q: f64| {
        let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        values[i].map(|d| d.as_secs_f64())
    };
    [at(0.5), at(0.99), at(1.0)]
}

fn refresh_outcomes(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| l.starts_with("sts_sidecar_refreshes_total{"))
        .filter_map(|l| {
            let outcome = l.split("outcome=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((outcome.to_owned(), value as u64))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Report

fn secs(v: Option<f64>) -> String {
    match v {
        None => "never".to_owned(),
        Some(s) if s < 10.0 => format!("{s:.1} s"),
        Some(s) if s < 600.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.1} min", s / 60.0),
    }
}

fn to_serve(o: &Outcome) -> String {
    if o.scenario.event().is_some() && o.affected == 0 {
        return "none failed".to_owned();
    }
    let [a, b, c] = o.to_serve_secs;
    format!("{} / {} / {}", secs(a), secs(b), secs(c))
}

fn count(v: u64) -> String {
    match v {
        v if v >= 10_000_000 => format!("{:.1}M", v as f64 / 1e6),
        v if v >= 100_000 => format!("{:.0}k", v as f64 / 1e3),
        v if v >= 10_000 => format!("{:.1}k", v as f64 / 1e3),
        v => v.to_string(),
    }
}

fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    s.push_str(
        "| scenario | policy | N | STS mean/s | STS peak/s | STS calls | throttled | failed | token svc mean/s | token svc peak/s | token svc calls | throttled | to serve 50 % / 99 % / 100 % | 503 share | instances with a 503 | late peak/mean |\n",
    );
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|\n");
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {:.4} % | {} | {:.2} |",
            o.scenario.label(),
            o.policy,
            count(o.instances as u64),
            o.sts.mean_per_sec,
            o.sts.peak_per_sec,
            count(o.sts.calls),
            count(o.sts.throttled),
            count(o.sts.failed),
            o.token_service.mean_per_sec,
            o.token_service.peak_per_sec,
            count(o.token_service.calls),
            count(o.token_service.throttled),
            to_serve(o),
            o.share_503 * 100.0,
            count(o.instances_with_503 as u64),
            o.late_peak_to_mean,
        );
    }
    s
}

/// The mean time between two refreshes of one instance in steady state: the base delay less
/// half the jitter on average.
fn mean_refresh_interval(session: Duration, jitter: f64) -> Duration {
    cache::refresh_delay_within(session, jitter, 0.5)
}

fn report(args: &Args, sizes: &[usize], table: &str, outcomes: &[Outcome], wall: f64) -> String {
    let mut s = String::new();
    let sizes: Vec<String> = sizes.iter().map(|n| count(*n as u64)).collect();
    let _ = write!(
        s,
        r#"# Fleet simulation: {sizes} sidecars against one STS and one token service

Written by `bench/fleet.sh` (`bench/fleet.rs`) from the code of this commit; rerun it rather than
edit this page. The book's page "At fleet scale" (docs/fleet-scale.md) is written from these numbers.

Each simulated sidecar runs the product's own refresher (`cache::spawn_role_with`: refresh
schedule, jitter, backoff by error class, serving until the 5-minute floor) and its own
identity-token cache (`token::TokenSource`: JWT reuse and renewal), in one process, in paused
tokio time. Only the network is simulated: one STS for the whole account and one token service,
each a token bucket with a capacity and a latency, answering `Throttling` (STS) or HTTP 429
(token service) beyond it and 503 while down. STS errors are classified by the product's own
`classify_code`.

Setup: STS capacity {sts} calls/s (latency {sts_ms} ms), token service capacity {ts} calls/s
(latency {ts_ms} ms), 1 h sessions unless stated, JWTs of 12 h (the CF token service's), one role
per instance, ten roles in the fleet. Seed {seed} for start times and token ages; the refresher's
own jitter is not seeded, so a rerun moves the numbers a little, not the picture.

## Scenarios

- **steady**: instances start over 20 minutes with tokens of random age (a fleet that has been
  running); rates are measured from 1 h to 5 h.
- **steady, 12 h sessions**: the same with `duration_seconds = 43200`, measured from 12 h to 30 h.
- **mass restart**: every instance starts within one minute with no token (a platform upgrade,
  a cell evacuation); run for 7 h.
- **STS outage 30 min**: a steady fleet; STS answers 503 from 1 h to 1 h 30; run for 7 h.
- **token service outage 1 h**: a steady fleet; the token service answers 503 from 1 h to 2 h.
- **role denied 1 h**: a steady fleet; the trust policy of one role (a tenth of the instances) is
  broken from 1 h to 2 h (`AccessDenied`, the `denied` class); the other roles share the quota.

Each scenario runs twice: **before** is the policy this project had before the simulation (10 %
jitter on every refresh, backoff capped at 2 min (5 min for `denied`), a JWT kept until 5 min
before its `exp`); **now** is the current one (the first refresh after a start or a recovery
drawn from 1 to 20 minutes, retries while credentials are held waiting up to a quarter of the
time they can still be served, a JWT renewed from half its life on and kept while the token
service fails).

## Results

{table}
- *mean/s*: calls per second over the measured stretch (steady: after start-up; others: from
  1 h to the end). *peak/s*: the busiest second (steady: in the measured stretch; others: the
  whole run). *calls / throttled / failed*: totals over the run; *failed* are 503s and
  `AccessDenied`, all wasted calls.
- *to serve*: mass restart: from the first start until 50 %, 99 % and 100 % of the instances
  serve credentials; steady: from each instance's own start; outage and denial: from the end of
  the event until the instances that failed during it hold fresh credentials.
- *503 share*: of client requests arriving evenly over every instance's life, the share that
  would be answered 503 (no usable credentials and none within the 1.5 s cold-start wait).
- *late peak/mean*: STS calls per minute (per 15 min with 12 h sessions) over the last third of
  the run, peak over mean. Near 1: refreshes spread evenly over the session; 3: they still come
  in waves three times the mean, hours after a restart or a recovery.

"#,
        sizes = sizes.join(", "),
        sts = args.sts_rate,
        sts_ms = args.sts_latency_ms,
        ts = args.token_service_rate,
        ts_ms = args.token_service_latency_ms,
        seed = args.seed,
    );
    s.push_str(
        "## Check against the single-instance schedule

",
    );
    s.push_str(
        "In steady state each instance refreshes once per mean refresh interval (the refresh \
         schedule in docs/refresh-and-failures.md: 20 min for 1 h sessions, 6 h for 12 h sessions, less half the 10 % jitter), \
         so STS sees N / interval calls per second. The simulation agrees:\n\n",
    );
    s.push_str("| scenario | policy | N | interval | expected STS/s | simulated STS/s | ratio |\n|---|---|--:|--:|--:|--:|--:|\n");
    for o in outcomes
        .iter()
        .filter(|o| matches!(o.scenario, Kind::Steady | Kind::Steady12h))
    {
        let interval = mean_refresh_interval(o.scenario.session(), cache::JITTER);
        let expected = o.instances as f64 / interval.as_secs_f64();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} min | {:.2} | {:.2} | {:.3} |",
            o.scenario.label(),
            o.policy,
            count(o.instances as u64),
            interval.as_secs_f64() / 60.0,
            expected,
            o.sts.mean_per_sec,
            o.sts.mean_per_sec / expected
        );
    }
    s.push_str("\n## What the metrics show\n\n");
    s.push_str(
        "`sts_sidecar_refreshes_total` by outcome, summed over the fleet (what a Prometheus \
         `sum by (outcome)` shows), for the largest fleet:\n\n| scenario | policy | outcomes |\n|---|---|---|\n",
    );
    let largest = outcomes.iter().map(|o| o.instances).max().unwrap_or(0);
    for o in outcomes.iter().filter(|o| o.instances == largest) {
        let outcomes: Vec<String> = o
            .refresh_outcomes
            .iter()
            .map(|(k, v)| format!("{k} {}", count(*v)))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            o.scenario.label(),
            o.policy,
            outcomes.join(", ")
        );
    }
    let _ = write!(
        s,
        "\n![STS and token service calls per second](fleet.svg)\n\n{} runs took {wall:.0} s of CPU \
         time together on this machine, {} at a time (one per logical CPU; each run is one thread).\n",
        outcomes.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    s
}

/// One chart panel: calls per second, averaged over bins of `bin_secs`, over time.
struct Panel {
    title: String,
    bin_secs: usize,
    /// A tick (and a label) every this many seconds.
    tick_secs: usize,
    tick_unit: (&'static str, usize),
    /// Name, colour, values (one per bin).
    lines: Vec<(String, &'static str, Vec<f64>)>,
}

/// A panel comparing one upstream's calls before and now over the first `upto` seconds, in
/// bins of `bin` seconds with a tick every `tick` seconds.
fn compare(
    title: String,
    (bin, tick, unit): (usize, usize, (&'static str, usize)),
    [before, now]: [&[Counts]; 2],
    upto: usize,
) -> Panel {
    Panel {
        title,
        bin_secs: bin,
        tick_secs: tick,
        tick_unit: unit,
        lines: vec![
            (
                "attempted, before".to_owned(),
                "#d62728",
                binned(before, bin, upto, false),
            ),
            (
                "attempted, now".to_owned(),
                "#1f77b4",
                binned(now, bin, upto, false),
            ),
            (
                "answered, now".to_owned(),
                "#2ca02c",
                binned(now, bin, upto, true),
            ),
        ],
    }
}

fn svg(panels: &[Panel]) -> String {
    let (w, ph, left, top, gap) = (900.0, 200.0, 70.0, 30.0, 60.0);
    let height = top + panels.len() as f64 * (ph + gap) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (p, panel) in panels.iter().enumerate() {
        let y0 = top + p as f64 * (ph + gap);
        let max = panel
            .lines
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .fold(1.0_f64, f64::max);
        let max = nice(max);
        let bins = panel
            .lines
            .iter()
            .map(|(_, _, v)| v.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let plot_w = w - left - 20.0;
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 8.0,
            panel.title
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for k in 0..=4 {
            let v = max * k as f64 / 4.0;
            let y = y0 + ph - ph * k as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.0}</text>"##,
                left + plot_w,
                left - 5.0,
                y + 4.0
            );
        }
        let span = bins * panel.bin_secs;
        let mut t = 0;
        while t <= span {
            let x = left + plot_w * t as f64 / span as f64;
            let (unit, per) = panel.tick_unit;
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{}" text-anchor="middle">{} {unit}</text>"#,
                y0 + ph + 15.0,
                t / per
            );
            t += panel.tick_secs;
        }
        let _ = writeln!(
            s,
            r#"<text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">calls/s ({} s means)</text>"#,
            y0 + ph / 2.0,
            y0 + ph / 2.0,
            panel.bin_secs
        );
        for (li, (name, color, values)) in panel.lines.iter().enumerate() {
            let mut points = String::new();
            for (i, v) in values.iter().enumerate() {
                let x = left + plot_w * i as f64 / bins as f64;
                let y = y0 + ph - ph * (v / max).min(1.0);
                let _ = write!(points, "{x:.1},{y:.1} ");
            }
            let _ = writeln!(
                s,
                r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.2"/>"#
            );
            let lx = left + 10.0 + li as f64 * 270.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
                lx + 20.0,
                y0 + 14.0,
                y0 + 14.0,
                lx + 25.0,
                y0 + 18.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn nice(max: f64) -> f64 {
    let mag = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= max {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Mean calls per second in bins of `bin` seconds over the first `upto` seconds; `ok_only`
/// counts only the calls that were answered.
fn binned(series: &[Counts], bin: usize, upto: usize, ok_only: bool) -> Vec<f64> {
    series[..upto.min(series.len())]
        .chunks(bin)
        .map(|c| {
            let n: u32 = c
                .iter()
                .map(|x| if ok_only { x.ok } else { x.total() })
                .sum();
            f64::from(n) / bin as f64
        })
        .collect()
}

fn log_run(o: &Outcome) {
    eprintln!(
        "{:<26} {:<7} N={:<7} sts mean {:>7.1}/s peak {:>6}/s  token svc peak {:>5}/s  to serve {}  503 {:.4} %  late peak/mean {:.2}  ({:.1} s)",
        o.scenario.label(),
        o.policy,
        o.instances,
        o.sts.mean_per_sec,
        o.sts.peak_per_sec,
        o.token_service.peak_per_sec,
        to_serve(o),
        o.share_503 * 100.0,
        o.late_peak_to_mean,
        o.wall_secs
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes: Vec<usize> = if args.quick {
        args.sizes
            .iter()
            .copied()
            .filter(|n| *n <= 10_000)
            .collect()
    } else {
        args.sizes.clone()
    };
    let setup = Setup {
        sts_rate: args.sts_rate,
        token_service_rate: args.token_service_rate,
        jwt_lifetime: Duration::from_secs(args.jwt_lifetime_secs),
        sts_latency: Duration::from_millis(args.sts_latency_ms),
        token_service_latency: Duration::from_millis(args.token_service_latency_ms),
    };
    // The policy before the fleet simulation: 10 % jitter on every refresh, the class caps
    // for every backoff, and a JWT kept until 5 minutes before its `exp`.
    let before = Variant {
        name: "before",
        policy: Policy {
            jitter: cache::JITTER,
            settle_spread: cache::JITTER,
            held_share: 0.0,
        },
        renew_at_half_life: false,
    };
    let after = Variant {
        name: "now",
        policy: Policy::default(),
        renew_at_half_life: true,
    };
    // Every run is independent (its own runtime and upstreams): run them on every core, the
    // largest first so that the last to finish is a small one.
    let mut queue: Vec<(usize, Job)> = Vec::new();
    let variants: &[Variant] = if args.now_only {
        &[after]
    } else {
        &[before, after]
    };
    for kind in Kind::ALL {
        if !args.scenarios.is_empty() && !args.scenarios.iter().any(|s| s == kind.name()) {
            continue;
        }
        for &n in &sizes {
            for &variant in variants {
                let job = Job {
                    kind,
                    n,
                    variant,
                    setup,
                    seed: args.seed,
                };
                queue.push((queue.len(), job));
            }
        }
    }
    queue.sort_by_key(|(_, job)| job.n);
    let queue = Mutex::new(queue);
    let done = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let Some((i, job)) = queue.lock().pop() else {
                        return;
                    };
                    let o = simulate(job);
                    if let Ok(o) = &o {
                        log_run(o);
                    }
                    done.lock().push((i, o));
                }
            });
        }
    });
    let mut done = done.into_inner();
    done.sort_by_key(|(i, _)| *i);
    let outcomes = done
        .into_iter()
        .map(|(_, o)| o)
        .collect::<anyhow::Result<Vec<Outcome>>>()?;
    let table = table(&outcomes);
    println!("{table}");

    std::fs::create_dir_all(&args.out)?;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let pick = |kind: Kind, policy: &str| {
        outcomes
            .iter()
            .find(|o| o.scenario == kind && o.instances == largest && o.policy == policy)
    };
    let mut panels = Vec::new();
    let n = count(largest as u64);
    let hours = |kind: Kind| kind.run_for().as_secs() as usize;
    for kind in [Kind::Restart, Kind::StsOutage, Kind::Denied] {
        let (Some(b), Some(a)) = (pick(kind, before.name), pick(kind, after.name)) else {
            continue;
        };
        let sts = (
            format!("STS calls (capacity {})", args.sts_rate),
            (60, 3600, ("h", 3600)),
            [b.sts_series.as_slice(), a.sts_series.as_slice()],
            hours(kind),
        );
        // A restart's token-service storm lasts minutes: its own panel, zoomed in.
        let token_service = (
            format!(
                "token service calls, first 15 minutes (capacity {})",
                args.token_service_rate
            ),
            (10, 60, ("min", 60)),
            [
                b.token_service_series.as_slice(),
                a.token_service_series.as_slice(),
            ],
            900,
        );
        let mut charts = vec![sts];
        if kind == Kind::Restart {
            charts.push(token_service);
        }
        for (what, bins, series, upto) in charts {
            let title = format!("{}, N = {n}: {what}", kind.label());
            panels.push(compare(title, bins, series, upto));
        }
    }
    std::fs::write(args.out.join("fleet.svg"), svg(&panels))?;
    std::fs::write(
        args.out.join("fleet.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "setup": {
                "sts_calls_per_sec": args.sts_rate,
                "token_service_calls_per_sec": args.token_service_rate,
                "sts_latency_ms": args.sts_latency_ms,
                "token_service_latency_ms": args.token_service_latency_ms,
                "seed": args.seed,
            },
            "outcomes": outcomes,
        }))?,
    )?;
    let total_wall: f64 = outcomes.iter().map(|o| o.wall_secs).sum();
    std::fs::write(
        args.out.join("fleet.md"),
        report(&args, &sizes, &table, &outcomes, total_wall),
    )?;
    eprintln!(
        "wrote {}, {} and {}",
        args.out.join("fleet.md").display(),
        args.out.join("fleet.json").display(),
        args.out.join("fleet.svg").display()
    );
    Ok(())
}
