//! `stream_refdata`: the enrichment lifecycle from Python.
//!
//! A thin PyO3 layer over the `enrichment` crate, so a Glue streaming job, a Python Lambda or any
//! Python consumer follows the same change feed with the same guarantees as a Rust consumer: the
//! lifecycle (load, feed snapshots, follow, apply, staleness, maximum age, flags at their
//! position, unmatched policies) is the crate's, not re-implemented here.
//!
//! - Items come back as plain Python values, converted once when they are loaded or changed (a
//!   lookup returns the same object, not a new conversion): the mapping of boto3's
//!   `TypeDeserializer` (`N` → `decimal.Decimal`, `S` → `str`, `BOOL` → `bool`, `NULL` → `None`,
//!   `M` → `dict`, `L` → `list`, `SS`/`NS` → `set` of `str`/`Decimal`), except `B`/`BS`, which
//!   are `bytes` (boto3 wraps them in its own `Binary` class, which this package does not import).
//! - AWS I/O runs on the package's own Tokio runtime with the GIL released; lookups are lock-free
//!   and safe from several threads.
//! - Bad arguments raise `ValueError` with the Rust crate's messages; AWS failures never raise
//!   (the last good data keeps serving, and the refresh report's `error` carries the message).
#![allow(unreachable_pub)] // the #[pyclass] types are the module's public API

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use change_protocol::{AttributeValue, Item};
use enrichment::sources::{DynamoDbTable, S3Feed, S3Objects};
use enrichment::{
    Classified, FeedSettings, MetricsSnapshot, ObjectConfig, ObjectEnricher, Outcome, Reader,
    RefreshReport, SystemClock, TableConfig, TableEnricher, Unmatched, UnmatchedReason,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PySet, PyTuple};

/// The package's runtime for AWS I/O (two workers: the calls are few and I/O-bound).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stream-refdata")
            .enable_all()
            .build()
            .expect("the stream-refdata runtime starts")
    })
}

/// A reference item: the Python value, and its lookup key (computed once, on the Rust side).
#[derive(Debug)]
pub struct PyItem {
    lookup: Option<String>,
    value: Py<PyAny>,
}

fn decimal_class(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static DECIMAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    DECIMAL
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("decimal")?.getattr("Decimal")?.unbind())
        })
        .map(|d| d.bind(py))
}

/// An attribute value as boto3's `TypeDeserializer` gives it (but `bytes` for binary).
fn to_python<'py>(py: Python<'py>, value: &AttributeValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        AttributeValue::S(s) => s.into_pyobject(py)?.into_any(),
        AttributeValue::N(n) => decimal_class(py)?.call1((n.as_str(),))?,
        AttributeValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        AttributeValue::Null(_) => py.None().into_bound(py),
        AttributeValue::B(b) => PyBytes::new(py, b).into_any(),
        AttributeValue::M(m) => {
            let d = PyDict::new(py);
            for (k, v) in m {
                d.set_item(k, to_python(py, v)?)?;
            }
            d.into_any()
        }
        AttributeValue::L(l) => {
            let items = l
                .iter()
                .map(|v| to_python(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        AttributeValue::Ss(s) => PySet::new(py, s)?.into_any(),
        AttributeValue::Ns(n) => {
            let class = decimal_class(py)?;
            let items = n
                .iter()
                .map(|x| class.call1((x.as_str(),)))
                .collect::<PyResult<Vec<_>>>()?;
            PySet::new(py, items)?.into_any()
        }
        AttributeValue::Bs(b) => {
            let items: Vec<_> = b.iter().map(|x| PyBytes::new(py, x)).collect();
            PySet::new(py, items)?.into_any()
        }
    })
}

fn item_to_python<'py>(py: Python<'py>, item: &Item) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in item.iter() {
        d.set_item(k, to_python(py, v)?)?;
    }
    Ok(d)
}

