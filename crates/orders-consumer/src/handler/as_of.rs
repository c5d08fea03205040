//! Step 3 with `ENRICH_AS_OF=arrival`: each order looked up in the reference table **as it was
//! when its record arrived** in the stream, from the change feed's history (a snapshot and the
//! change files after it, kept warm and extended batch by batch), not from the table as it is
//! now. Flags change nothing here (the history already places every change at its time).
//!
//! A batch's answers are final once the feed's visibility bound has passed its newest order;
//! before that, `AS_OF_RECENT` says whether the batch waits for it (`wait`, the default) or
//! answers what the feed holds and marks the lines provisional. An order the history cannot
//! answer for (the window refuses, its item changed without saying to what, its time is before
//! the feed's history, its record has no arrival time) is dead-lettered with why.

use std::sync::Arc;
use std::time::Duration;

use stream_refdata::history::{AsOf, Followed, History, HistoryBuilder, HistorySource};
use stream_refdata::sources::FeedSource;
use stream_refdata::{FeedSettings, Outcome, TableConfig, Unmatched, UnmatchedReason};

use crate::config::{AsOfSettings, Config, Recent};
use crate::orders::{Product, Record};
use crate::output::{AsOfMark, Input};

use super::enrich::EnrichError;

/// The reference table's history, kept across batches, and where it is read from.
pub(crate) struct AsOfTable<Fd> {
    followed: Followed<Product, String>,
    feed: Fd,
    settings: AsOfSettings,
    /// How long after a change it may still appear in the feed: W plus the clock margin (ms).
    look_back_ms: i64,
}

impl<Fd> std::fmt::Debug for AsOfTable<Fd> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsOfTable")
            .field("followed", &self.followed)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<Fd: FeedSource> AsOfTable<Fd> {
    /// The history of the table `table` describes, read through `feed` as `config` places it.
    pub(crate) fn new(
        config: &Config,
        settings: AsOfSettings,
        table: TableConfig<Product, String>,
        feed: Fd,
    ) -> Self {
        let look_back = config.write_window + FeedSettings::default().clock_margin;
        let source = HistorySource {
            feed_prefix: config.change_prefix.clone(),
            snapshot_prefix: (config.snapshot_prefix.clone())
                .unwrap_or_else(|| stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX.to_owned()),
            daily_prefix: config.daily_snapshot_prefix.clone(),
            table: config.reference_table.clone(),
            look_back,
            retention: Some(config.feed_retention),
        };
        let followed = Followed::new(source, move || HistoryBuilder::of_table(&table, 0))
            .snapshot_settle(settings.snapshot_settle);
        AsOfTable {
            followed,
            feed,
            look_back_ms: i64::try_from(look_back.as_millis()).unwrap_or(i64::MAX),
            settings,
        }
    }
}

/// The longest the as-of step of a batch takes, reading the history and waiting for the feed's
/// visibility bound (`AS_OF_RECENT=wait`), from its start: past it, the batch is reported for
/// retry (infra/'s `ConsumerTimeout` is 120 s; W is at most 600 s,
/// so a producer with a W that large needs `provisional` or a longer timeout).
const MAX_WAIT_MS: u64 = 90_000;

