//! Redrive: batches an event source mapping discarded are replayed, or the gap is announced.
//!
//! When a batch exhausts its retries, Lambda discards it and writes an invocation record to
//! the mapping's S3 on-failure destination (the whole payload included; infra/'s
//! `FailureBucket`). A discarded change-handler batch is reference changes no consumer will
//! see; a discarded orders batch is orders missing from the lake. A run
//! ([`Redriver::run`]):
//!
//! 1. lists the records under `aws/lambda/` and the markers under `redriven/`; a record with a
//!    `redriven` marker is skipped, so a second run is a no-op;
//! 2. replays each record's payload through the same handler code with the function's own
//!    configuration ([`Deployed`]: `change_handler::deployed`, `orders_consumer::deployed`),
//!    up to 3 times with back-off, and counts it done only when the handler succeeded with no
//!    `batchItemFailures`; then writes the marker. A crash between the two replays the batch
//!    again on the next run, which duplicates nothing: change files apply once per item (newest
//!    sequence number wins), and the orders output keeps its deterministic object names;
//! 3. a record that cannot be replayed (unreadable, no payload, or the handler keeps failing)
//!    stays in place and is reported; for the change-handler (and for a record too damaged to
//!    say whose it was) a `gap` change file is written, once, so every consumer reloads. An
//!    orders batch that cannot be replayed is reported as missing from the output.
//!
//! `--invoke-change-handler`/`--invoke-orders-consumer` replay through the deployed function
//! with the Lambda API instead ([`Deployed::invoking`]). `--dry-run` lists what would be done
//! and writes nothing. The binary runs as a command, or as
//! a Lambda function on the failure bucket's `ObjectCreated` notifications (each new record is
//! redriven as it lands).
//!
//! A replayed orders batch is enriched **as of each record's arrival** by default
//! ([`replay_config`]: `ENRICH_AS_OF=arrival` unless the function sets it, or `--live`): the
//! reference as it was when the orders arrived, from the change feed's history, so the replay
//! writes byte for byte what an as-of first attempt wrote (for a live function: what it would
//! have written at the records' arrival), whatever changed since. An order the history cannot
//! answer for (older than the history kept, a gap in its window) is dead-lettered with why where a
//! live redrive would have enriched it with today's row: `--live` for that. With `--live` (or
//! a function that holds orders or joins a second reference, which as-of cannot), it is enriched with the reference as it is at the redrive, like any late
//! record: if part of its output was written by the failed attempts and the reference changed
//! in between, an order can land in a different partition than that partial object. With
//! `--invoke-orders-consumer` the deployed function decides (its own `ENRICH_AS_OF`).

pub mod cli;
mod functions;
mod record;
mod redrive;
pub mod replay;

pub use functions::{
    replay_config, BucketError, Deployed, FailureBucket, Functions, ReplayError, S3FailureBucket,
    Unconfigured,
};
pub use record::{BatchInfo, FailureRecord, Function, RecordError};
pub use redrive::{
    Action, Marker, Outcome, Redriver, Report, Settings, DEFAULT_FAILURE_PREFIX,
    DEFAULT_MARKER_PREFIX,
};

#[cfg(test)]
mod tests;
