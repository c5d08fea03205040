//! The redrive run: list, skip what was redriven, replay, mark; announce what cannot be.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::functions::{BucketError, FailureBucket, Functions, ReplayError};
use crate::record::{FailureRecord, Function, RecordError};

/// Where Lambda writes invocation records (`aws/lambda/<ESM-UUID>/<shard>/…`).
pub const DEFAULT_FAILURE_PREFIX: &str = "aws/lambda/";
/// Where the redrive writes its markers, one per record, outside the records' prefix.
pub const DEFAULT_MARKER_PREFIX: &str = "redriven/";

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The records' prefix in the failure bucket.
    pub failure_prefix: String,
    /// The markers' prefix in the failure bucket.
    pub marker_prefix: String,
    /// Replays of one record before it counts as failing (with `backoff` doubling between).
    pub attempts: u32,
    /// The first pause between attempts.
    pub backoff: Duration,
    /// List and read only: say what would be done, change nothing.
    pub dry_run: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failure_prefix: DEFAULT_FAILURE_PREFIX.into(),
            marker_prefix: DEFAULT_MARKER_PREFIX.into(),
            attempts: 3,
            backoff: Duration::from_secs(1),
            dry_run: false,
        }
    }
}

/// What was done with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Replayed, the handler succeeded, the marker written.
    Redriven,
    /// A marker says an earlier run redrove it: nothing done.
    AlreadyRedriven,
    /// `--dry-run`: would be replayed.
    WouldRedrive,
    /// `--dry-run`: cannot be replayed; a gap would be announced.
    WouldAnnounceGap,
    /// Cannot be replayed (unreadable, or its handler kept failing): a gap file was written
    /// (now or by an earlier run), so every consumer reloads; the record stays.
    GapAnnounced,
    /// Not replayed and nothing announced (an orders batch, a missing configuration, or a
    /// failure to write the gap): the record stays for the next run, and needs the operator.
    Left,
}

/// One record's line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The record's key in the failure bucket.
    pub key: String,
    /// Whose batch it was, if the record says.
    pub function: Option<Function>,
    /// Records in the batch, if the record says.
    pub records: Option<u64>,
    /// What was done.
    pub action: Action,
    /// Why, in a sentence.
    pub detail: String,
    /// The gap file, when one was announced.
    pub gap_key: Option<String>,
}

impl Outcome {
    /// A record not (yet) handled: left, nothing known about it.
    fn left(key: &str) -> Outcome {
        Outcome {
            key: key.to_owned(),
            function: None,
            records: None,
            action: Action::Left,
            detail: String::new(),
            gap_key: None,
        }
    }

    /// The outcome, with `detail` saying why.
    fn because(mut self, detail: impl Into<String>) -> Outcome {
        self.detail = detail.into();
        self
    }
}

/// What a run did, record by record, with the totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// A dry run.
    pub dry_run: bool,
    /// Records listed.
    pub listed: usize,
    /// Totals per action.
    pub totals: BTreeMap<String, usize>,
    /// Every record.
    pub records: Vec<Outcome>,
}

impl Report {
    /// Records that still need the operator (left, or a gap announced instead of a replay).
    pub fn unresolved(&self) -> usize {
        self.records
            .iter()
            .filter(|o| matches!(o.action, Action::Left | Action::GapAnnounced))
            .count()
    }

    /// How many records got `action`.
    pub fn count(&self, action: Action) -> usize {
        self.records.iter().filter(|o| o.action == action).count()
    }

    fn push(&mut self, outcome: Outcome) {
        let name = serde_json::to_value(outcome.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *self.totals.entry(name).or_default() += 1;
        self.records.push(outcome);
    }
}

/// The marker the redrive leaves next to a record it handled.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    /// `redriven` or `gap-announced`.
    pub action: Action,
    /// When (RFC 3339).
    pub at: String,
    /// The gap file, for `gap-announced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_key: Option<String>,
    /// The last replay error, for `gap-announced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a marker was not written.
#[derive(Debug, thiserror::Error)]
enum MarkerError {
    /// It did not serialize.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// The failure bucket refused it.
    #[error("{0}")]
    Put(#[from] BucketError),
}

/// A redrive over one failure bucket.
#[derive(Debug)]
pub struct Redriver<B, F> {
    bucket: B,
    functions: F,
    settings: Settings,
}

impl<B: FailureBucket, F: Functions> Redriver<B, F> {
    /// Redrives the records in `bucket` through `functions`.
    pub fn new(bucket: B, functions: F, settings: Settings) -> Self {
        Redriver {
            bucket,
            functions,
            settings,
        }
    }

