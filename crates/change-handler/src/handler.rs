//! The Lambda handler: parse the batch, write one change file, report what failed.

use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use feed_writer::{FeedWriter, WriteError};
use lambda_runtime::Diagnostic;
use serde_json::Value;
use stream_refdata_aws::{Clock, ObjectStore};
use tracing::{error, info, warn};

use crate::event::{parse_event, Batch, EventError};

/// The change-handler as deployed: writing the feed `config` names through S3 with clients
/// from `sdk` (whose operation timeout should be `config.write_budget()`, as the binary sets
/// it). The binary and the redrive tooling both build it here.
pub fn deployed(
    config: feed_writer::FeedConfig,
    sdk: &stream_refdata_aws::SdkConfig,
) -> ChangeHandler<stream_refdata_aws::S3Store> {
    deployed_with_clock(config, sdk, stream_refdata_aws::SystemClock)
}

/// [`deployed`] with its keys' time from `clock` (outside AWS: S3's time, see
/// [`stream_refdata_aws::OffsetClock`]).
pub fn deployed_with_clock(
    config: feed_writer::FeedConfig,
    sdk: &stream_refdata_aws::SdkConfig,
    clock: impl Clock,
) -> ChangeHandler<stream_refdata_aws::S3Store> {
    let store = stream_refdata_aws::S3Store::new(stream_refdata_aws::s3_client(sdk));
    ChangeHandler::new(FeedWriter::new(config, store, clock, PRODUCER))
}

/// The producer name written into every change file.
pub const PRODUCER: &str = concat!("change-handler ", env!("CARGO_PKG_VERSION"));

/// Why an invocation fails as a whole.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not a DynamoDB Streams event; a retry cannot help.
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    /// The change file could not be written and the batch's first record has no sequence
    /// number to report, so the whole invocation fails and is retried.
    #[error("change file not written and Records[0] has no sequence number to report: {0}")]
    Unreportable(#[source] WriteError),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Diagnostic {
        let error_type = match &e {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Unreportable(_) => "ChangeFileWriteFailed",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The change-handler: a [`FeedWriter`] and nothing else, so tests pass fakes or the real SDK.
#[derive(Debug)]
pub struct ChangeHandler<S> {
    writer: FeedWriter<S>,
}

impl<S: ObjectStore> ChangeHandler<S> {
    /// A handler writing through `writer`.
    pub fn new(writer: FeedWriter<S>) -> Self {
        ChangeHandler { writer }
    }

    /// Handles one invocation. `request_id` names the change file when no record of the batch
    /// has a sequence number.
    ///
    /// Returns an empty `batchItemFailures` when the change file (and its pointer) were written
    /// within the write window; otherwise reports `Records[0]`'s sequence number, so the event
    /// source mapping retries the whole batch, which is written again under a new key.
    pub async fn handle(
        &self,
        payload: &Value,
        request_id: &str,
    ) -> Result<DynamoDbEventResponse, HandlerError> {
        let batch = parse_event(payload)?;
        if batch.records == 0 {
            info!(records = 0, "empty batch, nothing to write");
            return Ok(DynamoDbEventResponse::default());
        }
        for o in &batch.opaque {
            warn!(
                index = o.index,
                sequence_number = o.sequence_number.as_deref().unwrap_or("-"),
                reason = %o.reason,
                "stream record passed on as opaque"
            );
        }
        let unique = batch.sequences.is_none().then_some(request_id);
        match self
            .writer
            .write(batch.to_change_file(), batch.sequences.clone(), unique)
            .await
        {
            Ok(written) => {
                log_batch(&batch, &written.key, written.elapsed.as_millis());
                Ok(DynamoDbEventResponse::default())
            }
            Err(e) => self.report_failure(&batch, e),
        }
    }

    fn report_failure(
        &self,
        batch: &Batch,
        e: WriteError,
    ) -> Result<DynamoDbEventResponse, HandlerError> {
        let Some(first) = &batch.first_record_sequence else {
            error!(records = batch.records, error = %e, "change file not written; failing the invocation");
            return Err(HandlerError::Unreportable(e));
        };
        error!(
            records = batch.records,
            reported = %first,
            error = %e,
            "change file not written; reporting the batch for retry"
        );
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(first.clone());
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures.push(failure);
        Ok(response)
    }
}

fn log_batch(batch: &Batch, key: &str, elapsed_ms: u128) {
    let (inserts, modifies, removes) = batch.counts_by_event();
    info!(
        records = batch.records,
        changes = batch.changes.len(),
        opaque = batch.opaque.len(),
        inserts,
        modifies,
        removes,
        key,
        elapsed_ms = elapsed_ms as u64,
        "change file written"
    );
}

/// Served on the Lambda runtime by the function's `main` ([`stream_refdata_aws::lambda::serve`]).
impl<S: ObjectStore> stream_refdata_aws::lambda::JsonHandler for ChangeHandler<S> {
    type Response = DynamoDbEventResponse;
    type Error = HandlerError;

    fn handle(
        &self,
        payload: &Value,
        request_id: &str,
    ) -> impl std::future::Future<Output = Result<DynamoDbEventResponse, HandlerError>> {
        ChangeHandler::handle(self, payload, request_id)
    }
}