/// The lookup key of an item: its `attribute` as text (a string, or a number's digits).
fn lookup_of(item: &Item, attribute: &str) -> Option<String> {
    match item.get(attribute)? {
        AttributeValue::S(s) | AttributeValue::N(s) => Some(s.clone()),
        _ => None,
    }
}

fn sdk_config(endpoint_url: Option<String>) -> aws_config::SdkConfig {
    let sdk = runtime().block_on(aws_plumbing::sdk_config(None));
    match endpoint_url {
        Some(url) => sdk.into_builder().endpoint_url(url).build(),
        None => sdk,
    }
}

fn secs(what: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("{what}={s} is not a duration in seconds"))
            })
        })
        .transpose()
}

fn report_to_python<'py>(py: Python<'py>, r: &RefreshReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "full_reload",
        r.full_reload.as_ref().map(ToString::to_string),
    )?;
    d.set_item("files", r.files)?;
    d.set_item("applied", r.applied)?;
    d.set_item("reread", r.reread)?;
    d.set_item("error", r.error.clone())?;
    d.set_item("reload_error", r.reload_error.clone())?;
    d.set_item("problems", r.problems.clone())?;
    d.set_item("snapshot", r.snapshot.clone())?;
    d.set_item("snapshot_refused", r.snapshot_refused.clone())?;
    Ok(d)
}

fn metrics_to_python<'py>(py: Python<'py>, m: &MetricsSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in m.counters() {
        d.set_item(name, value)?;
    }
    d.set_item("staleness_seconds", m.staleness.map(|s| s.as_secs_f64()))?;
    Ok(d)
}

/// Why a record was not enriched, with its lookup key.
fn reason_text(reason: &UnmatchedReason, key: Option<&Classified<String>>) -> String {
    match key {
        Some(Classified::Data(k)) => format!("{reason} for key {k:?}"),
        _ => reason.to_string(),
    }
}

