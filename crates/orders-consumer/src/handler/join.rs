//! Step 2, join the objects reference: each order gets its row of the second reference (objects
//! in S3), flags taking effect at their position in the batch.

use stream_refdata::sources::{FeedSource, ObjectSource};
use stream_refdata::{Classified, Outcome};

use crate::orders::Record;
use crate::output::Input;

use super::served::served;
use super::Objects;

/// Why the second reference cannot serve this batch: the batch is reported for retry.
#[derive(Debug, thiserror::Error)]
pub(super) enum JoinError {
    /// A flag's refresh failed (the enricher's reason).
    #[error("reference objects: {0}")]
    Retry(String),
    /// The objects were never loaded (the reason of the last failed refresh, if any).
    #[error("reference objects not loaded: {}", .0.as_deref().unwrap_or_default())]
    NotLoaded(Option<String>),
}

/// Enriches `inputs` in order with the second reference (flags at their position): a matched
/// order gets its row; an order the reference is too stale for is dead-lettered with that reason
/// (counted as too stale).
/// `Err` when the batch must be retried (never loaded, or a flag's refresh failed).
pub(super) async fn join_objects<Fd: FeedSource + ObjectSource + Clone>(
    objects: &mut Objects<Fd>,
    inputs: &mut [Input],
) -> Result<(), JoinError> {
    let indices: Vec<usize> = (0..inputs.len()).collect();
    let (outcomes, report) = objects
        .process_batch(indices, |i| {
            // The original's flag means "the table changed": not the objects' business (a
            // failed poll there must not hold a batch that only the table concerns).
            inputs[*i]
                .record
                .classified(|| Classified::Invalid("legacy flag (table)".into()))
        })
        .await;
    let outcomes = served(
        outcomes,
        report,
        objects.is_loaded(),
        JoinError::Retry,
        JoinError::NotLoaded,
    )?;
    for outcome in outcomes {
        match outcome {
            Outcome::Enriched { record, item } => inputs[record].reference_object = Some(item),
            Outcome::Rejected { record, reason } => {
                inputs[record].record = Record::TooStale(format!("reference objects: {reason}"));
            }
            _ => {}
        }
    }
    Ok(())
}
