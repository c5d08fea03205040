//! Creates the resources of infra/ in the emulator and seeds the original data.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// The reference object in S3 (dish categories), put before notifications are configured.
pub const REFERENCE_OBJECT: &str = "menu-categories.csv";

/// The reference object's first version.
pub const REFERENCE_BODY: &[u8] = b"item,category\nburger,mains\npizza,mains\nsalad,starters\n";

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
    /// The bucket of the change feed, the reference objects and the output (the original's
    /// `demo-bucket-<account id>`).
    pub bucket: String,
    /// The change feed's prefix.
    pub change_prefix: String,
    /// Where reference objects live (S3 notifications are configured for it).
    pub reference_prefix: String,
    /// Enriched orders.
    pub output_prefix: String,
    /// Dead letters.
    pub dead_letter_prefix: String,
    /// The orders stream (`SourceKinesisStream`, 4 shards).
    pub stream: String,
    /// The queue that receives the reference prefix's notifications.
    pub queue: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            table: "ProductPriority".into(),
            bucket: "demo-bucket-123456789012".into(),
            change_prefix: "change_flags/".into(),
            reference_prefix: "reference/".into(),
            output_prefix: "demo-final-data/".into(),
            dead_letter_prefix: "dead-letter/".into(),
            stream: "SourceKinesisStream".into(),
            queue: "reference-data-changes".into(),
        }
    }
}

/// What was created.
#[derive(Clone, Debug)]
pub struct Provisioned {
    /// The table's stream ARN.
    pub table_stream_arn: String,
    /// The orders stream's ARN.
    pub stream_arn: String,
    /// Its shards.
    pub shards: Vec<String>,
    /// The queue's URL.
    pub queue_url: String,
    /// The queue's ARN.
    pub queue_arn: String,
}

/// Clients for every service the pipeline uses.
#[derive(Clone, Debug)]
pub struct Clients {
    /// DynamoDB.
    pub ddb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// S3 (path-style against the emulator).
    pub s3: aws_sdk_s3::Client,
    /// Kinesis.
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// Clients for `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ddb: aws_sdk_dynamodb::Client::new(sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            s3: aws_plumbing::s3_client(sdk),
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }
}

/// Creates the table (NEW_AND_OLD_IMAGES stream) with the five items, the bucket, the 4-shard
/// stream, the queue and the bucket's notification for the reference prefix.
pub async fn provision(c: &Clients, names: &Names) -> Result<Provisioned> {
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
    let created = c
        .ddb
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
    let table_stream_arn = created
        .table_description()
        .and_then(|d| d.latest_stream_arn())
        .context("the new table has no stream")?
        .to_owned();
    for (item, price, priority) in SEED_ITEMS {
        c.ddb
            .put_item()
            .table_name(&names.table)
            .item("item", AttributeValue::S(item.into()))
            .item("price", AttributeValue::N(price.into()))
            .item("priority", AttributeValue::S(priority.into()))
            .send()
            .await
            .with_context(|| format!("seeding {item}"))?;
    }
    c.s3.create_bucket()
        .bucket(&names.bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {}", names.bucket))?;

    c.kinesis
        .create_stream()
        .stream_name(&names.stream)
        .shard_count(4)
        .send()
        .await
        .with_context(|| format!("creating stream {}", names.stream))?;
    let described = c
        .kinesis
        .describe_stream_summary()
        .stream_name(&names.stream)
        .send()
        .await?;
    let stream_arn = described
        .stream_description_summary()
        .map(|d| d.stream_arn().to_owned())
        .context("stream summary")?;
    let shards = c
        .kinesis
        .list_shards()
        .stream_name(&names.stream)
        .send()
        .await?
        .shards()
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();

    let queue_url = c
        .sqs
        .create_queue()
        .queue_name(&names.queue)
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .send()
        .await
        .context("creating the queue")?
        .queue_url
        .context("queue url")?;
    let queue_arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("queue arn")?;
    c.s3.put_object()
        .bucket(&names.bucket)
        .key(format!("{}{REFERENCE_OBJECT}", names.reference_prefix))
        .body(REFERENCE_BODY.to_vec().into())
        .send()
        .await
        .context("putting the reference object")?;
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(&names.reference_prefix)
                        .build(),
                )
                .build(),
        )
        .build();
    c.s3.put_bucket_notification_configuration()
        .bucket(&names.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .events(Event::from("s3:ObjectRemoved:*"))
                        .filter(filter)
                        .build()?,
                )
                .build(),
        )
        .send()
        .await
        .context("configuring the bucket's notifications")?;
    Ok(Provisioned {
        table_stream_arn,
        stream_arn,
        shards,
        queue_url,
        queue_arn,
    })
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