/// What the two reference kinds share: the batch walk and the read side.
macro_rules! reference_class {
    ($name:ident, $($constructor:tt)*) => {
        #[pymethods]
        impl $name {
            $($constructor)*

            /// Brings the data up to date (a full load the first time, then the change feed);
            /// never raises for AWS errors: the last good data keeps serving and the report's
            /// `error` says why. Returns what it did, as a dict.
            fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let report = py.detach(|| {
                    runtime().block_on(async { self.inner.lock().await.refresh().await })
                });
                report_to_python(py, &report)
            }

            /// The item for `key` (a plain Python value, shared: copy it before changing it),
            /// or `None`. Lock-free; safe from several threads.
            fn lookup(&self, py: Python<'_>, key: &str) -> Option<Py<PyAny>> {
                self.reader.lookup(key).map(|i| i.value.clone_ref(py))
            }

            /// The current data as a plain dict, lookup key → item, for the hot path of a
            /// Python job: take it once per micro-batch (after `refresh()`) and use `.get()` on
            /// it, at the speed of any dict. Built once per version (the same dict until the data
            /// changes); several items under one lookup key resolve as `lookup()` does. Do not
            /// change it.
            fn lookup_table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let snapshot = self.reader.snapshot();
                let version = snapshot.version();
                let mut cached = self.table.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((v, d)) = cached.as_ref() {
                    if *v == version {
                        return Ok(d.bind(py).clone());
                    }
                }
                let d = PyDict::new(py);
                for key in snapshot.keys() {
                    let Some(item) = snapshot.get(key) else { continue };
                    let value = item.value.bind(py);
                    let Ok(k) = value.get_item(self.lookup_attr.as_str()) else { continue };
                    if k.is_none() {
                        continue;
                    }
                    let k = k.str()?.to_string();
                    if d.contains(k.as_str())? {
                        continue;
                    }
                    if let enrichment::Lookup::Found(resolved) = snapshot.lookup(k.as_str()) {
                        d.set_item(k, resolved.value.bind(py))?;
                    }
                }
                *cached = Some((version, d.clone().unbind()));
                Ok(d)
            }

            /// Increases with every change published; 0 before the first load. A job that
            /// builds something from the data (a broadcast DataFrame) rebuilds it only when this
            /// changed.
            #[getter]
            fn version(&self) -> u64 {
                self.reader.snapshot().version()
            }

            /// Items held.
            fn __len__(&self) -> usize {
                self.reader.snapshot().len()
            }

            /// Every item (plain Python values, shared), in no particular order.
            fn items(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
                let snapshot = self.reader.snapshot();
                snapshot
                    .keys()
                    .filter_map(|k| snapshot.get(k))
                    .map(|i| i.value.clone_ref(py))
                    .collect()
            }

            /// Seconds since the data was last confirmed current; `None` before the first load.
            #[getter]
            fn staleness_seconds(&self, py: Python<'_>) -> Option<f64> {
                py.detach(|| {
                    runtime().block_on(async {
                        self.inner.lock().await.staleness().map(|s| s.as_secs_f64())
                    })
                })
            }

            /// Whether the data is past the staleness limit (records are then rejected as
            /// stale by `enrich_batch`; a job joining on its own should not use the data either).
            fn is_too_stale(&self, py: Python<'_>) -> bool {
                py.detach(|| runtime().block_on(async { self.inner.lock().await.is_too_stale() }))
            }

            /// Whether a full load has succeeded.
            fn is_loaded(&self, py: Python<'_>) -> bool {
                py.detach(|| runtime().block_on(async { self.inner.lock().await.is_loaded() }))
            }

            /// The counters (requests, refreshes, items read, hits, …) and `staleness_seconds`.
            fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let m = py.detach(|| {
                    runtime().block_on(async { self.inner.lock().await.metrics() })
                });
                metrics_to_python(py, &m)
            }

            /// Refreshes, then enriches `records` in order. `key(record)` gives a record's
            /// lookup key (`None`: the record is invalid); `is_flag(record)`, when given, marks
            /// the in-stream change flags, which refresh at their position so every record
            /// after a flag sees the change. Returns `(outcomes, report)`: one
            /// `(status, record, detail)` per record, in order — `("enriched", r, item)`,
            /// `("passed", r, reason)`, `("rejected", r, reason)`, `("dropped", r, reason)`,
            /// `("flag", r, None)`, `("invalid", r, reason)`, `("held", r, reason)` — and the
            /// counts (`retry` set when the batch must be retried: a flag's refresh failed).
            #[pyo3(signature = (records, key, is_flag=None))]
            fn enrich_batch<'py>(
                &self,
                py: Python<'py>,
                records: Vec<Py<PyAny>>,
                key: Bound<'py, PyAny>,
                is_flag: Option<Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyTuple>> {
                let mut classes = Vec::with_capacity(records.len());
                for r in &records {
                    let r = r.bind(py);
                    if let Some(f) = &is_flag {
                        if f.call1((r,))?.is_truthy()? {
                            classes.push(Classified::Flag);
                            continue;
                        }
                    }
                    classes.push(match key.call1((r,)) {
                        Ok(k) if k.is_none() => Classified::Invalid("no lookup key".into()),
                        Ok(k) => Classified::Data(k.str()?.to_string()),
                        Err(e) => Classified::Invalid(format!("key() raised: {e}")),
                    });
                }
                let n = records.len();
                let (outcomes, report) = py.detach(|| {
                    runtime().block_on(async {
                        self.inner
                            .lock()
                            .await
                            .process_batch((0..n).collect(), |i: &usize| classes[*i].clone())
                            .await
                    })
                });
                let list = PyList::empty(py);
                // The walk answers once per record, in order (dropped records and flags carry
                // no index: their position in the list says which record they are).
                for (position, outcome) in outcomes.into_iter().enumerate() {
                    let (status, index, detail): (&str, usize, Bound<'py, PyAny>) = match outcome {
                        Outcome::Enriched { record, item } => {
                            ("enriched", record, item.value.bind(py).clone())
                        }
                        Outcome::Passed { record, reason } => (
                            "passed",
                            record,
                            reason_text(&reason, classes.get(record)).into_pyobject(py)?.into_any(),
                        ),
                        Outcome::Rejected { record, reason } => (
                            "rejected",
                            record,
                            reason_text(&reason, classes.get(record)).into_pyobject(py)?.into_any(),
                        ),
                        Outcome::Dropped { reason } => (
                            "dropped",
                            position,
                            reason_text(&reason, classes.get(position)).into_pyobject(py)?.into_any(),
                        ),
                        Outcome::Flag => ("flag", position, py.None().into_bound(py)),
                        Outcome::Invalid { record, reason } => {
                            ("invalid", record, reason.into_pyobject(py)?.into_any())
                        }
                        Outcome::Held { record, .. } => (
                            "held",
                            record,
                            "after a flag whose refresh failed: retry the batch"
                                .into_pyobject(py)?
                                .into_any(),
                        ),
                    };
                    let record = records[index].bind(py).clone();
                    list.append(PyTuple::new(py, [status.into_pyobject(py)?.into_any(), record, detail])?)?;
                }
                let counts = PyDict::new(py);
                counts.set_item("records", report.records)?;
                counts.set_item("enriched", report.enriched)?;
                counts.set_item("passed", report.passed)?;
                counts.set_item("rejected", report.rejected)?;
                counts.set_item("dropped", report.dropped)?;
                counts.set_item("flags", report.flags)?;
                counts.set_item("invalid", report.invalid)?;
                counts.set_item("held", report.held)?;
                counts.set_item("retry", report.retry.clone())?;
                let refreshes = report
                    .refreshes
                    .iter()
                    .map(|r| report_to_python(py, r))
                    .collect::<PyResult<Vec<_>>>()?;
                counts.set_item("refreshes", refreshes)?;
                PyTuple::new(py, [list.into_any(), counts.into_any()])
            }
        }
    };
}

