//! What a refresh reports: why everything was loaded again, what the refresh did, and why it
//! failed.

use std::fmt;
use std::time::Duration;

use crate::sources::SourceError;

/// Why everything was loaded again instead of applying a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadReason {
    /// Nothing was loaded yet.
    FirstLoad,
    /// The last full load is older than the maximum age.
    MaximumAge,
    /// The last complete listing is older than the change files' retention minus a day:
    /// files it did not see may have expired.
    BeyondRetention,
    /// A change flag, and no change feed to say what changed.
    FlagWithoutFeed,
    /// A `gap` change file announced lost changes.
    Gap {
        /// The gap file's key.
        file: String,
    },
    /// A change file could not be read or decoded.
    UnreadableFile {
        /// Its key.
        file: String,
        /// Why.
        error: String,
    },
    /// A change file came from another stream of the table.
    NewStream {
        /// The stream it came from.
        stream_arn: String,
        /// The table.
        table: String,
    },
    /// A change without a usable primary key.
    ChangeWithoutKey {
        /// The change's event id.
        event_id: String,
        /// What was wrong with its keys.
        error: String,
    },
    /// An `opaque` entry (a record the producer could not type) without usable keys.
    OpaqueWithoutKeys {
        /// Why the producer could not type it.
        reason: String,
    },
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadReason::FirstLoad => f.write_str("first load"),
            ReloadReason::MaximumAge => f.write_str("maximum age reached"),
            ReloadReason::BeyondRetention => {
                f.write_str("last listing older than the change files' retention minus a day")
            }
            ReloadReason::FlagWithoutFeed => f.write_str("change flag (no change feed configured)"),
            ReloadReason::Gap { file } => write!(f, "gap announced by {file}"),
            ReloadReason::UnreadableFile { file, error } => {
                write!(f, "unreadable change file {file}: {error}")
            }
            ReloadReason::NewStream { stream_arn, table } => {
                write!(f, "new stream {stream_arn} for table {table}")
            }
            ReloadReason::ChangeWithoutKey { event_id, error } => {
                write!(f, "change {event_id} has no usable key: {error}")
            }
            ReloadReason::OpaqueWithoutKeys { reason } => {
                write!(f, "opaque record without usable keys ({reason})")
            }
        }
    }
}

/// What a refresh did.
#[derive(Clone, Debug, Default)]
pub struct RefreshReport {
    /// Everything was loaded again, and why.
    pub full_reload: Option<ReloadReason>,
    /// Change files the poll found.
    pub files: usize,
    /// Changes applied from their images.
    pub applied: usize,
    /// Items re-read from the table, or objects loaded again.
    pub reread: usize,
    /// The refresh failed; the last good snapshot keeps serving. Displays the whole chain; its
    /// `source()` is the failed call's error.
    pub error: Option<RefreshError>,
    /// A maximum-age reload failed, but the feed was followed: the data is current, and the
    /// reload is tried again after a backoff.
    pub reload_error: Option<RefreshError>,
    /// Reference data that was rejected (bad rows or objects, with key and line).
    pub problems: Vec<String>,
    /// The full load started from this feed snapshot (its key), then followed the feed from it.
    pub snapshot: Option<String>,
    /// A feed snapshot was absent or refused for the full load, and why (a Scan instead).
    pub snapshot_refused: Option<String>,
}

impl RefreshReport {
    /// Whether the snapshot changed or was checked with any request.
    pub fn did_work(&self) -> bool {
        self.full_reload.is_some()
            || self.files > 0
            || self.reread > 0
            || self.error.is_some()
            || self.reload_error.is_some()
            || !self.problems.is_empty()
    }
}

/// Why a refresh failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// A source call failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// BatchGetItem kept returning unprocessed keys.
    #[error("BatchGetItem left {0} keys unprocessed after retries")]
    Unprocessed(usize),
    /// A full reload is pending and its last attempt failed; the next attempt waits.
    #[error("full reload pending ({reason}); next attempt in {} ms after: {last_error}", retry_in.as_millis())]
    ReloadPending {
        /// Why the reload is needed.
        reason: ReloadReason,
        /// How long until the next attempt.
        retry_in: Duration,
        /// What the last attempt said.
        last_error: String,
    },
    /// A full load found most items no longer decoding into the user's type (a schema change
    /// that breaks them): the last good snapshot keeps serving whole.
    #[error("schema change: {undecodable} of {read} items no longer decode (first: {first}); the last good snapshot keeps serving")]
    SchemaChange {
        /// Items that did not decode.
        undecodable: usize,
        /// Items read.
        read: usize,
        /// The first of them: its key and why.
        first: String,
    },
}

/// One reference's health at one moment, as an operator watches it: loaded or never loaded,
/// how old, the last error, and what is rejected. Every consumer reports it for each reference
/// it holds ([`ReferenceEnricher::health`](crate::ReferenceEnricher::health)), so "never
/// loaded" and "too stale" are signals, not lines to find in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The reference: the table's name, or `s3://bucket/prefix` for objects.
    pub reference: String,
    /// Whether a full load has succeeded (before that, nothing can be enriched).
    pub loaded: bool,
    /// Time since the data was last confirmed current; `None` before the first load.
    pub staleness: Option<Duration>,
    /// Whether the staleness limit is exceeded: records are then rejected as too stale.
    pub too_stale: bool,
    /// The error of the last failed refresh, until a refresh succeeds.
    pub last_error: Option<String>,
    /// A full reload that was asked for and has not succeeded yet, and why.
    pub pending_reload: Option<String>,
    /// What is rejected now and served from its last good version, if it had one: objects by
    /// key, table items (that no longer decode) by their key values.
    pub rejected: Vec<String>,
    /// The counters (cumulative since the enricher was made).
    pub metrics: crate::MetricsSnapshot,
}

impl Health {
    /// The state in a word or two: `never loaded`, `too stale` (records are rejected),
    /// `degraded` (serving, but the last refresh failed, a reload is pending or something is
    /// rejected) or `current`.
    pub fn state(&self) -> &'static str {
        if !self.loaded {
            "never loaded"
        } else if self.too_stale {
            "too stale"
        } else if self.last_error.is_some()
            || self.pending_reload.is_some()
            || !self.rejected.is_empty()
        {
            "degraded"
        } else {
            "current"
        }
    }
}
