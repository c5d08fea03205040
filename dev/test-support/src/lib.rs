//! Test support: the shared local emulator, the change-feed rigs ([`FeedRig`]: table, stream,
//! feed bucket, the real change-handler and a stream pump; [`FlagRig`]: the S3 path with the real
//! s3-event-handler), the sample events, fakes ([`MemoryStore`]), stream readers, and a
//! stand-in for the Lambda Runtime API that records what a function binary posts at start-up.
//!
//! Integration tests talk to a real AWS-API emulator (moto's server mode) on loopback through
//! the real AWS SDK. The README's test command starts one emulator for the whole run and sets
//! `AWS_ENDPOINT_URL`; when it is not set (a plain `cargo test`), [`emulator`] starts a private
//! one for the test binary, which stops when the binary exits. Each test makes its own
//! uniquely named buckets and tables, so tests share one emulator safely. Resources are made by
//! `local_emulator::provision`, the provisioning the local pipeline uses too (checked against
//! `infra/template.yaml`).
//!
//! This crate depends on both producers for its rigs; their own tests depend on it in turn (a
//! dev-dependency cycle Cargo allows: those tests link the producers' one library).

mod emulator;
mod fault_proxy;
mod http_fault_proxy;
mod kafka;
mod kinesis;
mod notified_bucket;
mod reference;
mod rig;
mod runtime_api;
mod sample_events;
mod serve;
mod streams;

pub use emulator::{emulator, sdk_config, unique_name};
pub use event_source_mappings::{dynamodb_stream_event, sqs_event};
pub use fault_proxy::FaultProxy;
pub use http_fault_proxy::{Fault, HttpFaultProxy, Rule};
pub use kafka::{kafka_bootstrap_servers, kafka_client, kafka_records, kafka_topic};
pub use kinesis::{create_stream, records_per_shard};
pub use notified_bucket::NotifiedBucket;
pub use reference::{priorities, ReferenceTable, ORIGINAL_ITEMS};
pub use rig::{
    change_files, feed_config, list_keys, read_object, through_proxy, FeedRig, FlagRig, FEED_PREFIX,
};
pub use runtime_api::{run_function, start_function, RecordedRequest, RuntimeApiStub, StartUp};
pub use sample_events::sample_event;
pub use serve::serve_http;
/// The in-memory S3 every crate's tests share (`stream_refdata_aws::testing`).
pub use stream_refdata_aws::testing::MemoryStore;
pub use streams::{read_stream_records, StreamPump};
