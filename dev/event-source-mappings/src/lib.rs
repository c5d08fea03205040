//! Event source mapping emulation for the local pipeline and tests.
//!
//! On AWS, Lambda's event source mappings poll the streams, build the events, invoke the
//! functions and retry what failed. Locally this crate does the same, through the real SDK
//! against the emulator, so the functions run in-process with the payloads they receive in
//! production:
//! - [`dynamodb_stream_event`]: Streams API records to the Lambda event (`eventSourceARN` added,
//!   timestamps in epoch seconds);
//! - [`DynamoDbStreamMapping`]: polls every shard of a stream at Lambda's rate (4 times a
//!   second), invokes a [`Handler`], and on a reported failure retries from the first failed
//!   record (`ReportBatchItemFailures` semantics), or the whole batch on an invocation error;
//!   [`KinesisShardMapping`] does the same for one Kinesis shard (both are a [`StreamMapping`]),
//!   [`SqsMapping`] for a queue; [`KafkaPartitionMapping`] for one partition of a Kafka topic
//!   (MSK's or a self-managed cluster's events, batched by size and window, retried from the
//!   offset a partial batch response names);
//! - [`MappingConfig::maximum_retry_attempts`] and [`S3Destination`]: a batch that exhausts its
//!   retries is discarded and, with a destination, recorded in S3 as Lambda records it (the
//!   invocation record with the whole payload, under `aws/lambda/<ESM-UUID>/<shard>/…`);
//! - [`normalize_s3_notification`], [`sqs_event`]: S3 notifications through SQS, with the
//!   fields the emulator leaves out filled in as AWS documents them.

mod destination;
mod dynamodb;
mod kafka;
mod kinesis;
mod mapping;
mod s3;
mod streams;

pub use destination::{BatchInfo, DiscardedBatch, S3Destination, StreamKind};
pub use dynamodb::{dynamodb_stream_event, DynamoDbStream, DynamoDbStreamMapping};
pub use kafka::{
    kafka_event, kafka_failures, KafkaEventSource, KafkaPartition, KafkaPartitionMapping,
    KAFKA_DEFAULT_BATCHING_WINDOW,
};
pub use kinesis::kinesis_event;
pub use mapping::{Handler, Invocation, MappingConfig, MappingError, MappingStats, StreamMapping};
pub use s3::{normalize_s3_notification, sqs_event};
pub use streams::{KinesisShard, KinesisShardMapping, SqsMapping};
