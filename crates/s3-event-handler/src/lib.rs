//! The s3-event-handler Lambda: reference data kept as objects in S3.
//!
//! When a reference object under `REFERENCE_PREFIX` changes, S3 sends a notification (through
//! an SQS queue, the recommended wiring, or directly). For each change the handler
//! 1. writes an S3-kind **change file** to the change feed (the same feed as the DynamoDB
//!    path), so consumers that poll the feed see it, and then
//! 2. puts a **change flag** (`stream_refdata_protocol::ChangeFlag`) on **every open shard** of the data
//!    stream, so a consumer refreshes at exactly that point of its shard — the original put one
//!    record with a fixed partition key, which reached one shard of four.
//!
//! - [`event`]: the pure part: payload shapes, strict key decoding, event names.
//! - [`flags`]: every-shard delivery with per-entry retries and resharding.
//! - [`handler`]: ties them together; reports failed SQS messages in `batchItemFailures`.
//!
//! Duplicate notifications (S3 delivers at least once) cost one extra refresh and nothing else.
//!
//! # Configuration
//! | variable | default | meaning |
//! |---|---|---|
//! | `FLAG_STREAM` | required | Kinesis stream name or ARN for the flags |
//! | `REFERENCE_PREFIX` | required | objects under it are reference data; others are ignored and counted |
//! | `REFERENCE_BUCKET` | unset | only this bucket's objects are reference data |
//! | `CHANGE_BUCKET` | required | bucket of the change feed |
//! | `CHANGE_PREFIX` | `change_flags/` | prefix of the change feed; must not overlap `REFERENCE_PREFIX` in the same bucket |
//! | `LEGACY_FLAG_PAYLOAD` | unset | JSON also put on every shard, e.g. `{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}` |
//! | `WRITE_WINDOW_SECS` | `20` | write window W of the change feed |

pub mod config;
mod deploy;
pub mod event;
pub mod flags;
pub mod handler;
pub mod kafka;

pub use config::{Config, FlagTarget};
pub use deploy::{deployed, deployed_with_clock, DeployedFlags, DeployedHandler};
pub use flags::{FlagSender, FlagStream, KinesisStream};
pub use handler::{HandlerError, S3EventHandler, PRODUCER};
pub use kafka::{Flags, KafkaAuth, KafkaFlags, KafkaTarget, RsKafkaTopic, TopicWriter};