    fn marker_key(&self, key: &str) -> String {
        format!("{}{key}.json", self.settings.marker_prefix)
    }

    /// Every record under the failure prefix (never the redrive's own markers, should the
    /// prefixes overlap).
    pub async fn run(&self) -> Result<Report, BucketError> {
        let keys: Vec<String> = self
            .bucket
            .list(&self.settings.failure_prefix)
            .await?
            .into_iter()
            .filter(|k| !k.starts_with(self.settings.marker_prefix.as_str()))
            .collect();
        self.run_keys(&keys).await
    }

    /// Only these records (the keys of a notification, say).
    pub async fn run_keys(&self, keys: &[String]) -> Result<Report, BucketError> {
        let markers = self.markers().await?;
        let mut report = Report {
            dry_run: self.settings.dry_run,
            listed: keys.len(),
            ..Report::default()
        };
        for key in keys {
            let outcome = self.one(key, markers.get(key)).await;
            match outcome.action {
                Action::Left => {
                    error!(key, detail = %outcome.detail, "failure record left in place")
                }
                Action::GapAnnounced => {
                    warn!(key, detail = %outcome.detail, gap = ?outcome.gap_key, "gap announced")
                }
                _ => info!(key, action = ?outcome.action, "failure record"),
            }
            report.push(outcome);
        }
        Ok(report)
    }

    /// The markers already written, by the record's key.
    async fn markers(&self) -> Result<BTreeMap<String, Marker>, BucketError> {
        let prefix = &self.settings.marker_prefix;
        let mut markers = BTreeMap::new();
        for key in self.bucket.list(prefix).await? {
            let Some(record) = key
                .strip_prefix(prefix.as_str())
                .and_then(|k| k.strip_suffix(".json"))
            else {
                continue;
            };
            let Some(body) = self.bucket.get(&key).await? else {
                continue;
            };
            // An unreadable marker counts as none: the record is handled again (idempotent).
            if let Ok(m) = serde_json::from_slice::<Marker>(&body) {
                markers.insert(record.to_owned(), m);
            }
        }
        Ok(markers)
    }

    /// One record: skipped if redriven before, else read, parsed and replayed; what cannot
    /// be replayed is announced or left.
    async fn one(&self, key: &str, marker: Option<&Marker>) -> Outcome {
        let mut outcome = Outcome::left(key);
        if let Some(m) = marker.filter(|m| m.action == Action::Redriven) {
            outcome.action = Action::AlreadyRedriven;
            outcome.detail = format!("redriven at {}", m.at);
            return outcome;
        }
        let announced = marker.and_then(|m| m.gap_key.clone());
        let bytes = match self.bucket.get(key).await {
            Ok(Some(b)) => b,
            Ok(None) => return outcome.because("the record is gone (deleted since the listing)"),
            Err(e) => return outcome.because(format!("could not read the record: {e}")),
        };
        let record = match FailureRecord::parse(&bytes) {
            Ok(r) => r,
            Err(e) => return self.unreadable(outcome, &bytes, announced, e).await,
        };
        outcome.function = Some(record.function);
        outcome.records = Some(record.batch.batch_size);
        let Some(payload) = record.payload.as_deref() else {
            let why = "the record has no payload (only S3 destinations keep it)".to_owned();
            return self.unreplayable(outcome, &record, announced, why).await;
        };
        if self.settings.dry_run {
            outcome.action = Action::WouldRedrive;
            outcome.detail = format!(
                "would replay {} record(s) of {} through the {}",
                record.batch.batch_size, record.batch.shard_id, record.function
            );
            return outcome;
        }
        match self.replay(key, &record, payload).await {
            Ok(()) => self.redriven(outcome, &record).await,
            Err(e @ ReplayError::NotConfigured(..)) => outcome.because(e.to_string()),
            Err(e) => {
                let why = format!(
                    "the {} kept failing ({} attempts): {e}",
                    record.function, self.settings.attempts
                );
                self.unreplayable(outcome, &record, announced, why).await
            }
        }
    }

