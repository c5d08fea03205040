//! What a reference's batch report says of the batch: served, or to be retried.

use stream_refdata::BatchReport;

/// The batch's `outcomes` when the reference served it; otherwise why not, as `retry` (a
/// refresh the batch needs failed: the enricher's reason) or `not_loaded` (the reference was
/// never loaded: the reason of a failed refresh, if one gave it). Either way the batch is
/// reported for retry.
pub(super) fn served<T, E>(
    outcomes: T,
    report: BatchReport,
    loaded: bool,
    retry: impl FnOnce(String) -> E,
    not_loaded: impl FnOnce(Option<String>) -> E,
) -> Result<T, E> {
    if let Some(reason) = report.retry {
        return Err(retry(reason));
    }
    if !loaded {
        let error = report
            .refreshes
            .into_iter()
            .find_map(|r| r.error.map(|e| e.to_string()));
        return Err(not_loaded(error));
    }
    Ok(outcomes)
}
