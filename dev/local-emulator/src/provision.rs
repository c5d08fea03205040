//! What `infra/template.yaml` declares, created in the emulator: the one provisioning code of
//! the workspace. The local pipeline's demo ([`provision`]: the whole stack) and the tests
//! (through `test-support`: a table, a queue-notified bucket, a stream each, uniquely named) both
//! use these functions, and `tests/template.rs` of this crate parses the template and checks
//! that what they create matches it (table name, key schema, attribute types, stream view type,
//! shard count, prefixes, notification events, the queue's redrive, the event source mappings'
//! settings), so neither side can change alone.
//!
//! Deliberate differences from the template, each for the local run:
//! - one bucket (the original demo's `demo-bucket-<account id>`) holds the reference objects, the
//!   change feed and the output, under the template's prefixes; the template has a bucket each;
//! - the reference queue's visibility timeout is [`LOCAL_VISIBILITY_TIMEOUT_SECS`] (2 s) instead
//!   of the template's 360 s, so a reported message comes back while the demo runs;
//! - the on-failure destination is a bucket the caller names (the demo's one bucket; the
//!   template has a failure bucket of its own), written by `event-source-mappings`'s `S3Destination`;
//! - resources are unencrypted, without policies, alarms or log groups (the emulator has no use
//!   for them); `cfn-lint` checks those in the template.

use std::error::Error as StdError;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use event_source_mappings::MappingConfig;

/// The reference table's name (the template's `TableName` default).
pub const TABLE_NAME: &str = "ProductPriority";

/// One key attribute of the reference table, as the template's `KeySchema` and
/// `AttributeDefinitions` declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAttribute {
    /// The attribute's name.
    pub name: &'static str,
    /// Its type: `S` or `N`.
    pub attribute_type: &'static str,
    /// `HASH` or `RANGE`.
    pub key_type: &'static str,
}

/// The reference table's key: `item` (S, hash) and `price` (N, range).
pub const KEY_SCHEMA: [KeyAttribute; 2] = [
    KeyAttribute {
        name: "item",
        attribute_type: "S",
        key_type: "HASH",
    },
    KeyAttribute {
        name: "price",
        attribute_type: "N",
        key_type: "RANGE",
    },
];

/// The table stream's view type in the template (tests also make `KEYS_ONLY` streams).
pub const STREAM_VIEW_TYPE: &str = "NEW_AND_OLD_IMAGES";

/// Shards of the orders stream (the template's `ShardCount` default).
pub const SHARD_COUNT: i32 = 4;

/// The change feed's prefix (`ChangePrefix`).
pub const CHANGE_PREFIX: &str = "change_flags/";
/// The reference objects' prefix (`ReferencePrefix`).
pub const REFERENCE_PREFIX: &str = "reference/";
/// Enriched orders (`OutputPrefix`).
pub const OUTPUT_PREFIX: &str = "demo-final-data/";
/// Orders that could not be processed or matched (`DeadLetterPrefix`).
pub const DEAD_LETTER_PREFIX: &str = "dead-letter/";

/// The S3 events that reach the reference queue: created, removed and lifecycle-expired
/// objects (lifecycle deletes send no `ObjectRemoved` event).
pub const NOTIFICATION_EVENTS: [&str; 3] = [
    "s3:ObjectCreated:*",
    "s3:ObjectRemoved:*",
    "s3:LifecycleExpiration:*",
];

/// Receives of a message before the reference queue moves it to its dead-letter queue
/// (`maxReceiveCount` of the template's redrive policy).
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// How long the reference queue and its dead-letter queue keep a message (14 days).
pub const MESSAGE_RETENTION_SECS: u32 = 1_209_600;

/// The local reference queue's visibility timeout: a reported message comes back after 2 s
/// (the template's 360 s is 6× the function timeout, as AWS advises for SQS mappings).
pub const LOCAL_VISIBILITY_TIMEOUT_SECS: u32 = 2;

/// The original's five items: item and priority, each with price 100.
pub const ORIGINAL_ITEMS: [(&str, &str); 5] = [
    ("salad", "high"),
    ("pizza", "low"),
    ("burger", "medium"),
    ("pasta", "very high"),
    ("ice-cream", "very very high"),
];