    /// A record that does not parse.
    async fn unreadable(
        &self,
        mut outcome: Outcome,
        bytes: &[u8],
        announced: Option<String>,
        e: RecordError,
    ) -> Outcome {
        // An orders batch, by its batch-info field, that cannot be read: a gap would not bring
        // those orders back, so it is left for the operator.
        if Function::named_in(bytes) == Some(Function::OrdersConsumer) {
            outcome.function = Some(Function::OrdersConsumer);
            return outcome.because(format!(
                "unreadable record: {e}; these orders are not in the output"
            ));
        }
        // Otherwise it may have been a reference change: announce a gap (a full reload by every
        // consumer is always safe).
        self.gap(outcome, announced, format!("unreadable record: {e}"))
            .await
    }

    /// Replays the record's payload up to `attempts` times, the pause doubling between: the
    /// last error when no attempt succeeded, at once for a missing configuration (a retry
    /// cannot help).
    async fn replay(
        &self,
        key: &str,
        record: &FailureRecord,
        payload: &str,
    ) -> Result<(), ReplayError> {
        // The last part of the key is Lambda's random UUID: it names a change file written
        // for a batch without sequence numbers.
        let request_id = format!("redrive-{}", key.rsplit('/').next().unwrap_or(key));
        let mut pause = self.settings.backoff;
        let mut attempt = 1;
        loop {
            let e = match self
                .functions
                .replay(record.function, payload, &request_id)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e @ ReplayError::NotConfigured(..)) => return Err(e),
                Err(e) => e,
            };
            warn!(key, attempt, error = %e, "replay failed");
            if attempt >= self.settings.attempts {
                return Err(e);
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }

    /// A record replayed: its marker written, so a next run skips it.
    async fn redriven(&self, mut outcome: Outcome, record: &FailureRecord) -> Outcome {
        let marker = Marker {
            action: Action::Redriven,
            at: chrono::Utc::now().to_rfc3339(),
            gap_key: None,
            error: None,
        };
        outcome.action = Action::Redriven;
        outcome.detail = format!(
            "replayed {} record(s) of {} through the {}",
            record.batch.batch_size, record.batch.shard_id, record.function
        );
        if let Err(e) = self.write_marker(&outcome.key, &marker).await {
            // The replay stands; a next run replays the batch again, which is idempotent.
            outcome.detail +=
                &format!("; the marker was not written ({e}): a next run replays it again");
        }
        outcome
    }

    /// A record that cannot be replayed: a gap for a change-handler batch, an orders batch
    /// left (a gap would not bring those orders back).
    async fn unreplayable(
        &self,
        outcome: Outcome,
        record: &FailureRecord,
        announced: Option<String>,
        why: String,
    ) -> Outcome {
        match record.function {
            Function::ChangeHandler => self.gap(outcome, announced, why).await,
            Function::OrdersConsumer => {
                outcome.because(format!("{why}; these orders are not in the output"))
            }
        }
    }

    /// Announces a gap for the record (once: `announced` is an earlier run's gap file).
    async fn gap(&self, mut outcome: Outcome, announced: Option<String>, why: String) -> Outcome {
        if let Some(gap_key) = announced {
            outcome.action = Action::GapAnnounced;
            outcome.detail = format!("{why}; the gap was announced by an earlier run");
            outcome.gap_key = Some(gap_key);
            return outcome;
        }
        if self.settings.dry_run {
            outcome.action = Action::WouldAnnounceGap;
            outcome.detail = why;
            return outcome;
        }
        let reason = format!(
            "redrive: the discarded batch in failure record {} cannot be replayed ({why})",
            outcome.key
        );
        let unique = format!("redrive-{}", outcome.key.rsplit('/').next().unwrap_or(""));
        match self.functions.announce_gap(&reason, &unique).await {
            Ok(gap_key) => {
                let marker = Marker {
                    action: Action::GapAnnounced,
                    at: chrono::Utc::now().to_rfc3339(),
                    gap_key: Some(gap_key.clone()),
                    error: Some(why.clone()),
                };
                outcome.action = Action::GapAnnounced;
                outcome.detail = why;
                if let Err(e) = self.write_marker(&outcome.key, &marker).await {
                    outcome.detail += &format!(
                        "; the marker was not written ({e}): a next run announces it again"
                    );
                }
                outcome.gap_key = Some(gap_key);
            }
            Err(e) => {
                outcome.detail = format!("{why}; and the gap file could not be written: {e}");
            }
        }
        outcome
    }

    async fn write_marker(&self, key: &str, marker: &Marker) -> Result<(), MarkerError> {
        let body = serde_json::to_vec(marker)?;
        Ok(self.bucket.put(&self.marker_key(key), body).await?)
    }
}
