//! What a kind of reference data must answer so the one lifecycle
//! ([`crate::ReferenceEnricher`]) can keep it current: a full load, the application of the
//! change files a poll fetched, and what a change flag means.
//!
//! The trait is sealed (public in a private module): only this crate implements it, so every
//! lifecycle rule (feed following, swap, staleness, maximum age, retention, failure handling,
//! metrics, the batch walk) stays in `lifecycle/`, and a new kind of reference data is one more
//! loader folder next to `table/` and `objects/`.
#![allow(unreachable_pub)] // sealed: nameable only inside the crate

use std::future::Future;

use stream_refdata_protocol::ChangeFlag;

use super::report::{RefreshError, RefreshReport, ReloadReason};
use crate::feed::Fetched;
use crate::key::LookupKey;
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::snapshot::Snapshot;
use crate::sources::FeedSource;
use stream_refdata_aws::Clock;

/// What a loader may use during one step: the policies, the clock margin the data needs, the
/// counters, the clock, and the report of the refresh it is part of.
pub struct Cx<'a> {
    pub(crate) policies: &'a Policies,
    /// The clock margin the loaded data was taken with: the policy's, or a feed snapshot's
    /// when larger (the feed follower keeps it).
    pub(crate) clock_margin: std::time::Duration,
    pub(crate) metrics: &'a Metrics,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) report: &'a mut RefreshReport,
}

impl std::fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("policies", self.policies)
            .field("report", self.report)
            .finish_non_exhaustive()
    }
}

/// The answer to a set of fetched change files.
pub enum Applied<S> {
    /// Applied as a delta; `Some` is the next snapshot to publish, `None` means nothing changed.
    Delta(Option<S>),
    /// The files cannot be applied as a delta: reload everything, because of this.
    Reload(ReloadReason),
}

impl<S> std::fmt::Debug for Applied<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Applied::Delta(next) => write!(f, "Delta(changed: {})", next.is_some()),
            Applied::Reload(reason) => f.debug_tuple("Reload").field(reason).finish(),
        }
    }
}

/// What a full load produced.
pub struct Loaded<S> {
    /// The data.
    pub snapshot: S,
    /// Set when the data came from a feed snapshot instead of the source itself: the feed is
    /// then followed from the snapshot's position, at once.
    pub from_feed_snapshot: Option<FromFeedSnapshot>,
}

impl<S> std::fmt::Debug for Loaded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("from_feed_snapshot", &self.from_feed_snapshot)
            .finish_non_exhaustive()
    }
}

impl<S> Loaded<S> {
    /// Data loaded from the source itself (a Scan, a listing of objects).
    pub fn direct(snapshot: S) -> Self {
        Loaded {
            snapshot,
            from_feed_snapshot: None,
        }
    }
}

/// Where a load from a feed snapshot leaves the follower.
#[derive(Clone, Debug)]
pub struct FromFeedSnapshot {
    /// The snapshot object's key.
    pub key: String,
    /// L: follow the feed from here.
    pub position: chrono::DateTime<chrono::Utc>,
    /// The largest write window its follower had seen.
    pub write_window: std::time::Duration,
    /// The clock margin its follower took L (and R, and its stamps) with.
    pub clock_margin: std::time::Duration,
    /// R: when the Scan the snapshot descends from ended; the maximum age counts from it.
    pub scanned_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The snapshot a loader builds.
pub type SnapshotOf<L> = Snapshot<<L as Loader>::Value, <L as Loader>::Key>;

/// One kind of reference data (a DynamoDB table, S3 objects).
pub trait Loader: Send + Sync + 'static {
    /// What a lookup returns.
    type Value: Send + Sync + 'static;
    /// The lookup key.
    type Key: LookupKey;

    /// Loads everything into a new snapshot (`current` is what serves until then), for
    /// `reason`; a loader may start from a feed snapshot read through `feed` when the reason
    /// allows it. The loader's own state is replaced only when the load succeeds.
    fn full_load<F: FeedSource>(
        &mut self,
        reason: &ReloadReason,
        feed: Option<&F>,
        current: &Snapshot<Self::Value, Self::Key>,
        cx: &mut Cx<'_>,
    ) -> impl Future<Output = Result<Loaded<SnapshotOf<Self>>, RefreshError>> + Send;

    /// Applies the change files of one poll (in key order) to `current`. On an error nothing
    /// of the loader's state changes, so the same poll can be repeated.
    fn apply(
        &mut self,
        files: &[Fetched],
        current: &Snapshot<Self::Value, Self::Key>,
        cx: &mut Cx<'_>,
    ) -> impl Future<Output = Result<Applied<SnapshotOf<Self>>, RefreshError>> + Send;

    /// Whether a [`ChangeFlag`] of the protocol names data this loader holds. A flag that does
    /// not is ignored (counted) before anything else: it never makes this enricher's refresh,
    /// or a reload it has pending, a reason to hold the records after it.
    fn concerns(&self, flag: &ChangeFlag) -> bool;

    /// What a [`ChangeFlag`] of the protocol means to this loader: `None` when the flag is
    /// handled like any flag (the feed is polled at its position, or without a feed everything
    /// is reloaded); `Some` when the loader applied the flag's change itself.
    fn apply_flag(
        &mut self,
        flag: &ChangeFlag,
        current: &Snapshot<Self::Value, Self::Key>,
        cx: &mut Cx<'_>,
    ) -> impl Future<Output = Result<Option<Applied<SnapshotOf<Self>>>, RefreshError>> + Send;

    /// The reference's name as an operator knows it (the table's name, `s3://bucket/prefix`):
    /// the `Reference` of its health and its metrics.
    fn name(&self) -> String;

    /// What this loader currently rejects and serves the last good rows of instead (objects
    /// that did not parse or could not be read), by name; empty when it rejects nothing.
    fn rejected(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether data this loader rejected because it could not be read (a permanent failure,
    /// such as an archived object) is due at `now` to be read again by [`Loader::retry`].
    fn retry_due(&self, _now: chrono::DateTime<chrono::Utc>) -> bool {
        false
    }

    /// Reads again what [`Loader::retry_due`] says is due: a new snapshot from `current` when
    /// anything was read. It never fails: what is still unreadable is rejected again and read
    /// after a longer wait.
    fn retry(
        &mut self,
        _current: &Snapshot<Self::Value, Self::Key>,
        _cx: &mut Cx<'_>,
    ) -> impl Future<Output = Option<SnapshotOf<Self>>> + Send {
        std::future::ready(None)
    }
}
