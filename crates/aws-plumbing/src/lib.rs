//! The plumbing every function of the workspace shares, in a crate of its own so that a consumer
//! never needs a producer's crate to read its configuration or talk to S3 (as `lambda-runtime`
//! and `lambda-extension` share `lambda-runtime-api-client` and never each other):
//!
//! - [`required_var`], [`optional_var`], [`validate_bucket`] and [`ConfigError`]: configuration
//!   from the environment, with errors that name the variable;
//! - [`sdk_config`] (honours `AWS_ENDPOINT_URL`, an operation timeout over all attempts) and
//!   [`s3_client`] (path-style addressing when an endpoint URL is set);
//! - the [`ObjectStore`] port (put an object) and the workspace's one S3 adapter, [`S3Store`],
//!   whose inherent methods also read ([`S3Store::get`], [`S3Store::list_page`],
//!   [`S3Store::get_if_none_match`]) for the crates that follow the change feed;
//! - [`Clock`] and [`SystemClock`]: the UTC time, behind a seam so tests can move it;
//! - [`init`]: an error at start-up ends the process with a sentence in the log and, on Lambda,
//!   the function's init error (`POST /2018-06-01/runtime/init/error`), instead of a debug dump;
//! - `lambda` (feature `lambda`): a function's handler served on the Lambda runtime, the loop
//!   the functions' mains share;
//! - `testing` (feature `testing`): `MemoryStore`, the in-memory S3 that every crate's tests
//!   share.
//!
//! It knows nothing of the change feed's format: that is `stream-refdata-protocol`; writing it
//! is `feed-writer`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod config;
pub mod init;
#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;
mod s3;
mod s3_key;
mod sdk;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod vars;

/// The SDK configuration [`sdk_config`] loads, for crates that build their clients from it.
pub use aws_config::SdkConfig;
pub use clock::{Clock, MeasureError, OffsetClock, SharedClock, SystemClock};
pub use config::{
    key_attributes_var, number_var, optional_var, required_var, validate_bucket, ConfigError,
};
pub use s3::{
    Bytes, Conditional, ListPage, ObjectBody, ObjectKeeper, ObjectStore, S3Error, S3Store,
    StoreError,
};
pub use s3_key::{decode_key, KeyDecodeError};
pub use sdk::{s3_client, sdk_config};
