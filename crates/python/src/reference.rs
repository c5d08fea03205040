//! What the two reference kinds share: the read side (lock-free lookups, the lookup table of a
//! version), the classification of a batch's records by the caller's functions, and the Python
//! methods around the enricher ([`reference_class!`]).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use stream_refdata::{Classified, Lookup, Reader};

use crate::values::PyValue;

/// The read side of a reference: lock-free lookups from any thread.
pub(crate) struct ReadSide<V> {
    reader: Reader<V, String>,
    /// The attribute (or column) items are looked up by.
    lookup_attr: String,
    /// The lookup table of the current version, built on first use.
    table: Mutex<Option<(u64, Py<PyDict>)>>,
}

impl<V: PyValue> ReadSide<V> {
    /// Reads through `reader`; items are looked up by `lookup_attr`.
    pub(crate) fn new(reader: Reader<V, String>, lookup_attr: String) -> Self {
        ReadSide {
            reader,
            lookup_attr,
            table: Mutex::new(None),
        }
    }

    /// The item for `key`, or `None`.
    pub(crate) fn lookup(&self, py: Python<'_>, key: &str) -> Option<Py<PyAny>> {
        self.reader.lookup(key).map(|i| i.value().clone_ref(py))
    }

    /// The current data as a dict, lookup key → item: the same dict until the version changes.
    pub(crate) fn lookup_table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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
            let Some(item) = snapshot.get(key) else {
                continue;
            };
            // The key `lookup()` finds it under, not Python's rendering of the value.
            let Some(k) = item.lookup_key(&self.lookup_attr) else {
                continue;
            };
            if d.contains(k.as_str())? {
                continue;
            }
            // Several items under one lookup key resolve as `lookup()` does.
            if let Lookup::Found(resolved) = snapshot.lookup(k.as_str()) {
                d.set_item(k, resolved.value().bind(py))?;
            }
        }
        *cached = Some((version, d.clone().unbind()));
        Ok(d)
    }

    /// The version of the current data.
    pub(crate) fn version(&self) -> u64 {
        self.reader.snapshot().version()
    }

    /// Items held.
    pub(crate) fn len(&self) -> usize {
        self.reader.snapshot().len()
    }

    /// Every item, in no particular order.
    pub(crate) fn items(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        let snapshot = self.reader.snapshot();
        snapshot
            .keys()
            .filter_map(|k| snapshot.get(k))
            .map(|i| i.value().clone_ref(py))
            .collect()
    }
}

