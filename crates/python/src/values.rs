//! Conversion between Python and Rust values: DynamoDB items and rows of reference objects
//! become plain Python values once, when they are loaded or changed; a lookup hands out the same
//! object.
//!
//! Items follow boto3's `TypeDeserializer` (`N` → `decimal.Decimal`, `S` → `str`, `BOOL` →
//! `bool`, `NULL` → `None`, `M` → `dict`, `L` → `list`, `SS`/`NS` → `set` of `str`/`Decimal`),
//! except `B`/`BS`, which are `bytes` (boto3 wraps them in its own `Binary` class, which this
//! package does not import). Rows are what `json.loads` gives for the row as a JSON object.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PySet};
use stream_refdata::config::{DecodeError, Decoder};
use stream_refdata_protocol::{AttributeValue, Item};

/// A reference value held on the Rust side as the Python object it was converted into.
pub(crate) trait PyValue: Send + Sync + 'static {
    /// The Python object (shared: every lookup returns this one).
    fn value(&self) -> &Py<PyAny>;

    /// The lookup key `lookup()` finds this value under (its `attribute`), so that the lookup
    /// table keys it the same way: a number's own digits, never Python's rendering of them
    /// (`0.0000001`, not `1E-7`).
    fn lookup_key(&self, attribute: &str) -> Option<String>;
}

/// A reference item: the Python value, and its lookup key (computed once, on the Rust side).
#[derive(Debug)]
pub struct PyItem {
    lookup: Option<String>,
    value: Py<PyAny>,
}

impl PyValue for PyItem {
    fn value(&self) -> &Py<PyAny> {
        &self.value
    }

    fn lookup_key(&self, _attribute: &str) -> Option<String> {
        self.lookup.clone()
    }
}

impl PyItem {
    /// The decoder of a table's items, each keyed by the text of its `lookup_attribute`.
    pub(crate) fn decoder(lookup_attribute: String) -> Decoder<PyItem> {
        Arc::new(move |item: Item| {
            Python::attach(|py| {
                Ok(PyItem {
                    lookup: lookup_of(&item, &lookup_attribute),
                    value: item_to_python(py, &item)?.into_any().unbind(),
                })
            })
            // Described by the Python exception's type and message, and kept as the source.
            .map_err(|e: PyErr| DecodeError::wrap(e))
        })
    }

    /// The item's lookup key (the key function of a table's configuration).
    pub(crate) fn lookup(&self) -> Option<String> {
        self.lookup.clone()
    }
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

/// A row of an S3 reference object, as a Python dict (converted once, when its object is
/// loaded).
#[derive(Debug)]
pub struct PyRow {
    value: Py<PyAny>,
}

impl PyValue for PyRow {
    fn value(&self) -> &Py<PyAny> {
        &self.value
    }

    fn lookup_key(&self, column: &str) -> Option<String> {
        self.lookup(column)
    }
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

impl PyRow {
    /// The text of column `column` of the row (`None` when it is missing or null), read under
    /// the GIL.
    pub(crate) fn lookup(&self, column: &str) -> Option<String> {
        Python::attach(|py| {
            let v = self.value.bind(py).get_item(column).ok()?;
            if v.is_none() {
                return None;
            }
            v.str().ok().map(|s| s.to_string())
        })
    }
}
