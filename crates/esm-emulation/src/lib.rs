//! Event source mapping emulation: Lambda events built from SDK records exactly as AWS builds
//! them, so functions can be invoked in-process by the local pipeline and by tests with the
//! payloads they receive in production.

mod dynamodb;

pub use dynamodb::dynamodb_stream_event;
