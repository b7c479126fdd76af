//! How long aws-lc takes to produce its first random bytes in a process (and on a new thread).
//! The first TLS handshake pays this before its ClientHello. `.cargo/config.toml` builds aws-lc
//! without CPU jitter entropy because of what this measured (37 ms with it, tens of µs without).
//!
//!     cargo run --release --example rng_probe

// A wall-clock measurement outside any runtime: there is no tokio clock to pause here.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

fn fill_timed() -> Result<Duration, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 32];
    let start = Instant::now();
    aws_lc_rs::rand::fill(&mut bytes)?;
    Ok(start.elapsed())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let first = fill_timed()?;
    let second = fill_timed()?;
    let thread = std::thread::spawn(fill_timed)
        .join()
        .map_err(|_| "the probe thread panicked")??;
    println!("first fill {first:?}, second {second:?}, first on a new thread {thread:?}");
    Ok(())
}
