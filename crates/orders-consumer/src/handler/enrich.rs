//! Step 3, enrich: each order looked up in the reference table, flags refreshing it at their
//! position in the batch.

use stream_refdata::sources::{FeedSource, TableSource};
use stream_refdata::{Classified, Outcome};

use crate::orders::Product;
use crate::output::Input;

use super::served::served;
use super::Table;

/// Why the reference table cannot serve this batch: the batch is reported for retry.
#[derive(Debug, thiserror::Error)]
pub(super) enum EnrichError {
    /// A refresh the batch needs failed (the enricher's reason).
    #[error("{0}")]
    Retry(String),
    /// The table was never loaded (the reason of the failed load, if a refresh gave one).
    #[error("{}", .0.as_deref().unwrap_or("reference data not loaded"))]
    NotLoaded(Option<String>),
}

/// Enriches `inputs` in order with `table` (flags at their position): the outcome of each.
/// `Err` when the batch must be retried (never loaded, or a refresh it needs failed).
pub(super) async fn enrich<Tb: TableSource, Fd: FeedSource>(
    table: &mut Table<Tb, Fd>,
    inputs: Vec<Input>,
) -> Result<Vec<Outcome<Input, Product>>, EnrichError> {
    let (outcomes, report) = table
        .process_batch(inputs, |i| i.record.classified(|| Classified::Flag))
        .await;
    served(
        outcomes,
        report,
        table.is_loaded(),
        EnrichError::Retry,
        EnrichError::NotLoaded,
    )
}