/// The policies both kinds take, from keyword arguments.
#[allow(clippy::too_many_arguments)]
fn feed_and_policies(
    feed_prefix: String,
    unmatched: &str,
    max_staleness_seconds: Option<f64>,
    max_age_seconds: Option<f64>,
    poll_interval_seconds: f64,
    write_window_seconds: f64,
    retention_days: u64,
    snapshot_prefix: Option<String>,
    clock_margin_seconds: f64,
) -> PyResult<(FeedSettings, Unmatched, Option<Duration>, Option<Duration>)> {
    let unmatched: Unmatched = unmatched.parse().map_err(PyValueError::new_err)?;
    if retention_days < 2 {
        return Err(PyValueError::new_err(format!(
            "retention_days={retention_days}: at least 2 (consumers reload when their last listing is older than this minus a day)"
        )));
    }
    let feed = FeedSettings {
        prefix: feed_prefix,
        poll_interval: secs("poll_interval_seconds", Some(poll_interval_seconds))?
            .unwrap_or_default(),
        write_window: secs("write_window_seconds", Some(write_window_seconds))?.unwrap_or_default(),
        retention: Duration::from_secs(retention_days * 24 * 3600),
        snapshot_prefix,
        clock_margin: secs("clock_margin_seconds", Some(clock_margin_seconds))?.unwrap_or_default(),
        ..FeedSettings::default()
    };
    Ok((
        feed,
        unmatched,
        secs("max_staleness_seconds", max_staleness_seconds)?,
        secs("max_age_seconds", max_age_seconds)?,
    ))
}

/// Reference data in a DynamoDB table, kept current from the change feed (and, for a first
/// load, from the feed-compactor's snapshot when there is one).
#[pyclass(frozen, module = "stream_refdata")]
pub struct TableReference {
    inner: tokio::sync::Mutex<TableEnricher<PyItem, String, DynamoDbTable, S3Feed>>,
    reader: Reader<PyItem, String>,
    /// The attribute (or column) items are looked up by.
    lookup_attr: String,
    /// The lookup table of the current version, built on first use.
    table: std::sync::Mutex<Option<(u64, Py<PyDict>)>>,
}