/// The price of every item the walkthrough writes (the range key).
pub const PRICE: &str = "100";

/// The reference object in S3 (dish categories), put before notifications are configured.
pub const REFERENCE_OBJECT: &str = "menu-categories.csv";

/// The reference object's first version.
pub const REFERENCE_BODY: &[u8] = b"item,category\nburger,mains\npizza,mains\nsalad,starters\n";

/// A provisioning step failed; the message carries the SDK's whole error chain.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed: {message}")]
pub struct ProvisionError {
    /// What was being done, e.g. `creating table ProductPriority`.
    pub step: String,
    /// What the emulator said.
    pub message: String,
}

fn failed<E: StdError>(step: impl Into<String>) -> impl FnOnce(E) -> ProvisionError {
    let step = step.into();
    move |e| ProvisionError {
        step,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

fn missing(step: &str, what: &str) -> ProvisionError {
    ProvisionError {
        step: step.to_owned(),
        message: format!("the answer has no {what}"),
    }
}

/// Clients for every service the pipeline uses.
#[derive(Clone, Debug)]
pub struct Clients {
    /// DynamoDB.
    pub ddb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// S3, path-style (bucket host names do not resolve on the emulator's loopback endpoint).
    pub s3: aws_sdk_s3::Client,
    /// Kinesis.
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// Clients for `sdk` (the emulator's configuration).
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        Clients {
            ddb: aws_sdk_dynamodb::Client::new(sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }
}

/// Creates the reference table `name` ([`KEY_SCHEMA`], on-demand) with a stream of `view`
/// type and returns the stream's ARN.
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn create_reference_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    view: StreamViewType,
) -> Result<String, ProvisionError> {
    let step = format!("creating table {name}");
    let mut request = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view)
                .build()
                .map_err(failed(&step))?,
        );
    for key in KEY_SCHEMA {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key.name)
                    .attribute_type(ScalarAttributeType::from(key.attribute_type))
                    .build()
                    .map_err(failed(&step))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key.name)
                    .key_type(KeyType::from(key.key_type))
                    .build()
                    .map_err(failed(&step))?,
            );
    }
    let created = request.send().await.map_err(failed(&step))?;
    created
        .table_description()
        .and_then(|d| d.latest_stream_arn())
        .map(str::to_owned)
        .ok_or_else(|| missing(&step, "stream ARN"))
}

/// Puts the item (`item`, price 100, `priority`).
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn put_item(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    item: &str,
    priority: &str,
) -> Result<(), ProvisionError> {
    ddb.put_item()
        .table_name(table)
        .item("item", AttributeValue::S(item.into()))
        .item("price", AttributeValue::N(PRICE.into()))
        .item("priority", AttributeValue::S(priority.into()))
        .send()
        .await
        .map_err(failed(format!("putting {item} into {table}")))?;
    Ok(())
}

/// The original walkthrough's update: `SET priority = :s` on (`item`, price 100).
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn set_priority(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    item: &str,
    priority: &str,
) -> Result<(), ProvisionError> {
    ddb.update_item()
        .table_name(table)
        .key("item", AttributeValue::S(item.into()))
        .key("price", AttributeValue::N(PRICE.into()))
        .update_expression("SET priority = :s")
        .expression_attribute_values(":s", AttributeValue::S(priority.into()))
        .send()
        .await
        .map_err(failed(format!("updating {item} in {table}")))?;
    Ok(())
}

/// Creates the bucket `name`.
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), ProvisionError> {
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .map_err(failed(format!("creating bucket {name}")))?;
    Ok(())
}

/// Turns on versioning for `name`, as infra/ does for the reference bucket: S3 may merge two
/// near-simultaneous writes of one key into one notification on an unversioned bucket, and an
/// undelete (removing a delete marker) needs versions.
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn enable_versioning(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), ProvisionError> {
    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(failed(format!("enabling versioning on {name}")))?;
    Ok(())
}

/// A Kinesis stream that was created.
#[derive(Clone, Debug)]
pub struct OrdersStream {
    /// Its ARN.
    pub arn: String,
    /// Its shard ids.
    pub shards: Vec<String>,
}

