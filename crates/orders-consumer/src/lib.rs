//! The reference consumer: the Rust counterpart of the original Glue streaming job.
//!
//! A Kinesis-triggered Lambda (the event source mapping does sharding, checkpoints and
//! scale-out) that decodes orders `{dish, cost, customer_id}`, enriches them with
//! `ProductPriority` through the `enrichment` crate (kept warm across invocations; flags are
//! handled at their position), and writes them to S3 as **JSON Lines** under
//! `OUTPUT_PREFIX/item=<item>/priority=<priority>/`, the original's partitioning.
//!
//! - Object names are deterministic per batch (partition, shard, first sequence number): a
//!   retried batch overwrites its own objects. Each line carries shard and sequence number.
//! - Records that are not orders, and orders without a reference item (with the default
//!   `UNMATCHED=dead-letter`), go to `DEAD_LETTER_PREFIX` with the reason. Nothing is dropped
//!   silently: `records = enriched + passed + dead-lettered + dropped + invalid + flags`.
//! - If an output object cannot be written, the batch's first record is reported in
//!   `batchItemFailures` (run the mapping without bisect-on-error).
//!
//! JSON Lines keeps each batch one streaming write with no schema to agree on; Parquet would
//! need a columnar writer (the `parquet`/`arrow` crates), a schema, and batching many records
//! per file to be worth it (small Parquet files per micro-batch are worse than JSON Lines).

// Public modules only where a user names an item by its module path: the catalog's client
// (`catalog::GlueCatalog`, for `OrdersConsumer::with_catalog`), the metric line
// (`handler::embedded_metrics`), the classification of a record (`orders::classify`) and what a
// batch wrote (`output::BatchOutput`, a `BatchSummary`'s output). Each shows only those items.
pub mod catalog;
mod config;
mod deploy;
pub mod handler;
mod hold;
pub mod orders;
pub mod output;
mod partition;

pub use config::{AsOfSettings, Config, Recent, ReferenceObjects};
pub use deploy::{deployed, DeployedConsumer};
pub use handler::{
    BatchSummary, HandlerError, Invocation, KafkaBatchItemFailure, KafkaEventError,
    KafkaEventResponse, KafkaInvocation, KafkaItemIdentifier, KinesisInvocation, OrdersConsumer,
    Response,
};
pub use hold::{HoldCounts, HoldSettings};

/// The function's environment for its allocator (mimalloc), set by infra/ and by the local
/// runs that measure it: freed memory is kept in the process instead of being returned to the
/// kernel after a delay and faulted in (zeroed) again by the next batch. A Lambda function's
/// memory is reserved for it anyway; the process never holds more than its peak.
pub const ALLOCATOR_ENVIRONMENT: &[(&str, &str)] = &[("MIMALLOC_PURGE_DELAY", "-1")];
