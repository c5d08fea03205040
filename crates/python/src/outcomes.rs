//! What goes back to Python: a refresh's report, the counters, and a batch's outcomes and counts,
//! as plain dicts, lists and tuples.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use stream_refdata::{
    BatchReport, Classified, MetricsSnapshot, Outcome, RefreshReport, UnmatchedReason,
};

use crate::values::PyValue;

/// A refresh's report: what it did, and why it failed if it did.
pub(crate) fn report_to_python<'py>(
    py: Python<'py>,
    r: &RefreshReport,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "full_reload",
        r.full_reload.as_ref().map(ToString::to_string),
    )?;
    d.set_item("files", r.files)?;
    d.set_item("applied", r.applied)?;
    d.set_item("reread", r.reread)?;
    d.set_item("error", r.error.as_ref().map(ToString::to_string))?;
    d.set_item(
        "reload_error",
        r.reload_error.as_ref().map(ToString::to_string),
    )?;
    d.set_item("problems", r.problems.clone())?;
    d.set_item("snapshot", r.snapshot.clone())?;
    d.set_item("snapshot_refused", r.snapshot_refused.clone())?;
    Ok(d)
}

/// The counters, and `staleness_seconds`.
pub(crate) fn metrics_to_python<'py>(
    py: Python<'py>,
    m: &MetricsSnapshot,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in m.counters() {
        d.set_item(name, value)?;
    }
    d.set_item("staleness_seconds", m.staleness.map(|s| s.as_secs_f64()))?;
    Ok(d)
}

/// A reference's health as a dict (see the `health()` method).
pub(crate) fn health_to_python<'py>(
    py: Python<'py>,
    h: &stream_refdata::Health,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("reference", &h.reference)?;
    d.set_item("state", h.state())?;
    d.set_item("loaded", h.loaded)?;
    d.set_item("staleness_seconds", h.staleness.map(|s| s.as_secs_f64()))?;
    d.set_item("too_stale", h.too_stale)?;
    d.set_item("last_error", h.last_error.clone())?;
    d.set_item("pending_reload", h.pending_reload.clone())?;
    d.set_item("rejected", h.rejected.clone())?;
    Ok(d)
}

/// `enrich_batch`'s answer: `(outcomes, counts)`, one `(status, record, detail)` per record, in
/// order. `records` are the batch's records and `classes` what each was classified as; the walk
/// ran over their indices.
pub(crate) fn batch_to_python<'py, V: PyValue>(
    py: Python<'py>,
    records: &[Py<PyAny>],
    classes: &[Classified<String>],
    outcomes: Vec<Outcome<usize, V>>,
    report: &BatchReport,
) -> PyResult<Bound<'py, PyTuple>> {
    let list = PyList::empty(py);
    // The walk answers once per record, in order (dropped records and flags carry no index:
    // their position in the list says which record they are).
    for (position, outcome) in outcomes.into_iter().enumerate() {
        let (status, index, detail) = outcome_to_python(py, position, outcome, classes)?;
        let record = records[index].bind(py).clone();
        let status = status.into_pyobject(py)?.into_any();
        list.append(PyTuple::new(py, [status, record, detail])?)?;
    }
    let counts = counts_to_python(py, report)?;
    PyTuple::new(py, [list.into_any(), counts.into_any()])
}

/// One outcome: its status, the index of its record, and the item or the reason.
fn outcome_to_python<'py, V: PyValue>(
    py: Python<'py>,
    position: usize,
    outcome: Outcome<usize, V>,
    classes: &[Classified<String>],
) -> PyResult<(&'static str, usize, Bound<'py, PyAny>)> {
    let reason = |reason: &UnmatchedReason, record: usize| {
        reason_text(reason, classes.get(record))
            .into_pyobject(py)
            .map(Bound::into_any)
    };
    Ok(match outcome {
        Outcome::Enriched { record, item } => ("enriched", record, item.value().bind(py).clone()),
        Outcome::Passed { record, reason: r } => ("passed", record, reason(&r, record)?),
        Outcome::Rejected { record, reason: r } => ("rejected", record, reason(&r, record)?),
        Outcome::Dropped { reason: r } => ("dropped", position, reason(&r, position)?),
        Outcome::Flag => ("flag", position, py.None().into_bound(py)),
        Outcome::Invalid { record, reason } => {
            ("invalid", record, reason.into_pyobject(py)?.into_any())
        }
        Outcome::Waiting { record } => (
            "waiting",
            record,
            "no reference item yet: held until its row arrives (take_resolved() hands out the version that resolves it)"
                .into_pyobject(py)?
                .into_any(),
        ),
        Outcome::Held { record } => (
            "held",
            record,
            "after a flag whose refresh failed: retry the batch"
                .into_pyobject(py)?
                .into_any(),
        ),
    })
}

/// Why a record was not enriched, with its lookup key.
fn reason_text(reason: &UnmatchedReason, key: Option<&Classified<String>>) -> String {
    match key {
        Some(Classified::Data(k)) => format!("{reason} for key {k:?}"),
        _ => reason.to_string(),
    }
}

/// A batch's counts, with the report of each refresh it made.
fn counts_to_python<'py>(py: Python<'py>, report: &BatchReport) -> PyResult<Bound<'py, PyDict>> {
    let counts = PyDict::new(py);
    counts.set_item("records", report.records)?;
    counts.set_item("enriched", report.enriched)?;
    counts.set_item("passed", report.passed)?;
    counts.set_item("rejected", report.rejected)?;
    counts.set_item("dropped", report.dropped)?;
    counts.set_item("flags", report.flags)?;
    counts.set_item("invalid", report.invalid)?;
    counts.set_item("held", report.held)?;
    counts.set_item("waiting", report.waiting)?;
    counts.set_item("retry", report.retry.clone())?;
    let refreshes = report
        .refreshes
        .iter()
        .map(|r| report_to_python(py, r))
        .collect::<PyResult<Vec<_>>>()?;
    counts.set_item("refreshes", refreshes)?;
    Ok(counts)
}
