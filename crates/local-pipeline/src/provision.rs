//! Creates the resources of infra/ in the emulator (or an account) and seeds the original data.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};

/// The original sample's reference data: item, price, priority.
pub const SEED_ITEMS: [(&str, &str, &str); 5] = [
    ("salad", "100", "high"),
    ("pizza", "100", "low"),
    ("burger", "100", "medium"),
    ("pasta", "100", "very high"),
    ("ice-cream", "100", "very very high"),
];

/// Names of the resources the pipeline uses.
#[derive(Clone, Debug)]
pub struct Names {
    /// The reference table (`ProductPriority`).
    pub table: String,
    /// The bucket of the change feed and the output.
    pub bucket: String,
    /// The change feed's prefix.
    pub change_prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            table: "ProductPriority".into(),
            bucket: "demo-bucket-123456789012".into(),
            change_prefix: "change_flags/".into(),
        }
    }
}

/// Creates the table (with a NEW_AND_OLD_IMAGES stream), seeds it, and creates the bucket.
/// Returns the stream ARN.
pub async fn provision(
    ddb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    names: &Names,
) -> Result<String> {
    let attr = |name: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
    };
    let key = |name: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
    };
    let created = ddb
        .create_table()
        .table_name(&names.table)
        .attribute_definitions(attr("item", ScalarAttributeType::S)?)
        .attribute_definitions(attr("price", ScalarAttributeType::N)?)
        .key_schema(key("item", KeyType::Hash)?)
        .key_schema(key("price", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("creating table {}", names.table))?;
    let stream_arn = created
        .table_description()
        .and_then(|d| d.latest_stream_arn())
        .context("the new table has no stream")?
        .to_owned();
    for (item, price, priority) in SEED_ITEMS {
        ddb.put_item()
            .table_name(&names.table)
            .item("item", AttributeValue::S(item.into()))
            .item("price", AttributeValue::N(price.into()))
            .item("priority", AttributeValue::S(priority.into()))
            .send()
            .await
            .with_context(|| format!("seeding {item}"))?;
    }
    s3.create_bucket()
        .bucket(&names.bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {}", names.bucket))?;
    Ok(stream_arn)
}

/// The original walkthrough's update: `SET priority = :s` on (`item`, price 100).
pub async fn set_priority(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    item: &str,
    priority: &str,
) -> Result<()> {
    ddb.update_item()
        .table_name(table)
        .key("item", AttributeValue::S(item.into()))
        .key("price", AttributeValue::N("100".into()))
        .update_expression("SET priority = :s")
        .expression_attribute_values(":s", AttributeValue::S(priority.into()))
        .send()
        .await
        .with_context(|| format!("updating {item} in {table}"))?;
    Ok(())
}
