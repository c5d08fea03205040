//! Records in, outcomes out: what the caller says a record is, and what became of it (the
//! types of the batch walk, [`crate::ReferenceEnricher::enrich`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stream_refdata_protocol::ChangeFlag;

use super::report::RefreshReport;

/// What the caller says a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified<K> {
    /// A data record to enrich, with its lookup key.
    Data(K),
    /// An in-stream change flag of the original kind (e.g. `dish == "CHANGE_FLAG"`): refresh
    /// here; not passed on as data.
    Flag,
    /// A [`ChangeFlag`] of the protocol (an S3 object changed): apply that change here if it
    /// is not applied yet; not passed on as data.
    ChangeFlag(ChangeFlag),
    /// A record that cannot be processed (not parseable); reported, never dropped.
    Invalid(String),
}

/// Why a record was not enriched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnmatchedReason {
    /// No item has the record's lookup key.
    NoItem,
    /// Several items have it and the policy rejects ambiguity.
    Ambiguous(usize),
    /// The snapshot is older than the staleness limit and could not be refreshed.
    Stale {
        /// How long since it was last confirmed current.
        staleness: Option<Duration>,
        /// The last refresh error.
        error: Option<String>,
    },
}

impl fmt::Display for UnmatchedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmatchedReason::NoItem => f.write_str("no reference item"),
            UnmatchedReason::Ambiguous(n) => write!(f, "{n} reference items share the lookup key"),
            UnmatchedReason::Stale { staleness, error } => {
                write!(f, "reference data too stale")?;
                if let Some(s) = staleness {
                    write!(f, " (last confirmed {} s ago)", s.as_secs())?;
                } else {
                    write!(f, " (never loaded)")?;
                }
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// What became of one record, in input order.
#[derive(Debug)]
pub enum Outcome<R, T> {
    /// Enriched with `item`.
    Enriched {
        /// The record.
        record: R,
        /// Its reference item.
        item: Arc<T>,
    },
    /// Unmatched, passed on un-enriched ([`Unmatched::Pass`](crate::Unmatched::Pass)).
    Passed {
        /// The record.
        record: R,
        /// Why it was not enriched.
        reason: UnmatchedReason,
    },
    /// Unmatched and rejected ([`Unmatched::Reject`](crate::Unmatched::Reject), or stale data).
    Rejected {
        /// The record.
        record: R,
        /// Why.
        reason: UnmatchedReason,
    },
    /// Unmatched, and held until its reference row arrives
    /// ([`Unmatched::Hold`](crate::Unmatched::Hold)): its key is watched; keep the record and
    /// release it with the version [`take_resolved`](crate::ReferenceEnricher::take_resolved)
    /// hands out for its key.
    Waiting {
        /// The record.
        record: R,
    },
    /// Unmatched and dropped ([`Unmatched::Drop`](crate::Unmatched::Drop)); counted.
    Dropped {
        /// Why.
        reason: UnmatchedReason,
    },
    /// A change flag (not data).
    Flag,
    /// Could not be processed.
    Invalid {
        /// The record.
        record: R,
        /// Why.
        reason: String,
    },
    /// Not enriched: it comes after a flag whose refresh failed, and the data is known to be
    /// older than that flag. The batch must be retried ([`BatchReport::retry`]).
    Held {
        /// The record.
        record: R,
    },
}

/// Counts of one batch;
/// `records = enriched + passed + rejected + dropped + waiting + flags + invalid + held`.
#[derive(Clone, Debug, Default)]
pub struct BatchReport {
    /// Records in.
    pub records: usize,
    /// Enriched.
    pub enriched: usize,
    /// Unmatched, passed on.
    pub passed: usize,
    /// Unmatched or stale, rejected.
    pub rejected: usize,
    /// Unmatched, dropped.
    pub dropped: usize,
    /// Unmatched, held until their reference row arrives.
    pub waiting: usize,
    /// Flags.
    pub flags: usize,
    /// Invalid records.
    pub invalid: usize,
    /// Records held back after a flag whose refresh failed.
    pub held: usize,
    /// Why the batch must be retried: a flag's refresh failed, so the records after it could
    /// only have been enriched with data older than the flag. Report the batch's first record
    /// to the event source mapping so that the whole batch is retried.
    pub retry: Option<String>,
    /// Refreshes during the batch (the one before it, then one per flag).
    pub refreshes: Vec<RefreshReport>,
}

impl BatchReport {
    /// Whether every record is accounted for.
    pub fn reconciles(&self) -> bool {
        self.records
            == self.enriched
                + self.passed
                + self.rejected
                + self.dropped
                + self.waiting
                + self.flags
                + self.invalid
                + self.held
    }
}