/// Creates the provisioned Kinesis stream `name` with `shards` shards.
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn create_orders_stream(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<OrdersStream, ProvisionError> {
    let step = format!("creating stream {name}");
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .map_err(failed(&step))?;
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .map_err(failed(&step))?
        .stream_description_summary()
        .map(|d| d.stream_arn().to_owned())
        .ok_or_else(|| missing(&step, "stream summary"))?;
    let shards = kinesis
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .map_err(failed(&step))?
        .shards()
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    Ok(OrdersStream { arn, shards })
}

/// How the reference queue is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QueueSettings {
    /// Its visibility timeout; `None` keeps the service's default (30 s).
    pub visibility_timeout_secs: Option<u32>,
    /// A dead-letter queue (`<name>-dlq`) and a redrive policy with this `maxReceiveCount`;
    /// `None` for none (tests that redeliver a message many times on purpose).
    pub max_receive_count: Option<u32>,
}

impl QueueSettings {
    /// The local pipeline's queue: the template's redrive ([`MAX_RECEIVE_COUNT`]) and
    /// retention, a visibility timeout of [`LOCAL_VISIBILITY_TIMEOUT_SECS`].
    pub const LOCAL_PIPELINE: QueueSettings = QueueSettings {
        visibility_timeout_secs: Some(LOCAL_VISIBILITY_TIMEOUT_SECS),
        max_receive_count: Some(MAX_RECEIVE_COUNT),
    };
}

/// A queue that was created.
#[derive(Clone, Debug)]
pub struct Queue {
    /// Its URL.
    pub url: String,
    /// Its ARN.
    pub arn: String,
    /// Its dead-letter queue's URL, if it has one.
    pub dead_letter_url: Option<String>,
}

async fn queue_arn(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    step: &str,
) -> Result<String, ProvisionError> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(failed(step))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| missing(step, "queue ARN"))
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<Queue, ProvisionError> {
    let step = format!("creating queue {name}");
    let mut request = sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute, value);
    }
    let url = request
        .send()
        .await
        .map_err(failed(&step))?
        .queue_url
        .ok_or_else(|| missing(&step, "queue URL"))?;
    let arn = queue_arn(sqs, &url, &step).await?;
    Ok(Queue {
        url,
        arn,
        dead_letter_url: None,
    })
}

/// Creates the standard queue `name` that receives the reference prefix's notifications, with
/// its dead-letter queue if `settings` ask for one.
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn create_reference_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    settings: QueueSettings,
) -> Result<Queue, ProvisionError> {
    let retention = (
        QueueAttributeName::MessageRetentionPeriod,
        MESSAGE_RETENTION_SECS.to_string(),
    );
    let mut attributes = vec![retention.clone()];
    let mut dead_letter_url = None;
    if let Some(max_receive_count) = settings.max_receive_count {
        let dlq = create_queue(sqs, &format!("{name}-dlq"), vec![retention]).await?;
        attributes.push((
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({
                "deadLetterTargetArn": dlq.arn,
                "maxReceiveCount": max_receive_count,
            })
            .to_string(),
        ));
        dead_letter_url = Some(dlq.url);
    }
    if let Some(secs) = settings.visibility_timeout_secs {
        attributes.push((QueueAttributeName::VisibilityTimeout, secs.to_string()));
    }
    let queue = create_queue(sqs, name, attributes).await?;
    Ok(Queue {
        dead_letter_url,
        ..queue
    })
}

/// Sends `bucket`'s [`NOTIFICATION_EVENTS`] for keys under `prefix` to the queue `queue_arn`.
///
/// # Errors
/// [`ProvisionError`] if the emulator refuses it.
pub async fn notify_queue(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    queue_arn: &str,
) -> Result<(), ProvisionError> {
    let step = format!("configuring the notifications of bucket {bucket}");
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(prefix)
                        .build(),
                )
                .build(),
        )
        .build();
    let mut queue = QueueConfiguration::builder()
        .queue_arn(queue_arn)
        .filter(filter);
    for event in NOTIFICATION_EVENTS {
        queue = queue.events(Event::from(event));
    }
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue.build().map_err(failed(&step))?)
                .build(),
        )
        .send()
        .await
        .map_err(failed(&step))?;
    Ok(())
}

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
            table: TABLE_NAME.into(),
            bucket: "demo-bucket-123456789012".into(),
            change_prefix: CHANGE_PREFIX.into(),
            reference_prefix: REFERENCE_PREFIX.into(),
            output_prefix: OUTPUT_PREFIX.into(),
            dead_letter_prefix: DEAD_LETTER_PREFIX.into(),
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
    /// Its dead-letter queue's URL.
    pub dead_letter_queue_url: Option<String>,
}