/// What each record of a batch is, by the caller's functions: a flag when `is_flag(record)` is
/// true, else data under `key(record)` (invalid when that is `None` or raises).
pub(crate) fn classify(
    py: Python<'_>,
    records: &[Py<PyAny>],
    key: &Bound<'_, PyAny>,
    is_flag: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<Classified<String>>> {
    let mut classes = Vec::with_capacity(records.len());
    for r in records {
        let r = r.bind(py);
        if let Some(f) = is_flag {
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
    Ok(classes)
}

/// A reference class: `$name`, the Python class, holds its `$enricher` (behind a Tokio mutex,
/// `inner`) and the read side of its `$value`s (`read`, a [`ReadSide`]), and has the Python
/// methods every reference has; `$constructor` is its `#[new]`.
macro_rules! reference_class {
    (
        $(#[$doc:meta])*
        pub struct $name:ident($enricher:ty, $value:ty);
        $($constructor:tt)*
    ) => {
        $(#[$doc])*
        #[pyclass(frozen, module = "stream_refdata")]
        pub struct $name {
            inner: tokio::sync::Mutex<$enricher>,
            read: $crate::reference::ReadSide<$value>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        #[pymethods]
        impl $name {
            $($constructor)*

            /// Brings the data up to date (a full load the first time, then the change feed);
            /// never raises for AWS errors: the last good data keeps serving and the report's
            /// `error` says why. Returns what it did, as a dict.
            fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let report =
                    $crate::runtime::block_on(py, async { self.inner.lock().await.refresh().await });
                $crate::outcomes::report_to_python(py, &report)
            }

            /// The item for `key` (a plain Python value, shared: copy it before changing it),
            /// or `None`. Lock-free; safe from several threads.
            fn lookup(&self, py: Python<'_>, key: &str) -> Option<Py<PyAny>> {
                self.read.lookup(py, key)
            }

            /// The current data as a plain dict, lookup key → item, for the hot path of a
            /// Python job: take it once per micro-batch (after `refresh()`) and use `.get()` on
            /// it, at the speed of any dict. Built once per version (the same dict until the data
            /// changes); several items under one lookup key resolve as `lookup()` does. Do not
            /// change it.
            fn lookup_table<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                self.read.lookup_table(py)
            }

            /// Increases with every change published; 0 before the first load. A job that
            /// builds something from the data (a broadcast DataFrame) rebuilds it only when this
            /// changed.
            #[getter]
            fn version(&self) -> u64 {
                self.read.version()
            }

            /// Items held.
            fn __len__(&self) -> usize {
                self.read.len()
            }

            /// Every item (plain Python values, shared), in no particular order.
            fn items(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
                self.read.items(py)
            }

            /// Seconds since the data was last confirmed current; `None` before the first load.
            #[getter]
            fn staleness_seconds(&self, py: Python<'_>) -> Option<f64> {
                $crate::runtime::block_on(py, async {
                    self.inner.lock().await.staleness().map(|s| s.as_secs_f64())
                })
            }

            /// Whether the data is past the staleness limit (records are then rejected as
            /// stale by `enrich_batch`; a job joining on its own should not use the data either).
            fn is_too_stale(&self, py: Python<'_>) -> bool {
                $crate::runtime::block_on(py, async { self.inner.lock().await.is_too_stale() })
            }

            /// Whether a full load has succeeded.
            fn is_loaded(&self, py: Python<'_>) -> bool {
                $crate::runtime::block_on(py, async { self.inner.lock().await.is_loaded() })
            }

            /// The reference's health now, as a dict: `reference` (the table's name, or
            /// `s3://bucket/prefix`), `state` (`never loaded`, `too stale`, `degraded`,
            /// `current`), `loaded`, `staleness_seconds`, `too_stale`, `last_error`,
            /// `pending_reload` and `rejected` (what is rejected now and served from its last
            /// good version). A job publishes it as it publishes its metrics.
            fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let h = $crate::runtime::block_on(py, async { self.inner.lock().await.health() });
                $crate::outcomes::health_to_python(py, &h)
            }

            /// Watches the lookup keys `keys` of records a job holds (`unmatched="hold"`): the
            /// first refresh that brings an item for one records that version for
            /// `take_resolved()`. `enrich_batch` watches the keys of the records it answers
            /// `"waiting"` by itself.
            fn watch(&self, py: Python<'_>, keys: Vec<String>) {
                $crate::runtime::block_on(py, async { self.inner.lock().await.watch(keys) })
            }

            /// The watched keys that resolved since the last call: `(key, item)` with the version
            /// of the item that resolved it, in the order they resolved. Release the records held
            /// for each key with that item.
            fn take_resolved(&self, py: Python<'_>) -> Vec<(String, Py<PyAny>)> {
                let resolved = $crate::runtime::block_on(py, async {
                    self.inner.lock().await.take_resolved()
                });
                resolved
                    .into_iter()
                    .map(|(k, item)| (k, $crate::values::PyValue::value(&*item).clone_ref(py)))
                    .collect()
            }

            /// The counters (requests, refreshes, items read, hits, …) and `staleness_seconds`.
            fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let m = $crate::runtime::block_on(py, async { self.inner.lock().await.metrics() });
                $crate::outcomes::metrics_to_python(py, &m)
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
                let classes = $crate::reference::classify(py, &records, &key, is_flag.as_ref())?;
                let indices = (0..records.len()).collect();
                let (outcomes, report) = $crate::runtime::block_on(py, async {
                    let mut inner = self.inner.lock().await;
                    inner.process_batch(indices, |i: &usize| classes[*i].clone()).await
                });
                $crate::outcomes::batch_to_python(py, &records, &classes, outcomes, &report)
            }
        }
    };
}

pub(crate) use reference_class;
