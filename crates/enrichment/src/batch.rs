//! Records in, outcomes out: the types of [`crate::Enricher::enrich`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::RefreshReport;

/// What the caller says a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified<K> {
    /// A data record to enrich, with its lookup key.
    Data(K),
    /// An in-stream change flag: refresh here; not passed on as data.
    Flag,
    /// A record that cannot be processed (not parseable); reported, never dropped.
    Invalid(String),
}

/// What happens to a record with no reference item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmatched {
    /// Returned as [`Outcome::Rejected`] with the reason (for a dead-letter output). Default.
    #[default]
    Reject,
    /// Returned as [`Outcome::Passed`], to be written un-enriched.
    Pass,
    /// Not returned (counted and logged).
    Drop,
}

impl std::str::FromStr for Unmatched {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dead-letter" | "reject" => Ok(Unmatched::Reject),
            "pass" => Ok(Unmatched::Pass),
            "drop" => Ok(Unmatched::Drop),
            other => Err(format!(
                "unknown unmatched policy {other:?}: expected dead-letter, pass or drop"
            )),
        }
    }
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
                write!(f, "reference data is stale")?;
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
    /// Unmatched, passed on un-enriched ([`Unmatched::Pass`]).
    Passed {
        /// The record.
        record: R,
        /// Why it was not enriched.
        reason: UnmatchedReason,
    },
    /// Unmatched and rejected ([`Unmatched::Reject`], or stale data).
    Rejected {
        /// The record.
        record: R,
        /// Why.
        reason: UnmatchedReason,
    },
    /// Unmatched and dropped ([`Unmatched::Drop`]); counted.
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
}

/// Counts of one batch; `records = enriched + passed + rejected + dropped + flags + invalid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Flags.
    pub flags: usize,
    /// Invalid records.
    pub invalid: usize,
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
                + self.flags
                + self.invalid
    }
}
