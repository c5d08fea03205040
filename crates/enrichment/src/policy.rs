//! The rules every enricher follows, whatever it loads, and their defaults, written once: what
//! happens to records without an item ([`Unmatched`]), to several items per lookup key
//! ([`Ambiguity`]), to objects with bad rows ([`BadRows`]), and how old the data may be.

use std::time::Duration;

use crate::feed::FeedSettings;
pub use crate::snapshot::Ambiguity;

/// The rules every enricher follows, whatever it loads. One struct, one set of defaults; set
/// them through the `with_*` methods of [`ReferenceConfig`](crate::config::ReferenceConfig).
#[derive(Clone, Debug)]
pub struct Policies {
    /// Several items per lookup key (default: the lowest primary key wins).
    pub ambiguity: Ambiguity,
    /// What happens to records without a reference item (default: rejected, for a dead-letter
    /// output).
    pub unmatched: Unmatched,
    /// How the change feed is followed.
    pub feed: FeedSettings,
    /// A full reload happens when the last one is older than this, change or not (a safety net
    /// against missed notifications), at a random moment in its last tenth so that consumers
    /// that loaded together do not reload together. Default 6 h; `None`: never.
    pub max_age: Option<Duration>,
    /// When the data has not been confirmed current for longer than this (refreshes keep
    /// failing), records are rejected as stale instead of enriched with old data. Default
    /// 15 min; `None`: never.
    pub max_staleness: Option<Duration>,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            ambiguity: Ambiguity::default(),
            unmatched: Unmatched::default(),
            feed: FeedSettings::default(),
            max_age: Some(Duration::from_secs(6 * 3600)),
            max_staleness: Some(Duration::from_secs(15 * 60)),
        }
    }
}

/// What happens to a record with no reference item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmatched {
    /// Returned as [`Outcome::Rejected`](crate::Outcome::Rejected) with the reason (for a dead-letter output). Default.
    #[default]
    Reject,
    /// Returned as [`Outcome::Passed`](crate::Outcome::Passed), to be written un-enriched.
    Pass,
    /// Not returned (counted and logged).
    Drop,
    /// Returned as [`Outcome::Waiting`](crate::Outcome::Waiting): the row may arrive later
    /// (the record was written before its reference row). The caller keeps the record
    /// (durably) and asks the enricher to [`watch`](crate::ReferenceEnricher::watch) its key;
    /// when a refresh brings the row, the version that resolved it is handed out by
    /// [`take_resolved`](crate::ReferenceEnricher::take_resolved), and the caller releases the
    /// record with that version. A grace period and caps are the caller's.
    Hold,
}

impl std::str::FromStr for Unmatched {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dead-letter" | "reject" => Ok(Unmatched::Reject),
            "pass" => Ok(Unmatched::Pass),
            "drop" => Ok(Unmatched::Drop),
            "hold" => Ok(Unmatched::Hold),
            other => Err(format!(
                "unknown unmatched policy {other:?}: expected dead-letter, pass, drop or hold"
            )),
        }
    }
}

/// What to do with a row of a reference object that does not parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadRows {
    /// Reject the whole object and keep its previous rows (default): a half-read price list is
    /// worse than the last good one.
    #[default]
    RejectObject,
    /// Skip the row, count it and log it with the object key and line. An object with more
    /// bad rows than good ones is still rejected whole (a renamed or retyped column is a schema
    /// change, not a few bad rows): its previous rows stay.
    SkipRow,
}