impl std::fmt::Debug for TableReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableReference").finish_non_exhaustive()
    }
}

reference_class!(
    TableReference,
    /// A reference to `table`, keyed by `key_attributes` (hash key first), looked up by the
    /// value of `lookup_attribute`, following the change feed in `feed_bucket` under
    /// `feed_prefix`. Nothing is read until the first `refresh()`. The defaults are the Rust
    /// crate's: unmatched records rejected (for a dead-letter output), stale after 15 minutes,
    /// a full reload at least every 6 hours, the feed polled at most once a second.
    #[new]
    #[pyo3(signature = (
        table, key_attributes, lookup_attribute, feed_bucket, feed_prefix="change_flags/".to_owned(),
        *, unmatched="dead-letter", max_staleness_seconds=Some(900.0), max_age_seconds=Some(21600.0),
        poll_interval_seconds=1.0, write_window_seconds=20.0, retention_days=7,
        snapshot_prefix=Some("feed-snapshots/".to_owned()), clock_margin_seconds=5.0, endpoint_url=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        table: String,
        key_attributes: Vec<String>,
        lookup_attribute: String,
        feed_bucket: String,
        feed_prefix: String,
        unmatched: &str,
        max_staleness_seconds: Option<f64>,
        max_age_seconds: Option<f64>,
        poll_interval_seconds: f64,
        write_window_seconds: f64,
        retention_days: u64,
        snapshot_prefix: Option<String>,
        clock_margin_seconds: f64,
        endpoint_url: Option<String>,
    ) -> PyResult<Self> {
        if key_attributes.is_empty() || key_attributes.len() > 2 {
            return Err(PyValueError::new_err(format!(
                "key_attributes={key_attributes:?}: one or two attribute names (hash key, range key)"
            )));
        }
        aws_plumbing::validate_bucket("feed_bucket", &feed_bucket)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let (feed, unmatched, max_staleness, max_age) = feed_and_policies(
            feed_prefix,
            unmatched,
            max_staleness_seconds,
            max_age_seconds,
            poll_interval_seconds,
            write_window_seconds,
            retention_days,
            snapshot_prefix,
            clock_margin_seconds,
        )?;
        let attribute = lookup_attribute.clone();
        let decode = Arc::new(move |item: Item| {
            Python::attach(|py| {
                item_to_python(py, &item)
                    .map(|d| PyItem {
                        lookup: lookup_of(&item, &attribute),
                        value: d.into_any().unbind(),
                    })
                    .map_err(|e| e.to_string())
            })
        });
        let keys: Vec<&str> = key_attributes.iter().map(String::as_str).collect();
        let config =
            TableConfig::decoded(table.clone(), &keys, decode, |i: &PyItem| i.lookup.clone())
                .with_feed(feed)
                .with_unmatched(unmatched)
                .with_max_staleness(max_staleness)
                .with_max_age(max_age);
        let sdk = py.detach(|| sdk_config(endpoint_url));
        let s3 = aws_plumbing::s3_client(&sdk);
        let enricher = TableEnricher::new(
            config,
            DynamoDbTable::new(aws_sdk_dynamodb::Client::new(&sdk), table),
            Some(S3Feed::new(s3, feed_bucket)),
            SystemClock,
        );
        Ok(TableReference {
            lookup_attr: lookup_attribute,
            table: std::sync::Mutex::new(None),
            reader: enricher.reader(),
            inner: tokio::sync::Mutex::new(enricher),
        })
    }
);

/// A row of an S3 reference object, as a Python dict (converted once, when its object is
/// loaded).
#[derive(Debug)]
pub struct PyRow {
    value: Py<PyAny>,
}

