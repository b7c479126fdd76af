//! Runs the fake upstreams for a local stack: a Diego-shaped PKI with an instance identity, the
//! fake CF Identity Token Service over mTLS, and the fake STS (which verifies the token's
//! signature). Writes the settings sts-sidecar needs as `KEY=value` lines to `--env-file` (and
//! stdout), then serves until Ctrl-C. Used by `scripts/dev-stack.sh`.
//!
//!     cargo run --features test-util --example dev_upstreams -- --env-file /tmp/upstreams.env

use std::time::Duration;

use sts_sidecar::testing::fake_sts::FakeSts;
use sts_sidecar::testing::fake_token_service::FakeTokenService;
use sts_sidecar::testing::pki::{KeyKind, TestPki};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let mut env_file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => env_file = args.next(),
            "-h" | "--help" => {
                println!("usage: dev_upstreams [--env-file FILE]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let pki = TestPki::new()?;
    pki.install(&pki.issue(KeyKind::RsaPkcs1, Duration::from_secs(24 * 3600))?)?;
    let token_service = FakeTokenService::start(&pki).await?;
    let sts = FakeSts::start(Some(token_service.public_key_der())).await?;
    let settings = format!(
        "CF_INSTANCE_CERT={}\nCF_INSTANCE_KEY={}\nTOKEN_SERVICE_URL={}\nTOKEN_SERVICE_CA={}\nSTS_ENDPOINT={}\nCF_SUBJECT={}\n",
        pki.cert_path().display(),
        pki.key_path().display(),
        token_service.url(),
        pki.server_ca_path().display(),
        sts.endpoint(),
        pki.ids.subject(),
    );
    print!("{settings}");
    if let Some(path) = env_file {
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, &settings)?;
        std::fs::rename(&tmp, &path)?;
    }
    tokio::signal::ctrl_c().await?;
    eprintln!(
        "dev_upstreams: {} token requests, {} STS requests",
        token_service.calls(),
        sts.calls()
    );
    Ok(())
}
