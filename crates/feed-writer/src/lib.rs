//! Writes change files to the S3 change feed, for every producer.
//!
//! Both producers (the DynamoDB-stream `change-handler` and the `s3-event-handler`) end a batch the
//! same way, so the rules of `docs/design.md` section 1.1 (keys and the write window) live
//! here once:
//!
//! 1. read the UTC time just before the PutObject and build the key from it
//!    ([`stream_refdata_protocol::ChangeKey`]); never from the records' time;
//! 2. await the PUT in the handler with a budget of `W - 5 s` on a monotonic clock (the SDK's
//!    operation timeout is set to the same budget, covering all its retry attempts); a success
//!    that arrives later is reported as a failure, so a file never becomes visible more than W
//!    after its key time except as a copy of a batch that is retried under a newer key;
//! 3. overwrite the pointer object `<prefix>_head` with the new key (cheap polling for
//!    consumers) and, if configured, the legacy fixed marker of the original design;
//! 4. count the batch as written only when every one of those writes succeeded.
//!
//! The S3 client sits behind [`stream_refdata_aws::ObjectStore`] and the time behind
//! [`stream_refdata_aws::Clock`], so the logic runs against fakes in unit tests and against the real SDK
//! ([`stream_refdata_aws::S3Store`], and the local emulator) in integration tests. Configuration helpers,
//! the SDK configuration and the S3 adapter are the workspace's shared plumbing, in
//! `aws-plumbing`; this crate holds only the writer.

mod config;
mod writer;

pub use config::FeedConfig;
pub use writer::{FeedWriter, WriteError, Written};
