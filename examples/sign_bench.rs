//! The cost of one Roles Anywhere request signature, per key type, side by side: the whole
//! `x509_sign::sign` (canonical request, string to sign, signature) for a Diego-sized request
//! (a leaf and an intermediate in the headers). Rounds are interleaved across key types so that
//! a noisy neighbour slows all of them alike; the median of the rounds is printed.
//!
//!     cargo run --release --example sign_bench [ROUNDS] [ITERATIONS]

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RsaKeyPair};
use sts_sidecar::backend::x509_sign::{self, SigningKey};

type BoxError = Box<dyn std::error::Error>;

fn p384_key() -> Result<SigningKey, BoxError> {
    loop {
        let mut bytes = [0u8; 48];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "rng")?;
        if let Ok(secret) = p384::SecretKey::from_slice(&bytes) {
            return Ok(SigningKey::P384(Box::new(p384::ecdsa::SigningKey::from(
                secret,
            ))));
        }
    }
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let iterations: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let keys: Vec<(&str, SigningKey)> = vec![
        (
            "RSA 2048",
            SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| "rsa")?),
        ),
        (
            "RSA 3072 (Diego's size)",
            SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa3072).map_err(|_| "rsa")?),
        ),
        (
            "EC P-256",
            SigningKey::P256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).map_err(|_| "p256")?,
            ),
        ),
        ("EC P-384", p384_key()?),
    ];
    // Headers the size of a Diego leaf and intermediate (about 1.3 KiB of DER each).
    let cert = "M".repeat(1800);
    let chain = "N".repeat(1800);
    let query = x509_sign::query(
        "arn:aws:rolesanywhere:eu-central-1:123456789012:profile/4e5f6a7b-2222-3333-4444-555566667777",
        "arn:aws:iam::123456789012:role/cf-movie-app",
        "arn:aws:rolesanywhere:eu-central-1:123456789012:trust-anchor/0a1b2c3d-1111-2222-3333-444455556666",
    );
    let request = x509_sign::Request {
        host: "rolesanywhere.eu-central-1.amazonaws.com",
        query: &query,
        body: b"{\"durationSeconds\":3600}",
        amz_date: "20261201T120000Z",
        region: "eu-central-1",
        x509: &cert,
        chain: Some(&chain),
    };
    let serial = "170141183460469231731687303715884105727";
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    for _ in 0..rounds {
        for (i, (_, key)) in keys.iter().enumerate() {
            let started = tokio::time::Instant::now();
            for _ in 0..iterations {
                std::hint::black_box(x509_sign::sign(key, serial, &request)?);
            }
            let per_op = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
            samples[i].push(per_op);
        }
    }
    println!(
        "Roles Anywhere request signing, {rounds} interleaved rounds of {iterations} signatures"
    );
    println!(
        "{:<24} {:>12} {:>12} {:>10}",
        "key", "median µs", "min µs", "vs P-256"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = samples.iter_mut().map(median).collect();
    let p256 = medians[2];
    for ((name, _), (m, s)) in keys.iter().zip(medians.iter().zip(&samples)) {
        println!(
            "{name:<24} {m:>12.1} {:>12.1} {:>9.1}x",
            s.first().copied().unwrap_or(0.0),
            m / p256
        );
    }
    Ok(())
}
