//! `TableHistory`: a table as it was at any time of a window (as-of answers, the crate's
//! `stream_refdata::history`), read once from the change feed and its snapshots.

use std::sync::Arc;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyLookupError;
use pyo3::prelude::*;
use stream_refdata::history::{AsOf, History, HistoryBuilder, HistorySource};
use stream_refdata::sources::S3Feed;
use stream_refdata::Ambiguity;

use crate::policies::{not_blank, ArgumentError};
use crate::runtime::{block_on, sdk_config};
use crate::values::{PyItem, PyValue};

create_exception!(
    stream_refdata,
    NotAnswerable,
    PyLookupError,
    "The history cannot say what a key held at that time: before what it holds, changed without \
     saying to what, or refused (a gap, an unreadable file, a stream switch). The message says \
     which."
);

/// The table `table` as it was at any time from `from_time` on (seconds since the epoch), read
/// once from the change feed in `feed_bucket` (the latest feed snapshot written at or before
/// `from_time`, then every change file after it). `lookup(key, as_of)` answers what the item
/// with that lookup key was at `as_of`: the item, `None` when there was none, or
/// `NotAnswerable` with why. A record stamped within the same second as a change sees it. Without
/// a snapshot at or before `from_time` every answer is `NotAnswerable` (an item from before the
/// window would not be seen), unless `empty_at_start` says the table held nothing then (it was
/// created later).
#[pyclass(frozen, module = "stream_refdata")]
#[derive(Debug)]
pub struct TableHistory {
    history: History<PyItem, String>,
}

fn ms(seconds: f64) -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let ms = (seconds * 1000.0).round() as i64;
    ms
}

#[pymethods]
impl TableHistory {
    #[new]
    #[pyo3(signature = (
        table, key_attributes, lookup_attribute, feed_bucket, from_time,
        *, feed_prefix="change_flags/".to_owned(), snapshot_prefix="feed-snapshots/".to_owned(),
        daily_snapshot_prefix=Some("feed-snapshots-daily/".to_owned()), look_back_seconds=25.0, retention_days=7, empty_at_start=false, endpoint_url=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        table: String,
        key_attributes: Vec<String>,
        lookup_attribute: String,
        feed_bucket: String,
        from_time: f64,
        feed_prefix: String,
        snapshot_prefix: String,
        daily_snapshot_prefix: Option<String>,
        look_back_seconds: f64,
        retention_days: u64,
        empty_at_start: bool,
        endpoint_url: Option<String>,
    ) -> PyResult<Self> {
        not_blank("table", &table)?;
        not_blank("lookup_attribute", &lookup_attribute)?;
        if key_attributes.is_empty() || key_attributes.len() > 2 {
            return Err(ArgumentError::KeyAttributes(key_attributes).into());
        }
        stream_refdata_aws::validate_bucket("feed_bucket", &feed_bucket)
            .map_err(ArgumentError::from)?;
        if !look_back_seconds.is_finite() || look_back_seconds < 0.0 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "look_back_seconds must be a number of seconds, 0 or more (got {look_back_seconds})"
            )));
        }
        let keys: Vec<&str> = key_attributes.iter().map(String::as_str).collect();
        let mut builder = HistoryBuilder::new(
            &keys,
            PyItem::decoder(lookup_attribute),
            Arc::new(PyItem::lookup),
            Ambiguity::LowestKey,
            ms(from_time),
        );
        if empty_at_start {
            builder.empty_at_start();
        }
        let source = HistorySource {
            feed_prefix,
            snapshot_prefix,
            daily_prefix: daily_snapshot_prefix,
            table,
            look_back: Duration::from_secs_f64(look_back_seconds),
            retention: Some(Duration::from_secs(retention_days.saturating_mul(86_400))),
        };
        let sdk = sdk_config(py, endpoint_url);
        let feed = S3Feed::new(stream_refdata_aws::s3_client(&sdk), feed_bucket);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let history = block_on(py, builder.read(&feed, &source, ms(from_time), now))
            .map_err(|e| NotAnswerable::new_err(format!("the history could not be read: {e}")))?;
        Ok(TableHistory { history })
    }

    /// The item whose lookup key was `key` at `as_of` (seconds since the epoch), or `None` when
    /// there was none. Raises `NotAnswerable` (a `LookupError`) when the history cannot say.
    fn lookup(&self, py: Python<'_>, key: &str, as_of: f64) -> PyResult<Option<Py<PyAny>>> {
        match self.history.lookup_as_of(&key.to_owned(), ms(as_of)) {
            AsOf::Found(item) => Ok(Some(item.value().clone_ref(py))),
            AsOf::Missing => Ok(None),
            AsOf::Ambiguous(n) => Err(NotAnswerable::new_err(format!(
                "{n} items had the lookup key {key:?} then"
            ))),
            AsOf::BeforeHistory { starts_ms } => Err(NotAnswerable::new_err(format!(
                "{as_of} is before the history of this window (it starts at {})",
                starts_ms as f64 / 1000.0
            ))),
            AsOf::Unknown { since_ms } => Err(NotAnswerable::new_err(format!(
                "an item that may have the lookup key {key:?} changed at {} without saying to what (no image in the stream), and not since",
                since_ms as f64 / 1000.0
            ))),
            AsOf::Refused(why) => Err(NotAnswerable::new_err(format!("refused: {why}"))),
        }
    }

    /// Whether an answer for `as_of` is final: every change made at or before it was visible
    /// when the history was read.
    fn is_final(&self, as_of: f64) -> bool {
        self.history.is_final(ms(as_of))
    }

    /// Where the history starts (seconds since the epoch): the snapshot's position, or
    /// `from_time` without one.
    #[getter]
    fn starts_at(&self) -> f64 {
        self.history.starts_ms() as f64 / 1000.0
    }
}