impl<'de> serde::Deserialize<'de> for PyRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let row = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let json = serde_json::to_string(&row).map_err(serde::de::Error::custom)?;
        Python::attach(|py| -> PyResult<Py<PyAny>> {
            Ok(py.import("json")?.call_method1("loads", (json,))?.unbind())
        })
        .map(|value| PyRow { value })
        .map_err(serde::de::Error::custom)
    }
}

/// The text of column `key` of a row, read under the GIL.
fn row_lookup(row: &PyRow, key: &str) -> Option<String> {
    Python::attach(|py| {
        let v = row.value.bind(py).get_item(key).ok()?;
        if v.is_none() {
            return None;
        }
        v.str().ok().map(|s| s.to_string())
    })
}

/// Reference data kept as objects (CSV with a header, or JSON Lines; optionally gzip) under a
/// prefix in S3, kept current from the change feed and the in-stream flags.
#[pyclass(frozen, module = "stream_refdata")]
pub struct ObjectReference {
    inner: tokio::sync::Mutex<ObjectEnricher<PyRow, String, S3Objects, S3Feed>>,
    reader: Reader<PyRow, String>,
    /// The attribute (or column) items are looked up by.
    lookup_attr: String,
    /// The lookup table of the current version, built on first use.
    table: std::sync::Mutex<Option<(u64, Py<PyDict>)>>,
}

impl std::fmt::Debug for ObjectReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReference").finish_non_exhaustive()
    }
}

reference_class!(
    ObjectReference,
    /// A reference to the objects under `prefix` in `bucket`, looked up by column
    /// `key_column`, following the change feed in `feed_bucket` under `feed_prefix`.
    #[new]
    #[pyo3(signature = (
        bucket, prefix, key_column, feed_bucket, feed_prefix="change_flags/".to_owned(),
        *, unmatched="dead-letter", max_staleness_seconds=Some(900.0), max_age_seconds=Some(21600.0),
        poll_interval_seconds=1.0, write_window_seconds=20.0, retention_days=7, clock_margin_seconds=5.0,
        endpoint_url=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bucket: String,
        prefix: String,
        key_column: String,
        feed_bucket: String,
        feed_prefix: String,
        unmatched: &str,
        max_staleness_seconds: Option<f64>,
        max_age_seconds: Option<f64>,
        poll_interval_seconds: f64,
        write_window_seconds: f64,
        retention_days: u64,
        clock_margin_seconds: f64,
        endpoint_url: Option<String>,
    ) -> PyResult<Self> {
        for (what, b) in [("bucket", &bucket), ("feed_bucket", &feed_bucket)] {
            aws_plumbing::validate_bucket(what, b)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        let (feed, unmatched, max_staleness, max_age) = feed_and_policies(
            feed_prefix,
            unmatched,
            max_staleness_seconds,
            max_age_seconds,
            poll_interval_seconds,
            write_window_seconds,
            retention_days,
            None,
            clock_margin_seconds,
        )?;
        let key_column_name = key_column.clone();
        let config = ObjectConfig::new(bucket.clone(), prefix, move |r: &PyRow| {
            row_lookup(r, &key_column)
        })
        .with_feed(feed)
        .with_unmatched(unmatched)
        .with_max_staleness(max_staleness)
        .with_max_age(max_age);
        let sdk = py.detach(|| sdk_config(endpoint_url));
        let s3 = aws_plumbing::s3_client(&sdk);
        let enricher = ObjectEnricher::new(
            config,
            S3Objects::new(s3.clone(), bucket),
            Some(S3Feed::new(s3, feed_bucket)),
            SystemClock,
        );
        Ok(ObjectReference {
            lookup_attr: key_column_name,
            table: std::sync::Mutex::new(None),
            reader: enricher.reader(),
            inner: tokio::sync::Mutex::new(enricher),
        })
    }
);

/// The module.
#[pymodule]
fn stream_refdata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TableReference>()?;
    m.add_class::<ObjectReference>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