/// The start of the second `ms` is in.
fn second_of(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

/// `ms` as RFC 3339 with milliseconds (UTC), for reasons.
fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// Enriches `inputs` as of their arrival (see the [module](self)), orders without a row per
/// `unmatched`; `now` reads the clock (ms). `Err` when the batch must be retried (the feed could
/// not be listed or read).
pub(super) async fn enrich_as_of<Fd: FeedSource>(
    table: &mut AsOfTable<Fd>,
    inputs: Vec<Input>,
    unmatched: Unmatched,
    now: impl Fn() -> i64,
) -> Result<Vec<Outcome<Input, Product>>, EnrichError> {
    let times = (inputs.iter())
        .filter(|i| matches!(i.record, Record::Order(_)))
        .filter_map(|i| i.arrival_ms);
    let (from, to) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let mut history = None;
    if from <= to {
        let started = now();
        let mut waits = 0;
        loop {
            let at = now();
            let history = (table.followed.prepare(&table.feed, from, at).await)
                .map_err(|e| EnrichError::Retry(format!("the change feed's history: {e}")))?;
            if history.is_final(to) || table.settings.recent == Recent::Provisional {
                break;
            }
            // (a clock that keeps saying otherwise after the bound should have passed: the
            // batch is retried rather than answered provisionally under `wait`)
            if waits == 3 {
                return Err(EnrichError::Retry(
                    "the change feed's visibility bound has not passed the batch's newest order \
                     after waiting for it"
                        .into(),
                ));
            }
            // Until the bound passes the newest order: the end of its second, then the
            // look-back (W and the margin, the largest W the feed states).
            let until =
                (history.final_at_ms(to)).max(second_of(to) + 1000 + table.look_back_ms) + 1;
            let wait = u64::try_from(until - at).unwrap_or(0).max(1);
            // (a step longer than a function may spend, the history's reads included: retried
            // rather than timed out)
            if u64::try_from(until - started).unwrap_or(0) > MAX_WAIT_MS {
                return Err(EnrichError::Retry(format!(
                    "the change feed's visibility bound passes the batch's newest order in {} s, \
                     more than the {} s a batch waits (a producer's write window is that long)",
                    wait / 1000,
                    MAX_WAIT_MS / 1000
                )));
            }
            tracing::info!(
                wait_ms = wait,
                "waiting for the change feed's visibility bound to pass the batch's newest order"
            );
            tokio::time::sleep(Duration::from_millis(wait)).await;
            waits += 1;
        }
        history = table.followed.history();
    }
    Ok((inputs.into_iter())
        .map(|input| answer(history, input, unmatched))
        .collect())
}

/// One input's outcome from `history` (`None` when the batch has no order with a time).
fn answer(
    history: Option<&History<Product, String>>,
    mut input: Input,
    unmatched: Unmatched,
) -> Outcome<Input, Product> {
    let (t, history) = match (&input.record, input.arrival_ms, history) {
        (Record::Order(_), Some(t), Some(history)) => (t, history),
        (Record::Order(_), ..) => {
            return not_answered(
                input,
                "its record has no arrival time (a Kinesis record's approximateArrivalTimestamp, \
                 a Kafka record's timestamp): enriching as of arrival needs it"
                    .into(),
            )
        }
        (Record::Flag(_) | Record::LegacyFlag | Record::UnreadableFlag(_), ..) => {
            return Outcome::Flag
        }
        (Record::Invalid(reason) | Record::TooStale(reason) | Record::NotAnswered(reason), ..) => {
            let reason = reason.clone();
            return Outcome::Invalid {
                record: input,
                reason,
            };
        }
    };
    // (the answer borrows the history, not the order: the dish is not copied)
    let answer = match &input.record {
        Record::Order(order) => history.lookup_as_of(&order.dish, t),
        _ => return Outcome::Flag,
    };
    input.as_of = Some(AsOfMark {
        ms: t,
        provisional: !history.is_final(t),
    });
    // (the time's text only for a reason: not per enriched order)
    let when = || time_text(t);
    match answer {
        AsOf::Found(item) => Outcome::Enriched {
            record: input,
            item: Arc::clone(item),
        },
        AsOf::Missing => {
            let reason = UnmatchedReason::NoItem;
            match unmatched {
                Unmatched::Pass => Outcome::Passed {
                    record: input,
                    reason,
                },
                Unmatched::Drop => Outcome::Dropped { reason },
                // (hold is refused with as-of by the configuration)
                _ => Outcome::Rejected {
                    record: input,
                    reason,
                },
            }
        }
        AsOf::Ambiguous(n) => Outcome::Rejected {
            record: input,
            reason: UnmatchedReason::Ambiguous(n),
        },
        AsOf::BeforeHistory { .. } => not_answered(
            input,
            format!(
                "as of {}: before the reference's history in the change feed (no feed \
                 snapshot at or before that time)",
                when()
            ),
        ),
        AsOf::Unknown { since_ms } => not_answered(
            input,
            format!(
                "as of {}: the reference item is not known then (since {}: a change without \
                 its new image, or one whose order against another or against the snapshot's \
                 read cannot be told)",
                when(),
                time_text(since_ms)
            ),
        ),
        AsOf::Refused(why) => {
            let reason = format!("as of {}: the change feed's history refuses: {why}", when());
            not_answered(input, reason)
        }
    }
}

/// `input` dead-lettered as not answered, with `reason`.
fn not_answered(mut input: Input, reason: String) -> Outcome<Input, Product> {
    input.record = Record::NotAnswered(reason.clone());
    Outcome::Invalid {
        record: input,
        reason,
    }
}