/// Creates the whole stack for the local pipeline: the table ([`STREAM_VIEW_TYPE`] stream)
/// with the original's five items, the bucket with the reference object, the
/// [`SHARD_COUNT`]-shard orders stream, the reference queue ([`QueueSettings::LOCAL_PIPELINE`])
/// and the bucket's notifications for the reference prefix.
///
/// # Errors
/// [`ProvisionError`] naming the step that failed.
pub async fn provision(c: &Clients, names: &Names) -> Result<Provisioned, ProvisionError> {
    let table_stream_arn =
        create_reference_table(&c.ddb, &names.table, StreamViewType::from(STREAM_VIEW_TYPE))
            .await?;
    for (item, priority) in ORIGINAL_ITEMS {
        put_item(&c.ddb, &names.table, item, priority).await?;
    }
    create_bucket(&c.s3, &names.bucket).await?;
    // The local pipeline's one bucket also holds the reference objects: versioned, as infra/'s
    // reference bucket. (The emulator then sends no notification for a delete, where S3 sends
    // ObjectRemoved:DeleteMarkerCreated; the demo only overwrites its reference object.)
    enable_versioning(&c.s3, &names.bucket).await?;
    let stream = create_orders_stream(&c.kinesis, &names.stream, SHARD_COUNT).await?;
    let queue = create_reference_queue(&c.sqs, &names.queue, QueueSettings::LOCAL_PIPELINE).await?;
    c.s3.put_object()
        .bucket(&names.bucket)
        .key(format!("{}{REFERENCE_OBJECT}", names.reference_prefix))
        .body(REFERENCE_BODY.to_vec().into())
        .send()
        .await
        .map_err(failed("putting the reference object"))?;
    notify_queue(&c.s3, &names.bucket, &names.reference_prefix, &queue.arn).await?;
    Ok(Provisioned {
        table_stream_arn,
        stream_arn: stream.arn,
        shards: stream.shards,
        queue_url: queue.url,
        queue_arn: queue.arn,
        dead_letter_queue_url: queue.dead_letter_url,
    })
}

/// Retries of a failed orders batch before the consumer's mapping discards it to its
/// on-failure destination (the template's `ConsumerMaxRetries` default).
pub const CONSUMER_MAX_RETRIES: u32 = 100;

/// The event source mappings' settings as the template declares them, for the local
/// emulation (`event-source-mappings`); the poll intervals are Lambda's rates (design notes, section 7).
#[derive(Clone, Debug)]
pub struct Mappings {
    /// The table stream → change-handler (`ChangeHandlerBatchSize`, `TRIM_HORIZON`; 4 polls a
    /// second).
    pub change_handler: MappingConfig,
    /// The reference queue → s3-event-handler (`S3EventHandlerBatchSize`).
    pub s3_event_handler: MappingConfig,
    /// Each orders shard → orders consumer (`ConsumerBatchSize`, `TRIM_HORIZON`; 1 poll a
    /// second).
    pub orders_consumer: MappingConfig,
}

/// The event source mappings of the template, for the emulation.
pub fn mappings() -> Mappings {
    Mappings {
        change_handler: MappingConfig {
            batch_size: 100,
            poll_interval: std::time::Duration::from_millis(250),
            trim_horizon: true,
            // `MaximumRetryAttempts: -1`: it fails only on transient errors.
            maximum_retry_attempts: None,
        },
        s3_event_handler: MappingConfig {
            batch_size: 10,
            poll_interval: std::time::Duration::from_millis(250),
            trim_horizon: true,
            // An SQS mapping has no retry count: the queue's redrive policy moves a message.
            maximum_retry_attempts: None,
        },
        orders_consumer: MappingConfig {
            batch_size: 500,
            poll_interval: std::time::Duration::from_secs(1),
            trim_horizon: true,
            // `ConsumerMaxRetries`, then the batch goes to the on-failure destination.
            maximum_retry_attempts: Some(CONSUMER_MAX_RETRIES),
        },
    }
}
