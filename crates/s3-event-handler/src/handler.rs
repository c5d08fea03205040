//! The Lambda handler: notifications in, a change file and flags on every shard out.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use feed_writer::{FeedWriter, WriteError};
use lambda_runtime::Diagnostic;
use serde_json::Value;
use stream_refdata_aws::{Clock, ObjectStore};
use stream_refdata_protocol::{
    source_label, ChangeFile, ChangeFlag, ChangeKind, Source, SCHEMA_VERSION,
};
use tracing::{error, info};

use crate::config::Config;
use crate::event::{parse_payload, Body, ChangeType, Delivery, EventError, Notification};
use crate::flags::{FlagError, FlagSender, FlagStream};
use crate::kafka::Flags;

/// The producer name written into change files.
pub const PRODUCER: &str = concat!("s3-event-handler ", env!("CARGO_PKG_VERSION"));

/// Why one notification (a direct invocation or one SQS message) was not handled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The change file was not written.
    #[error(transparent)]
    ChangeFile(#[from] WriteError),
    /// The flags did not reach every shard.
    #[error(transparent)]
    Flags(#[from] FlagError),
}

/// Why an invocation fails as a whole.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not a payload this function handles.
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    /// A direct invocation could not be handled; S3 retries it (then its on-failure destination).
    #[error("notification not handled: {0}")]
    Process(#[from] ProcessError),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Diagnostic {
        let error_type = match &e {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Process(_) => "NotificationNotHandled",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// What one notification body led to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// Object changes written and flagged.
    pub changes: usize,
    /// Records ignored: outside the reference prefix or bucket, the function's own output, or
    /// events that do not change content.
    pub ignored: usize,
    /// The change file written, if any.
    pub change_file: Option<String>,
    /// Flag records put.
    pub flags: usize,
}

/// The s3-event-handler.
#[derive(Debug)]
pub struct S3EventHandler<S, F> {
    config: Config,
    writer: FeedWriter<S>,
    flags: F,
}

impl<S: ObjectStore, F: FlagStream> S3EventHandler<S, FlagSender<F>> {
    /// A handler writing through `store` and putting flags on every open shard of `stream`.
    pub fn new(config: Config, store: S, stream: F, clock: impl Clock) -> Self {
        S3EventHandler::with_flags(config, store, FlagSender::new(stream), clock)
    }
}

impl<S: ObjectStore, F: Flags> S3EventHandler<S, F> {
    /// A handler writing through `store` and putting flags through `flags` (every shard of a
    /// Kinesis stream, or every partition of a Kafka topic).
    pub fn with_flags(config: Config, store: S, flags: F, clock: impl Clock) -> Self {
        let writer = FeedWriter::new(config.feed.clone(), store, clock, PRODUCER);
        S3EventHandler {
            config,
            writer,
            flags,
        }
    }

    /// Handles one invocation. SQS deliveries report each message that was not handled in
    /// `batchItemFailures` (the queue redelivers it, then dead-letters it); a direct invocation
    /// that was not handled is an error, so S3's retries and on-failure destination apply.
    pub async fn handle(
        &self,
        payload: &Value,
        request_id: &str,
    ) -> Result<SqsBatchResponse, HandlerError> {
        match parse_payload(payload)? {
            Delivery::Direct(Body::TestEvent) => {
                info!("s3:TestEvent ignored");
                Ok(SqsBatchResponse::default())
            }
            Delivery::Direct(Body::Records(n)) => {
                self.process(&n, request_id).await?;
                Ok(SqsBatchResponse::default())
            }
            Delivery::Sqs(messages) => {
                let mut response = SqsBatchResponse::default();
                for m in messages {
                    let result: Result<(), Box<dyn std::error::Error + Send + Sync>> =
                        match m.content {
                            Ok(Body::TestEvent) => {
                                info!(message_id = %m.message_id, "s3:TestEvent ignored");
                                Ok(())
                            }
                            Ok(Body::Records(n)) => self
                                .process(&n, &m.message_id)
                                .await
                                .map(|_| ())
                                .map_err(Into::into),
                            Err(reason) => Err(reason.into()),
                        };
                    if let Err(reason) = result {
                        error!(message_id = %m.message_id, %reason, "message not handled; reported for redelivery");
                        let mut failure = BatchItemFailure::default();
                        failure.item_identifier = m.message_id;
                        response.batch_item_failures.push(failure);
                    }
                }
                Ok(response)
            }
        }
    }

    fn is_reference(&self, n: &Notification) -> bool {
        let c = &n.change;
        let own_output =
            c.bucket == self.config.feed.bucket && c.key.starts_with(&self.config.feed.prefix);
        n.change_type != ChangeType::Other
            && !own_output
            && c.key.starts_with(&self.config.reference_prefix)
            && self
                .config
                .reference_bucket
                .as_deref()
                .is_none_or(|b| b == c.bucket)
    }

    /// Writes the change file for the relevant notifications, then puts one flag per change
    /// (and the legacy payload, if configured) on every open shard.
    pub async fn process(
        &self,
        notifications: &[Notification],
        unique: &str,
    ) -> Result<Handled, ProcessError> {
        let relevant: Vec<&Notification> = notifications
            .iter()
            .filter(|n| self.is_reference(n))
            .collect();
        let mut handled = Handled {
            ignored: notifications.len() - relevant.len(),
            ..Handled::default()
        };
        let Some(first) = relevant.first() else {
            info!(
                ignored = handled.ignored,
                "no reference-data change in the notification"
            );
            return Ok(handled);
        };
        let bucket = first.change.bucket.clone();
        let file = ChangeFile {
            schema_version: SCHEMA_VERSION,
            kind: ChangeKind::S3,
            written_at: String::new(),
            write_window_ms: 0,
            producer: String::new(),
            source: Source {
                label: source_label(&bucket),
                bucket: Some(bucket),
                ..Source::default()
            },
            changes: vec![],
            opaque: vec![],
            objects: relevant.iter().map(|n| n.change.clone()).collect(),
            reason: None,
        };
        let written = self.writer.write(file, None, Some(unique)).await?;
        let mut payloads: Vec<Vec<u8>> = relevant
            .iter()
            .map(|n| ChangeFlag::new(n.change.clone(), Some(written.key.clone())).to_vec())
            .collect();
        if let Some(legacy) = &self.config.legacy_flag_payload {
            payloads.push(legacy.clone());
        }
        let delivered = self.flags.send(&payloads).await?;
        handled.changes = relevant.len();
        handled.flags = delivered.records;
        handled.change_file = Some(written.key.clone());
        info!(
            changes = handled.changes,
            ignored = handled.ignored,
            flags = delivered.records,
            retried = delivered.retried,
            reshards = delivered.reshards,
            key = %written.key,
            "reference change written and flagged"
        );
        Ok(handled)
    }
}

/// Served on the Lambda runtime by the function's `main` ([`stream_refdata_aws::lambda::serve`]).
impl<S: ObjectStore, F: Flags> stream_refdata_aws::lambda::JsonHandler for S3EventHandler<S, F> {
    type Response = SqsBatchResponse;
    type Error = HandlerError;

    fn handle(
        &self,
        payload: &Value,
        request_id: &str,
    ) -> impl std::future::Future<Output = Result<SqsBatchResponse, HandlerError>> {
        S3EventHandler::handle(self, payload, request_id)
    }
}
