//! The Rust AWS SDK client for the interop suite. Credentials come only from aws-config's default
//! chain (here: the container provider reading `AWS_CONTAINER_CREDENTIALS_FULL_URI`).
//!
//!     interop_client identity        -> {"arn": "..."}
//!     interop_client movies TABLE    -> {"titles": [...]} after create, 3 puts, scan

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let result = match args.first().map(String::as_str) {
        Some("identity") => identity(&config).await,
        Some("movies") => movies(&config, args.get(1).map(String::as_str).unwrap_or("movie")).await,
        _ => Err("usage: interop_client identity | movies TABLE".into()),
    };
    match result {
        Ok(value) => println!("{value}"),
        Err(e) => {
            eprintln!("{}", aws_sdk_sts::error::DisplayErrorContext(&*e));
            std::process::exit(1);
        }
    }
}

async fn identity(config: &aws_config::SdkConfig) -> Result<serde_json::Value, BoxError> {
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await?;
    Ok(serde_json::json!({ "arn": out.arn() }))
}

async fn movies(
    config: &aws_config::SdkConfig,
    table: &str,
) -> Result<serde_json::Value, BoxError> {
    let db = aws_sdk_dynamodb::Client::new(config);
    if let Err(e) = db.delete_table().table_name(table).send().await
        && !e
            .as_service_error()
            .is_some_and(|s| s.is_resource_not_found_exception())
    {
        return Err(e.into());
    }
    db.create_table()
        .table_name(table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("title")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("title")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    for title in ["Inception", "The Matrix", "Interstellar"] {
        db.put_item()
            .table_name(table)
            .item("title", AttributeValue::S(title.into()))
            .send()
            .await?;
    }
    let scan = db.scan().table_name(table).send().await?;
    let mut titles: Vec<String> = scan
        .items()
        .iter()
        .filter_map(|i| i.get("title").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    titles.sort();
    Ok(serde_json::json!({ "titles": titles }))
}
