//! Records in, outcomes out: the batch walk of [`crate::ReferenceEnricher::enrich`] and its types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use change_protocol::ChangeFlag;
use tracing::warn;

use crate::lifecycle::{ReferenceEnricher, RefreshReport};
use crate::loader::Loader;
use crate::metrics::Metrics;
use crate::snapshot::Lookup;
use crate::sources::FeedSource;
use aws_plumbing::Clock;

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
    /// Not enriched: it comes after a flag whose refresh failed, and the data is known to be
    /// older than that flag. The batch must be retried ([`BatchReport::retry`]).
    Held {
        /// The record.
        record: R,
    },
}

/// Counts of one batch;
/// `records = enriched + passed + rejected + dropped + flags + invalid + held`.
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
                + self.flags
                + self.invalid
                + self.held
    }
}

/// Walks a batch in order: lookups against one snapshot, a refresh at each flag.
pub(crate) async fn walk<R, L, Fd, C>(
    core: &mut ReferenceEnricher<L, Fd, C>,
    records: Vec<R>,
    classify: impl Fn(&R) -> Classified<L::Key>,
) -> (Vec<Outcome<R, L::Value>>, BatchReport)
where
    L: Loader,
    Fd: FeedSource,
    C: Clock,
{
    let mut report = BatchReport {
        records: records.len(),
        ..BatchReport::default()
    };
    let mut outcomes = Vec::with_capacity(records.len());
    let mut snapshot = core.snapshot();
    let mut stale = core.is_too_stale();
    for record in records {
        if report.retry.is_some() {
            report.held += 1;
            outcomes.push(Outcome::Held { record });
            continue;
        }
        let key = match classify(&record) {
            flag @ (Classified::Flag | Classified::ChangeFlag(_)) => {
                report.flags += 1;
                Metrics::add(&core.counters().flags, 1);
                let change = match &flag {
                    Classified::ChangeFlag(f) => Some(f),
                    _ => None,
                };
                let r = core.refresh_at_flag(change).await;
                if let Some(error) = &r.error {
                    warn!(%error, "refresh at a change flag failed; the records after it are held for a retry of the batch");
                    report.retry = Some(format!("refresh at a change flag failed: {error}"));
                }
                report.refreshes.push(r);
                snapshot = core.snapshot();
                stale = core.is_too_stale();
                outcomes.push(Outcome::Flag);
                continue;
            }
            Classified::Invalid(reason) => {
                report.invalid += 1;
                outcomes.push(Outcome::Invalid { record, reason });
                continue;
            }
            Classified::Data(key) => key,
        };
        let reason = if stale {
            UnmatchedReason::Stale {
                staleness: core.staleness(),
                error: core.last_error().map(str::to_owned),
            }
        } else {
            match snapshot.lookup(&key) {
                Lookup::Found(item) => {
                    report.enriched += 1;
                    Metrics::add(&core.counters().hits, 1);
                    outcomes.push(Outcome::Enriched {
                        record,
                        item: Arc::clone(item),
                    });
                    continue;
                }
                Lookup::Missing => {
                    Metrics::add(&core.counters().misses, 1);
                    UnmatchedReason::NoItem
                }
                Lookup::Ambiguous(n) => {
                    Metrics::add(&core.counters().ambiguous, 1);
                    UnmatchedReason::Ambiguous(n)
                }
            }
        };
        let policy = if matches!(reason, UnmatchedReason::Stale { .. }) {
            Unmatched::Reject
        } else {
            core.policies().unmatched
        };
        match policy {
            Unmatched::Reject => {
                report.rejected += 1;
                outcomes.push(Outcome::Rejected { record, reason });
            }
            Unmatched::Pass => {
                report.passed += 1;
                outcomes.push(Outcome::Passed { record, reason });
            }
            Unmatched::Drop => {
                report.dropped += 1;
                warn!(?key, %reason, "unmatched record dropped (UNMATCHED=drop)");
                outcomes.push(Outcome::Dropped { reason });
            }
        }
    }
    (outcomes, report)
}
