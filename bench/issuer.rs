//! The issuer's capacity, beside the bare cryptography it performs and beside the dev token
//! service (the fake of the existing CF Identity Token Service).
//!
//! Starts `sts-sidecar issuer` as a process of its own (plain HTTP for assertions and
//! `X-Forwarded-Client-Cert`, as behind a router; TLS for mTLS), for each signing key (ES256 on
//! P-256, RS256 on RSA 2048), and sends it token requests from `--concurrency` clients for
//! `--secs` per run, for instance keys of P-256 and RSA 3072. Assertions are made before a run
//! starts; mTLS opens a new connection per token, as a fleet of sidecars does. The issuer's CPU
//! time comes from `/proc`, so tokens per CPU-second does not depend on how busy the client
//! (on the same machine) keeps the cores. Prints a table and writes bench/issuer.md and
//! bench/issuer.json.
//!
//!     bench/issuer.sh        # builds, runs this, then the fleet simulation with the figures

// A benchmark harness: a broken setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;
use sts_sidecar::issuer::ca::CaBundle;
use sts_sidecar::jws;
use sts_sidecar::testing::pki::{InstanceIdentity, KeyKind, TestPki};

#[derive(Parser, Debug)]
#[command(
    about = "Measures sts-sidecar issuer against the bare cryptography and the dev token service"
)]
struct Args {
    /// The sts-sidecar binary to run.
    #[arg(long)]
    bin: PathBuf,
    /// The dev_upstreams example binary (the dev token service).
    #[arg(long)]
    dev_upstreams: PathBuf,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where to write issuer.md and issuer.json.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// An older sts-sidecar binary, measured the same way in the same run, its tokens per
    /// CPU-second shown beside this one's.
    #[arg(long)]
    before_bin: Option<PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    service: String,
    proof: &'static str,
    instance_key: &'static str,
    signing: &'static str,
    tokens: usize,
    failures: usize,
    wall_secs: f64,
    tokens_per_sec: f64,
    server_cpu_secs: f64,
    tokens_per_cpu_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_idle_mib: f64,
    rss_load_mib: f64,
}

/// The bare cost of one token's cryptography, and the rate it allows per core.
#[derive(Debug, Clone, Serialize)]
struct Limit {
    proof: &'static str,
    instance_key: &'static str,
    signing: &'static str,
    micros: f64,
    tokens_per_cpu_sec: f64,
    /// The same once the instance's chain is remembered (no chain verification).
    remembered_micros: f64,
    remembered_per_cpu_sec: f64,
}

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        sts_sidecar::clock::now_unix().max(0) as u64
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn key_pem(kind: &str) -> Result<String, BoxError> {
    Ok(match kind {
        "ES256" => rcgen::KeyPair::generate()?.serialize_pem(),
        _ => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?.serialize_pem(),
    })
}

/// Mean microseconds of `f` over `n` calls.
fn time_op(n: usize, mut f: impl FnMut()) -> f64 {
    // Allowed here: a benchmark's own clock.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Fields after the command: state is [0]; utime is field 14 overall, [11] here.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    fn rss_mib(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn wait_ready(url: &str) -> Result<(), BoxError> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    for _ in 0..200 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{url} did not answer").into())
}

