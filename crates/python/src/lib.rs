//! `stream_refdata`: the enrichment lifecycle from Python.
//!
//! A thin PyO3 layer over the `enrichment` crate, so a Glue streaming job, a Python Lambda or any
//! Python consumer follows the same change feed with the same guarantees as a Rust consumer: the
//! lifecycle (load, feed snapshots, follow, apply, staleness, maximum age, flags at their
//! position, unmatched policies) and its defaults are the crate's, not re-implemented here.
//!
//! - Items come back as plain Python values, converted once when they are loaded or changed (a
//!   lookup returns the same object, not a new conversion).
//! - AWS I/O runs on the package's own Tokio runtime with the GIL released; lookups are lock-free
//!   and safe from several threads.
//! - Bad arguments raise `ValueError` with the Rust crate's messages; AWS failures never raise
//!   (the last good data keeps serving, and the refresh report's `error` carries the message).
//!
//! Modules: `table` and `object`, the two classes (`TableReference`, `ObjectReference`);
//! `history`, the table as it was at a time (`TableHistory`, as-of answers);
//! `reference`, what they share (the read side, the batch's classification, their Python
//! methods); `policies`, the keyword arguments into the crate's `Policies` (whose defaults are
//! the only ones) and the errors of bad arguments; `values`, items and rows into Python values;
//! `outcomes`, reports, counters and a batch's outcomes back to Python; `runtime`, the Tokio
//! runtime and the AWS configuration.
#![allow(unreachable_pub)] // the #[pyclass] types are the module's public API

use pyo3::prelude::*;

mod history;
mod object;
mod outcomes;
mod policies;
mod reference;
mod runtime;
mod table;
mod values;

pub use history::TableHistory;
pub use object::ObjectReference;
pub use table::TableReference;

/// The module.
#[pymodule]
fn stream_refdata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TableReference>()?;
    m.add_class::<ObjectReference>()?;
    m.add_class::<TableHistory>()?;
    m.add("NotAnswerable", m.py().get_type::<history::NotAnswerable>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
