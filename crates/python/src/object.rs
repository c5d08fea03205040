//! `ObjectReference`: reference data kept as objects in S3.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use stream_refdata::sources::{S3Feed, S3Objects};
use stream_refdata::{ObjectConfig, ObjectEnricher, SystemClock};

use crate::policies::{not_blank, Arg, ArgumentError, PolicyArgs};
use crate::reference::{reference_class, ReadSide};
use crate::runtime::sdk_config;
use crate::values::PyRow;

reference_class!(
    /// Reference data kept as objects (CSV with a header, or JSON Lines; optionally gzip) under
    /// a prefix in S3, kept current from the change feed and the in-stream flags.
    pub struct ObjectReference(ObjectEnricher<PyRow, String, S3Objects, S3Feed>, PyRow);

    /// A reference to the objects under `prefix` in `bucket`, looked up by column
    /// `key_column`, following the change feed in `feed_bucket` under `feed_prefix`. An
    /// argument left out takes the Rust crate's default (its `Policies::default()`).
    #[new]
    #[pyo3(signature = (
        bucket, prefix, key_column, feed_bucket, feed_prefix=Arg::Default,
        *, unmatched=Arg::Default, max_staleness_seconds=Arg::Default, max_age_seconds=Arg::Default,
        poll_interval_seconds=Arg::Default, write_window_seconds=Arg::Default,
        retention_days=Arg::Default, clock_margin_seconds=Arg::Default, endpoint_url=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bucket: String,
        prefix: String,
        key_column: String,
        feed_bucket: String,
        feed_prefix: Arg<String>,
        unmatched: Arg<String>,
        max_staleness_seconds: Arg<Option<f64>>,
        max_age_seconds: Arg<Option<f64>>,
        poll_interval_seconds: Arg<f64>,
        write_window_seconds: Arg<f64>,
        retention_days: Arg<u64>,
        clock_margin_seconds: Arg<f64>,
        endpoint_url: Option<String>,
    ) -> PyResult<Self> {
        not_blank("key_column", &key_column)?;
        for (what, b) in [("bucket", &bucket), ("feed_bucket", &feed_bucket)] {
            stream_refdata_aws::validate_bucket(what, b).map_err(ArgumentError::from)?;
        }
        let policies = PolicyArgs {
            feed_prefix,
            unmatched,
            max_staleness_seconds,
            max_age_seconds,
            poll_interval_seconds,
            write_window_seconds,
            retention_days,
            // Feed snapshots are of tables only: none is looked for.
            snapshot_prefix: Arg::Given(None),
            clock_margin_seconds,
        }
        .into_policies()?;
        let lookup_column = key_column.clone();
        let config = ObjectConfig::new(bucket.clone(), prefix, move |r: &PyRow| {
            r.lookup(&lookup_column)
        })
        // An object without the key column is rejected by name, not loaded without keys.
        .with_key_column(key_column.clone())
        .with_policies(policies);
        let sdk = sdk_config(py, endpoint_url);
        let s3 = stream_refdata_aws::s3_client(&sdk);
        let enricher = ObjectEnricher::new(
            config,
            S3Objects::new(s3.clone(), bucket),
            Some(S3Feed::new(s3, feed_bucket)),
            SystemClock,
        );
        Ok(ObjectReference {
            read: ReadSide::new(enricher.reader(), key_column),
            inner: tokio::sync::Mutex::new(enricher),
        })
    }
);