/// A request a client sends: its body and headers, and the client (with or without an
/// identity) that sends it.
#[derive(Clone)]
struct Request {
    body: String,
    headers: Vec<(&'static str, String)>,
}

/// Sends `requests` (one each, in order) from `concurrency` tasks through `client_for(i)` to
/// `url`, until they run out or `secs` pass; returns per-request latencies and failures.
async fn load(
    url: &str,
    requests: Arc<Vec<Request>>,
    clients: Vec<reqwest::Client>,
    secs: f64,
) -> (Vec<f64>, usize, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for client in clients {
        let (next, failures, requests, url) = (
            next.clone(),
            failures.clone(),
            requests.clone(),
            url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                if started.elapsed() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = requests.get(i) else { break };
                #[allow(clippy::disallowed_methods)]
                let t = std::time::Instant::now();
                let mut req = client.post(&url).body(r.body.clone());
                if !r.body.is_empty() {
                    req = req.header("content-type", "application/x-www-form-urlencoded");
                }
                for (k, v) in &r.headers {
                    req = req.header(*k, v);
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                        latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let wall = started.elapsed().as_secs_f64();
    (all, failures.load(Ordering::Relaxed), wall)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    service: &str,
    proof: &'static str,
    instance_key: &'static str,
    signing: &'static str,
    proc: &Proc,
    url: &str,
    requests: Vec<Request>,
    clients: Vec<reqwest::Client>,
    secs: f64,
) -> Run {
    let rss_idle = proc.rss_mib("VmRSS:");
    let cpu_before = proc.cpu_secs();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = Arc::new(parking_lot::Mutex::new(rss_idle));
    let sampler = {
        let (sampling, peak, pid) = (sampling.clone(), peak.clone(), proc.pid());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kb) = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
                {
                    let mut p = peak.lock();
                    *p = p.max(kb / 1024.0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (mut latencies, failures, wall) = load(url, Arc::new(requests), clients, secs).await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let cpu = proc.cpu_secs() - cpu_before;
    latencies.sort_by(f64::total_cmp);
    let tokens = latencies.len();
    let run = Run {
        service: service.to_owned(),
        proof,
        instance_key,
        signing,
        tokens,
        failures,
        wall_secs: wall,
        tokens_per_sec: tokens as f64 / wall,
        server_cpu_secs: cpu,
        tokens_per_cpu_sec: if cpu > 0.0 { tokens as f64 / cpu } else { 0.0 },
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        rss_idle_mib: rss_idle,
        rss_load_mib: *peak.lock(),
    };
    eprintln!(
        "{:<24} {:<9} {:<9} {:<6} {:>7} tokens {:>7.0}/s {:>7.0}/CPU-s p99 {:>6.1} ms  RSS {:.1}/{:.1} MiB  failed {}",
        run.service,
        run.proof,
        run.instance_key,
        run.signing,
        run.tokens,
        run.tokens_per_sec,
        run.tokens_per_cpu_sec,
        run.p99_ms,
        run.rss_idle_mib,
        run.rss_load_mib,
        run.failures
    );
    run
}

fn chain_b64(identity: &InstanceIdentity) -> Vec<String> {
    CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// `n` assertions by `identity` for `aud`, made on every core.
fn assertions(identity: &InstanceIdentity, cn: &str, aud: &str, n: usize) -> Vec<Request> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chain = chain_b64(identity);
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (chain, key) = (chain.clone(), identity.key_pem.clone());
                scope.spawn(move || {
                    let signer = jws::Signer::from_pem(key.as_bytes()).expect("instance key");
                    let now = sts_sidecar::clock::now_unix();
                    (0..per)
                        .map(|i| {
                            let claims = serde_json::json!({
                                "iss": cn, "sub": cn, "aud": aud, "iat": now,
                                "exp": now + 300, "jti": format!("bench-{t}-{i}-{now}-0000000000"),
                            });
                            let a = signer
                                .sign(serde_json::json!({"x5c": chain}), &claims)
                                .expect("sign");
                            Request {
                                body: form_urlencoded::Serializer::new(String::new())
                                    .append_pair(
                                        "grant_type",
                                        sts_sidecar::issuer::GRANT_JWT_BEARER,
                                    )
                                    .append_pair("assertion", &a)
                                    .finish(),
                                headers: Vec::new(),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .take(n)
            .collect()
    })
}

fn plain_clients(n: usize) -> Vec<reqwest::Client> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(n)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    vec![client; n]
}

/// Clients presenting `identity` over TLS, each opening a new connection for every request.
fn mtls_clients(n: usize, identity_pem: &str, ca_pem: &str) -> Vec<reqwest::Client> {
    (0..n)
        .map(|_| {
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .tls_certs_merge(
                    reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).expect("ca"),
                )
                .identity(reqwest::Identity::from_pem(identity_pem.as_bytes()).expect("identity"))
                .build()
                .expect("client")
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new()?;
    let ca_path = pki.write_ca_bundle()?;
    let tls_cert = dir.path().join("tls.crt");
    let tls_key = dir.path().join("tls.key");
    std::fs::write(&tls_cert, pki.server_cert_pem())?;
    std::fs::write(&tls_key, pki.server_key_pem()?)?;
    let server_ca = std::fs::read_to_string(pki.server_ca_path())?;
    let day = Duration::from_secs(86_400);
    let instances: Vec<(&'static str, InstanceIdentity)> = vec![
        ("P-256", pki.issue(KeyKind::EcPkcs8, day)?),
        ("RSA 3072", pki.issue(KeyKind::Rsa3072Pkcs8, day)?),
    ];
    let cn = pki.ids.instance.clone();

    // ---- the bare cryptography of one token
    let ca = CaBundle::from_pems([std::fs::read(&ca_path)?.as_slice()])?;
    let mut limits = Vec::new();
    let signing_keys: Vec<(&'static str, String)> =
        vec![("ES256", key_pem("ES256")?), ("RS256", key_pem("RS256")?)];
    let tls_key_signer = jws::Signer::from_pem(pki.server_key_pem()?.as_bytes())?;
    for (kind, identity) in &instances {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<_, _>>()?;
        let chain_us = time_op(2000, || {
            let _ = ca.verify(&chain, now());
        });
        let signer = jws::Signer::from_pem(identity.key_pem.as_bytes())?;
        let message = b"an assertion's signing input, about this long or longer......";
        let signature = signer.sign_bytes(message)?;
        let public = signer.public().clone();
        let verify_us = time_op(2000, || {
            let _ = public.verify(public.alg(), message, &signature);
        });
        // A TLS 1.3 handshake on the server: its own signature, an X25519 exchange, and the
        // client's CertificateVerify (one more verify with the instance key).
        let server_sign_us = time_op(500, || {
            let _ = tls_key_signer.sign_bytes(message);
        });
        let x25519_us = time_op(2000, || {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let mine = aws_lc_rs::agreement::EphemeralPrivateKey::generate(
                &aws_lc_rs::agreement::X25519,
                &rng,
            )
            .expect("key");
            let theirs = aws_lc_rs::agreement::EphemeralPrivateKey::generate(
                &aws_lc_rs::agreement::X25519,
                &rng,
            )
            .expect("key");
            let peer = theirs.compute_public_key().expect("public");
            let _ = aws_lc_rs::agreement::agree_ephemeral(
                mine,
                aws_lc_rs::agreement::UnparsedPublicKey::new(
                    &aws_lc_rs::agreement::X25519,
                    peer.as_ref(),
                ),
                (),
                |_| Ok(()),
            );
        });
        for (alg, pem) in &signing_keys {
            let token_signer = jws::Signer::from_pem(pem.as_bytes())?;
            let sign_us = time_op(if *alg == "RS256" { 300 } else { 2000 }, || {
                let _ = token_signer.sign_bytes(message);
            });
            for (proof, remembered) in [
                ("assertion", verify_us + sign_us),
                ("mtls", verify_us + server_sign_us + x25519_us + sign_us),
                ("xfcc", sign_us),
            ] {
                let micros = chain_us + remembered;
                limits.push(Limit {
                    proof,
                    instance_key: kind,
                    signing: alg,
                    micros,
                    tokens_per_cpu_sec: 1e6 / micros,
                    remembered_micros: remembered,
                    remembered_per_cpu_sec: 1e6 / remembered,
                });
            }
        }
        eprintln!(
            "bare, {kind}: chain {chain_us:.1} µs, assertion verify {verify_us:.1} µs, \
             TLS server sign {server_sign_us:.1} µs, X25519 {x25519_us:.1} µs"
        );
    }

    // ---- the issuer (and the build before it, in the same run)
    let mut runs = Vec::new();
    let mut binaries = vec![("sts-sidecar issuer", args.bin.clone())];
    if let Some(before) = &args.before_bin {
        binaries.push(("before", before.clone()));
    }
    for (service, bin) in &binaries {
        // One instance asks for every token of a run: lift its budget (older builds have none).
        let budget_flags = Command::new(bin)
            .args(["issuer", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("--instance-burst"))
            .unwrap_or(false);
        for (alg, pem) in &signing_keys {
            let key_path = dir.path().join(format!("signing-{alg}.pem"));
            std::fs::write(&key_path, pem)?;
            for tls in [false, true] {
                let (port, admin) = (free_port(), free_port());
                let url = format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" });
                let mut cmd = Command::new(bin);
                cmd.args(["issuer", "--issuer-url", &url])
                    .args(["--listen", &format!("127.0.0.1:{port}")])
                    .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
                    .arg("--instance-identity-ca")
                    .arg(&ca_path)
                    .arg("--signing-key")
                    .arg(&key_path)
                    .args(["--accept", if tls { "mtls" } else { "assertion,xfcc" }])
                    .args(["--max-connections", "4096"])
                    .env_clear()
                    .env("STS_SIDECAR_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if budget_flags {
                    cmd.args([
                        "--instance-burst",
                        "10000000",
                        "--instance-refill-secs",
                        "1",
                    ]);
                }
                if tls {
                    cmd.arg("--tls-cert")
                        .arg(&tls_cert)
                        .arg("--tls-key")
                        .arg(&tls_key);
                }
                let proc = Proc {
                    child: cmd.spawn()?,
                };
                wait_ready(&format!("http://127.0.0.1:{admin}/ready")).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let token_url = format!("{url}/token");
                for (kind, identity) in &instances {
                    if tls {
                        let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
                        let requests = vec![
                            Request {
                                body: String::new(),
                                headers: Vec::new()
                            };
                            200_000
                        ];
                        let clients = mtls_clients(args.concurrency, &pem, &server_ca);
                        runs.push(
                            measure(
                                service, "mtls", kind, alg, &proc, &token_url, requests, clients,
                                args.secs,
                            )
                            .await,
                        );
                    } else {
                        let n = if *kind == "RSA 3072" { 8_000 } else { 60_000 };
                        let requests = assertions(identity, &cn, &url, n);
                        runs.push(
                            measure(
                                service,
                                "assertion",
                                kind,
                                alg,
                                &proc,
                                &token_url,
                                requests,
                                plain_clients(args.concurrency),
                                args.secs,
                            )
                            .await,
                        );
                        let leaf = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                            .next()
                            .ok_or("no leaf")??;
                        let header = base64::engine::general_purpose::STANDARD.encode(leaf);
                        let requests = vec![
                            Request {
                                body: String::new(),
                                headers: vec![("x-forwarded-client-cert", header)]
                            };
                            200_000
                        ];
                        runs.push(
                            measure(
                                service,
                                "xfcc",
                                kind,
                                alg,
                                &proc,
                                &token_url,
                                requests,
                                plain_clients(args.concurrency),
                                args.secs,
                            )
                            .await,
                        );
                    }
                }
            }
        }
    }

    // ---- the dev token service (the fake of the existing service: mTLS, RS256, RSA 2048)
    let env_file = dir.path().join("upstreams.env");
    let dev_dir = dir.path().join("dev");
    let dev = Proc {
        child: Command::new(&args.dev_upstreams)
            .args(["--no-sts", "--env-file"])
            .arg(&env_file)
            .arg("--out-dir")
            .arg(&dev_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    };
    for _ in 0..200 {
        if env_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let vars: HashMap<String, String> = std::fs::read_to_string(&env_file)?
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let dev_pem = format!(
        "{}{}",
        std::fs::read_to_string(&vars["CF_INSTANCE_CERT"])?,
        std::fs::read_to_string(&vars["CF_INSTANCE_KEY"])?
    );
    let dev_ca = std::fs::read_to_string(&vars["TOKEN_SERVICE_CA"])?;
    let requests = vec![
        Request {
            body: String::new(),
            headers: Vec::new()
        };
        200_000
    ];
    runs.push(
        measure(
            "dev token service",
            "mtls",
            "RSA 2048",
            "RS256",
            &dev,
            &format!("{}/token", vars["TOKEN_SERVICE_URL"]),
            requests,
            mtls_clients(args.concurrency, &dev_pem, &dev_ca),
            args.secs,
        )
        .await,
    );
    drop(dev);

    let md = report(&runs, &limits, &args);
    println!("{md}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("issuer.md"), &md)?;
    std::fs::write(
        args.out.join("issuer.json"),
        serde_json::to_string_pretty(&serde_json::json!({"runs": runs, "limits": limits}))?,
    )?;
    Ok(())
}

fn report(runs: &[Run], limits: &[Limit], args: &Args) -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut md = String::from(
        "# The issuer's capacity\n\n\
         Written by `bench/issuer.sh` (bench/issuer.rs). Each row is one run against a process of\n\
         its own; the load generator runs on the same machine, so the issuer's own CPU time\n\
         (from /proc) gives *tokens per CPU-second*, a capacity that does not depend on how busy\n\
         the client kept the cores. mTLS opens a new TLS connection per token (as a fleet of\n\
         sidecars does); assertions and `X-Forwarded-Client-Cert` come over kept-alive plain HTTP\n\
         (as behind a router). *Limit* is the bare cryptography of one token (chain verify,\n\
         assertion verify, the TLS handshake's own operations, token signing), timed in process:\n\
         the most any implementation could do per core; the issuer remembers a verified chain,\n\
         so an instance's later tokens skip the chain verification, and *limit, chain\n\
         remembered* is the same without it. Each run asks as one instance, so every token but\n\
         the first uses the remembered chain.\n\n",
    );
    let before_of = |r: &Run| {
        runs.iter()
            .find(|b| {
                b.service == "before"
                    && b.proof == r.proof
                    && b.instance_key == r.instance_key
                    && b.signing == r.signing
            })
            .map_or("-".to_owned(), |b| format!("{:.0}", b.tokens_per_cpu_sec))
    };
    md.push_str(&format!(
        "Machine: {cpus} cores; {} concurrent clients; {} s per run.\n\n",
        args.concurrency, args.secs
    ));
    if let Some(p) = &args.before_bin {
        md.push_str(&format!(
            "*Before*: tokens per CPU-second of {}, measured the same way in the same run (it \
             verifies the chain for every token).\n\n",
            p.display()
        ));
    }
    md.push_str("| service | proof | instance key | signing | tokens/s | tokens per CPU-s | before | limit per CPU-s | limit, chain remembered | share of that | p50 ms | p99 ms | RSS idle MiB | RSS load MiB | failed |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in runs.iter().filter(|r| r.service != "before") {
        let limit = limits
            .iter()
            .find(|l| {
                l.proof == r.proof && l.instance_key == r.instance_key && l.signing == r.signing
            })
            .map(|l| (l.tokens_per_cpu_sec, l.remembered_per_cpu_sec));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.service,
            r.proof,
            r.instance_key,
            r.signing,
            r.tokens_per_sec,
            r.tokens_per_cpu_sec,
            before_of(r),
            limit.map_or("-".to_owned(), |(l, _)| format!("{l:.0}")),
            limit.map_or("-".to_owned(), |(_, l)| format!("{l:.0}")),
            limit.map_or("-".to_owned(), |(_, l)| format!("{:.0} %", 100.0 * r.tokens_per_cpu_sec / l)),
            r.p50_ms,
            r.p99_ms,
            r.rss_idle_mib,
            r.rss_load_mib,
            r.failures
        ));
    }
    md.push_str("\nBare cryptography per token:\n\n| proof | instance key | signing | µs | tokens per CPU-s | µs, chain remembered | tokens per CPU-s, chain remembered |\n|---|---|---|---|---|---|---|\n");
    for l in limits {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.0} |\n",
            l.proof,
            l.instance_key,
            l.signing,
            l.micros,
            l.tokens_per_cpu_sec,
            l.remembered_micros,
            l.remembered_per_cpu_sec
        ));
    }
    md
}
