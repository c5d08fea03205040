//! The batch walk: records in order against one snapshot, a refresh at each flag, and the
//! unmatched policy for records without an item.

use std::sync::Arc;

use tracing::warn;

use super::loader::Loader;
use super::outcome::{BatchReport, Classified, Outcome, UnmatchedReason};
use super::ReferenceEnricher;
use crate::metrics::Metrics;
use crate::policy::Unmatched;
use crate::snapshot::Lookup;
use crate::sources::FeedSource;

impl<L: Loader, Fd: FeedSource> ReferenceEnricher<L, Fd> {
    /// A flag in the batch: the refresh it asks for, counted; if it fails, the records after
    /// it are held for a retry of the batch.
    async fn at_flag(&mut self, flag: &Classified<L::Key>, report: &mut BatchReport) {
        report.flags += 1;
        Metrics::add(&self.counters().flags, 1);
        let change = match flag {
            Classified::ChangeFlag(f) => Some(f),
            _ => None,
        };
        let r = self.refresh_at_flag(change).await;
        if let Some(error) = &r.error {
            warn!(%error, "refresh at a change flag failed; the records after it are held for a retry of the batch");
            report.retry = Some(format!("refresh at a change flag failed: {error}"));
        }
        report.refreshes.push(r);
    }

    /// Enriches `records` in order against the current snapshot, without refreshing first.
    /// A record classified as a flag refreshes at its position: records after it see the
    /// change, records before it the data as it was at the start of the call.
    pub async fn enrich<R>(
        &mut self,
        records: Vec<R>,
        classify: impl Fn(&R) -> Classified<L::Key>,
    ) -> (Vec<Outcome<R, L::Value>>, BatchReport) {
        let core = self;
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
                    core.at_flag(&flag, &mut report).await;
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
            let outcome = unmatched(core.policies().unmatched, &key, record, reason, &mut report);
            if matches!(outcome, Outcome::Waiting { .. }) {
                core.watch([key]);
            }
            outcomes.push(outcome);
        }
        (outcomes, report)
    }
}

/// What the unmatched `policy` makes of a record without an item (a stale snapshot always
/// rejects), counted in `report`.
fn unmatched<R, K: std::fmt::Debug, T>(
    policy: Unmatched,
    key: &K,
    record: R,
    reason: UnmatchedReason,
    report: &mut BatchReport,
) -> Outcome<R, T> {
    let policy = if matches!(reason, UnmatchedReason::Stale { .. }) {
        Unmatched::Reject
    } else {
        policy
    };
    match policy {
        Unmatched::Reject => {
            report.rejected += 1;
            Outcome::Rejected { record, reason }
        }
        Unmatched::Pass => {
            report.passed += 1;
            Outcome::Passed { record, reason }
        }
        // Only a missing row may still arrive: an ambiguous key is rejected with its reason.
        Unmatched::Hold if matches!(reason, UnmatchedReason::NoItem) => {
            report.waiting += 1;
            Outcome::Waiting { record }
        }
        Unmatched::Hold => {
            report.rejected += 1;
            Outcome::Rejected { record, reason }
        }
        Unmatched::Drop => {
            report.dropped += 1;
            warn!(?key, %reason, "unmatched record dropped (UNMATCHED=drop)");
            Outcome::Dropped { reason }
        }
    }
}
