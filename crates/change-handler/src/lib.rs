//! The change-handler Lambda: a DynamoDB Stream in, change files in S3 out.
//!
//! It sits on the reference table's stream (any stream view type) and writes one change file
//! per invocation batch to the change feed, as `stream_refdata_protocol` defines it; consumers apply the
//! changes from the file without reading the table again (or re-read the keys, for `KEYS_ONLY`).
//!
//! - [`event`]: the pure part, a Lambda payload to the change file's content. One record that
//!   does not parse cannot fail the batch: it is passed on as an `opaque` entry.
//! - [`handler`]: writes the file through `feed_writer` (bounded write window W, pointer object,
//!   optional legacy marker) and answers with `batchItemFailures`.
//! - `main.rs`: configuration from the environment (a bad variable is the function's init error,
//!   through `stream_refdata_aws::init`), SDK clients from `stream_refdata_aws`, `lambda_runtime::run`.
//!
//! # Configuration
//! | variable | default | meaning |
//! |---|---|---|
//! | `CHANGE_BUCKET` | required | bucket of the change feed |
//! | `CHANGE_PREFIX` | `change_flags/` | key prefix of the change feed |
//! | `LEGACY_FLAG_KEY` | unset | also write this fixed marker (the original design's `change_flags/CHANGE_FLAG`) |
//! | `WRITE_WINDOW_SECS` | `20` | write window W; the function timeout must exceed it |
//!
//! # Failure reporting
//! The event source mapping must enable `ReportBatchItemFailures`. When the change file cannot
//! be written within `W - 5 s`, the handler reports the sequence number of `Records[0]`, so the
//! whole batch is retried and written again under a newer key. Records that can never be typed
//! are not reported: a retry cannot fix them, and they would block the shard.

pub mod event;
pub mod handler;

pub use event::{parse_event, Batch, EventError};
pub use handler::{deployed, deployed_with_clock, ChangeHandler, HandlerError, PRODUCER};
