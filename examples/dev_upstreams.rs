//! The upstreams of a local stack, sharing the test fakes' code: a Diego-shaped PKI with an
//! instance identity, and what `sts-sidecar issuer` needs to serve it (the CA bundle, a TLS
//! certificate, a signing key: `ISSUER_*`); the fake of the existing CF Identity Token Service
//! (mTLS only: `POST /token` → RS256 JWT, 403 without a client certificate), kept for checking
//! that the sidecar still works with it; and unless `--no-sts` the fake STS. Writes the settings
//! sts-sidecar needs as `KEY=value` lines to `--env-file` (and stdout), then serves until Ctrl-C
//! or SIGTERM. With `--idp` it also runs the fake identity provider (a GCP metadata server, an
//! OIDC provider with the client-credentials grant, GitHub's job token endpoint) and writes a
//! token file signed by it, for the other identity sources. Used by `interop/run.py` and
//! docker-compose.
//!
//!     cargo run --features test-util --example dev_upstreams -- --help

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sts_sidecar::testing::fake_idp::{
    FakeIdp, GITHUB_REQUEST_TOKEN, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
};
use sts_sidecar::testing::fake_roles_anywhere::FakeRolesAnywhere;
use sts_sidecar::testing::fake_sts::FakeSts;
use sts_sidecar::testing::fake_token_service::FakeTokenService;
use sts_sidecar::testing::pki::{CfIds, KeyKind, TestPki};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: dev_upstreams [options]
  --env-file FILE              write the settings as KEY=value lines to FILE
  --out-dir DIR                copy the instance certificate, key and CA there (default: a temp dir)
  --token-service-listen ADDR  token service address (default 127.0.0.1:0)
  --server-name NAME           extra DNS name in the upstreams' server certificate (repeatable)
  --url-host HOST              host to put in TOKEN_SERVICE_URL (default: the listen address)
  --no-sts                     do not start the fake STS (use moto or real STS instead)
  --idp                        also start the fake identity provider (GCP metadata, OIDC,
                               GitHub) and write IDP_* settings and a token file it signed
  --roles-anywhere REGION      also start a fake IAM Roles Anywhere for REGION (plain HTTP and
                               TLS), trusting the Diego root; writes RA_* settings
  --wait-for FILE              exit 0 if FILE exists, 1 otherwise (a health check for images
                               without a shell)
  --instances N                also write N more instance identities of the same PKI (other
                               instance guids, P-256 keys) to instances/ beside the certificate,
                               for load and fairness tests (INSTANCES_DIR, INSTANCES)
  --pki-only                   write the Diego-shaped test PKI to --out-dir and exit:
                               diego-root-ca.pem, diego-intermediate-ca.pem, instance.crt
                               (leaf + intermediate), instance.key (PKCS#1), upstreams-ca.pem";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (mut env_file, mut out_dir, mut url_host) = (None, None, None);
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut names: Vec<String> = Vec::new();
    let mut with_sts = true;
    let mut pki_only = false;
    let mut with_idp = false;
    let mut ra_region: Option<String> = None;
    let mut instances = 0usize;
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--env-file" => env_file = Some(PathBuf::from(value()?)),
            "--out-dir" => out_dir = Some(PathBuf::from(value()?)),
            "--token-service-listen" => listen = value()?.parse()?,
            "--server-name" => names.push(value()?),
            "--url-host" => url_host = Some(value()?),
            "--no-sts" => with_sts = false,
            "--idp" => with_idp = true,
            "--roles-anywhere" => ra_region = Some(value()?),
            "--pki-only" => pki_only = true,
            "--instances" => instances = value()?.parse()?,
            "--wait-for" => {
                let ready = std::path::Path::new(&value()?).exists();
                std::process::exit(if ready { 0 } else { 1 });
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pki = TestPki::with_server_names(CfIds::default(), &name_refs)?;
    pki.install(&pki.issue(KeyKind::RsaPkcs1, Duration::from_secs(24 * 3600))?)?;
    let (cert, key, ca) = match &out_dir {
        None => (pki.cert_path(), pki.key_path(), pki.server_ca_path()),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let copy = |from: PathBuf, name: &str| -> Result<PathBuf, BoxError> {
                let to = dir.join(name);
                std::fs::copy(from, &to)?;
                Ok(to)
            };
            (
                copy(pki.cert_path(), "instance.crt")?,
                copy(pki.key_path(), "instance.key")?,
                copy(pki.server_ca_path(), "upstreams-ca.pem")?,
            )
        }
    };
    if pki_only {
        let dir = out_dir.ok_or("--pki-only needs --out-dir DIR")?;
        std::fs::write(dir.join("diego-root-ca.pem"), pki.root_pem())?;
        std::fs::write(
            dir.join("diego-intermediate-ca.pem"),
            pki.intermediate_pem(),
        )?;
        println!(
            "wrote the test PKI for {} to {}",
            pki.ids.subject(),
            dir.display()
        );
        return Ok(());
    }
    let token_service = FakeTokenService::start_on(&pki, listen).await?;
    let url = match &url_host {
        Some(host) => format!(
            "https://{host}:{}",
            token_service.url().rsplit(':').next().unwrap_or("443")
        ),
        None => token_service.url(),
    };
    let sts = if with_sts {
        Some(FakeSts::start(Some(token_service.public_key_der())).await?)
    } else {
        None
    };
    let mut settings = format!(
        "CF_INSTANCE_CERT={}\nCF_INSTANCE_KEY={}\nTOKEN_SERVICE_URL={url}\nTOKEN_SERVICE_CA={}\nCF_SUBJECT={}\n",
        cert.display(),
        key.display(),
        ca.display(),
        pki.ids.subject(),
    );
    if let Some(sts) = &sts {
        settings.push_str(&format!("STS_ENDPOINT={}\n", sts.endpoint()));
    }
    // What `sts-sidecar issuer` needs to serve this PKI's instances: the Diego CA bundle, a TLS
    // certificate from the upstreams' CA, and a signing key.
    {
        let dir = cert.parent().map(PathBuf::from).unwrap_or_default();
        let ca_bundle = dir.join("instance-identity-ca.pem");
        std::fs::write(
            &ca_bundle,
            format!("{}{}", pki.root_pem(), pki.intermediate_pem()),
        )?;
        let tls_cert = dir.join("issuer-tls.crt");
        let tls_key = dir.join("issuer-tls.key");
        std::fs::write(&tls_cert, pki.server_cert_pem())?;
        std::fs::write(&tls_key, pki.server_key_pem()?)?;
        let signing_key = dir.join("issuer-signing.pem");
        std::fs::write(&signing_key, rcgen::KeyPair::generate()?.serialize_pem())?;
        settings.push_str(&format!(
            "ISSUER_CA={}\nISSUER_TLS_CERT={}\nISSUER_TLS_KEY={}\nISSUER_SIGNING_KEY={}\n",
            ca_bundle.display(),
            tls_cert.display(),
            tls_key.display(),
            signing_key.display()
        ));
    }
    if instances > 0 {
        let dir = cert
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
            .join("instances");
        std::fs::create_dir_all(&dir)?;
        let now = u64::try_from(sts_sidecar::clock::now_unix()).unwrap_or(0);
        for i in 0..instances {
            let mut ids = pki.ids.clone();
            ids.instance = format!("00000000-0000-4000-8000-{i:012}");
            let id = pki.issue_as(&ids, KeyKind::EcPkcs8, now - 60, now + 24 * 3600)?;
            std::fs::write(dir.join(format!("instance-{i}.crt")), &id.cert_pem)?;
            std::fs::write(dir.join(format!("instance-{i}.key")), &id.key_pem)?;
        }
        settings.push_str(&format!(
            "INSTANCES_DIR={}\nINSTANCES={instances}\n",
            dir.display()
        ));
    }
    let idp = if with_idp {
        let idp = FakeIdp::start().await?;
        let dir = cert.parent().map(PathBuf::from).unwrap_or_default();
        let token_file = dir.join("idp-token");
        // With a trailing newline, as `echo` and many secret stores write it.
        std::fs::write(
            &token_file,
            format!(
                "{}\n",
                idp.mint_token(
                    "system:serviceaccount:demo:movie-app",
                    Duration::from_secs(3600)
                )
            ),
        )?;
        let secret_file = dir.join("idp-client-secret");
        std::fs::write(&secret_file, OIDC_CLIENT_SECRET)?;
        settings.push_str(&format!(
            "IDP_URL={}\nIDP_HOST={}\nIDP_TOKEN_URL={}\nIDP_TOKEN_FILE={}\n\
             OIDC_CLIENT_ID={OIDC_CLIENT_ID}\nOIDC_CLIENT_SECRET_FILE={}\n\
             GITHUB_REQUEST_URL={}\nGITHUB_REQUEST_TOKEN={GITHUB_REQUEST_TOKEN}\n",
            idp.url(),
            idp.host(),
            idp.token_url(),
            token_file.display(),
            secret_file.display(),
            idp.github_request_url(),
        ));
        Some(idp)
    } else {
        None
    };
    let ra = match &ra_region {
        Some(region) => {
            let plain = FakeRolesAnywhere::start(region, pki.root_pem()).await?;
            let tls = FakeRolesAnywhere::start_on(
                "127.0.0.1:0".parse()?,
                region,
                pki.root_pem(),
                Some(pki.mtls_server_config()?),
            )
            .await?;
            settings.push_str(&format!(
                "RA_ENDPOINT={}\nRA_TLS_ENDPOINT={}\nRA_REGION={region}\n",
                plain.endpoint(),
                tls.endpoint()
            ));
            Some((plain, tls))
        }
        None => None,
    };
    print!("{settings}");
    if let Some(path) = env_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &settings)?;
        std::fs::rename(&tmp, &path)?;
    }
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    eprintln!(
        "dev_upstreams: {} token requests, {} fake STS requests, {} identity provider requests, \
         {} Roles Anywhere requests",
        token_service.calls(),
        sts.as_ref().map_or(0, FakeSts::calls),
        idp.as_ref().map_or(0, |i| i.seen().len()),
        ra.as_ref().map_or(0, |(p, t)| p.calls() + t.calls())
    );
    if let Some((plain, tls)) = &ra {
        for why in plain.refused().iter().chain(tls.refused().iter()) {
            eprintln!("dev_upstreams: Roles Anywhere refused a request: {why}");
        }
    }
    Ok(())
}
