//! `TableReference`: reference data in a DynamoDB table.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata::{SystemClock, TableConfig, TableEnricher};

use crate::policies::{not_blank, Arg, ArgumentError, PolicyArgs};
use crate::reference::{reference_class, ReadSide};
use crate::runtime::sdk_config;
use crate::values::PyItem;

reference_class!(
    /// Reference data in a DynamoDB table, kept current from the change feed (and, for a first
    /// load, from the feed-compactor's snapshot when there is one).
    pub struct TableReference(TableEnricher<PyItem, String, DynamoDbTable, S3Feed>, PyItem);

    /// A reference to `table`, keyed by `key_attributes` (hash key first), looked up by the
    /// value of `lookup_attribute`, following the change feed in `feed_bucket` under
    /// `feed_prefix`. Nothing is read until the first `refresh()`. An argument left out takes
    /// the Rust crate's default (its `Policies::default()`).
    #[new]
    #[pyo3(signature = (
        table, key_attributes, lookup_attribute, feed_bucket, feed_prefix=Arg::Default,
        *, unmatched=Arg::Default, max_staleness_seconds=Arg::Default, max_age_seconds=Arg::Default,
        poll_interval_seconds=Arg::Default, write_window_seconds=Arg::Default,
        retention_days=Arg::Default, snapshot_prefix=Arg::Default,
        clock_margin_seconds=Arg::Default, endpoint_url=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        table: String,
        key_attributes: Vec<String>,
        lookup_attribute: String,
        feed_bucket: String,
        feed_prefix: Arg<String>,
        unmatched: Arg<String>,
        max_staleness_seconds: Arg<Option<f64>>,
        max_age_seconds: Arg<Option<f64>>,
        poll_interval_seconds: Arg<f64>,
        write_window_seconds: Arg<f64>,
        retention_days: Arg<u64>,
        snapshot_prefix: Arg<Option<String>>,
        clock_margin_seconds: Arg<f64>,
        endpoint_url: Option<String>,
    ) -> PyResult<Self> {
        not_blank("table", &table)?;
        not_blank("lookup_attribute", &lookup_attribute)?;
        if key_attributes.is_empty() || key_attributes.len() > 2 {
            return Err(ArgumentError::KeyAttributes(key_attributes).into());
        }
        for name in &key_attributes {
            not_blank("key_attributes", name)?;
        }
        stream_refdata_aws::validate_bucket("feed_bucket", &feed_bucket)
            .map_err(ArgumentError::from)?;
        let policies = PolicyArgs {
            feed_prefix,
            unmatched,
            max_staleness_seconds,
            max_age_seconds,
            poll_interval_seconds,
            write_window_seconds,
            retention_days,
            snapshot_prefix,
            clock_margin_seconds,
        }
        .into_policies()?;
        let keys: Vec<&str> = key_attributes.iter().map(String::as_str).collect();
        let decode = PyItem::decoder(lookup_attribute.clone());
        let config = TableConfig::decoded(table.clone(), &keys, decode, PyItem::lookup)
            .with_policies(policies);
        let sdk = sdk_config(py, endpoint_url);
        let enricher = TableEnricher::new(
            config,
            DynamoDbTable::new(aws_sdk_dynamodb::Client::new(&sdk), table),
            Some(S3Feed::new(
                stream_refdata_aws::s3_client(&sdk),
                feed_bucket,
            )),
            SystemClock,
        );
        Ok(TableReference {
            read: ReadSide::new(enricher.reader(), lookup_attribute),
            inner: tokio::sync::Mutex::new(enricher),
        })
    }
);
