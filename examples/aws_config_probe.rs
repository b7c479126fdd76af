//! A client nobody here wrote: the Rust SDK's own container credentials provider
//! (`aws_config::ecs::EcsCredentialsProvider`), configured only by the standard environment
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`). The tests
//! run it as a child process with exactly that environment; it prints what it got as one JSON
//! line (never the secret parts) or the provider's error on stderr with exit code 1.

use aws_credential_types::provider::ProvideCredentials as _;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `imds` as the first argument uses the SDK's IMDS provider instead (it reads
    // AWS_EC2_METADATA_SERVICE_ENDPOINT).
    let result = if std::env::args().nth(1).as_deref() == Some("imds") {
        aws_config::imds::credentials::ImdsCredentialsProvider::builder()
            .build()
            .provide_credentials()
            .await
    } else {
        aws_config::ecs::EcsCredentialsProvider::builder()
            .build()
            .provide_credentials()
            .await
    };
    match result {
        Ok(creds) => {
            let expiry = creds
                .expiry()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            let line = serde_json::json!({
                "access_key_id": creds.access_key_id(),
                "has_secret": !creds.secret_access_key().is_empty(),
                "has_session_token": creds.session_token().is_some_and(|t| !t.is_empty()),
                "expiry_unix": expiry,
                "account_id": creds.account_id().map(|a| a.as_str().to_owned()),
            });
            println!("{line}");
        }
        Err(e) => {
            eprintln!("{}", aws_sdk_sts::error::DisplayErrorContext(&e));
            std::process::exit(1);
        }
    }
}
