//! Step 7, report: the Lambda response (the batch's first record when it must be retried) and
//! the batch's metrics in CloudWatch embedded metric format: one line for the batch, and one
//! line per reference (the table, the objects prefix) with its health. (The batch's log lines are
//! written by the handler itself, so their target stays `orders_consumer::handler`.)

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use serde_json::Value;
use stream_refdata::{Health, MetricsSnapshot};

use crate::output::BatchOutput;

/// The response that reports the batch for retry: its first record, `sequence`, so the event
/// source mapping retries the whole batch from it (and it rewrites the same object names).
pub(super) fn failure(sequence: &str) -> KinesisEventResponse {
    let mut f = KinesisBatchItemFailure::default();
    f.item_identifier = Some(sequence.to_owned());
    let mut r = KinesisEventResponse::default();
    r.batch_item_failures.push(f);
    r
}

/// The staleness reported when the reference data was never loaded (and the cap of any other):
/// a year, far above any alarm threshold, and inside the range CloudWatch accepts for a metric
/// value (an unbounded value such as `f64::MAX` is rejected and the metric is dropped).
pub(super) const STALENESS_UNKNOWN_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// The CloudWatch namespace of every metric the consumer publishes.
pub const NAMESPACE: &str = "StreamRefdata";

/// The `Function` dimension's value.
const FUNCTION: &str = "orders-consumer";

/// At most this many rejected object keys are named in a reference's line (the count is
/// whole).
const REJECTED_KEYS_NAMED: usize = 20;

/// A reference's staleness as a metric value (bounded, see [`STALENESS_UNKNOWN_SECS`]).
fn staleness_secs(h: &Health) -> f64 {
    h.staleness.map_or(STALENESS_UNKNOWN_SECS, |s| {
        s.as_secs_f64().min(STALENESS_UNKNOWN_SECS)
    })
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn metric(name: &str, unit: &str) -> Value {
    serde_json::json!({"Name": name, "Unit": unit})
}

/// The batch's embedded-metric-format line (dimension `Function`): what became of its records,
/// and `ReferenceStalenessSeconds`, the stalest of `references` (one alarm for all of them).
pub fn batch_metrics(output: &BatchOutput, references: &[Health]) -> Value {
    batch_metrics_with(output, references, None)
}

/// [`batch_metrics`], with the hold (`UNMATCHED=hold`) when it is on: `held` orders held now
/// in this environment and the oldest one's age (`HeldNow`, `OldestHeldSeconds`).
pub fn batch_metrics_with(
    output: &BatchOutput,
    references: &[Health],
    held: Option<(usize, Option<std::time::Duration>)>,
) -> Value {
    let stalest = references.iter().map(staleness_secs).fold(0.0, f64::max);
    let mut line = batch_line(output, stalest);
    if let Some((now, oldest)) = held {
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array_mut()
            .expect("the batch line declares its metrics");
        for (name, unit) in [
            ("HeldOrders", "Count"),
            ("HoldFullOrders", "Count"),
            ("ReleasedOrders", "Count"),
            ("ExpiredOrders", "Count"),
            ("HeldNow", "Count"),
            ("OldestHeldSeconds", "Seconds"),
        ] {
            metrics.push(metric(name, unit));
        }
        line["HeldOrders"] = output.held.into();
        line["HoldFullOrders"] = output.hold_full.into();
        line["ReleasedOrders"] = output.released.into();
        line["ExpiredOrders"] = output.expired.into();
        line["HeldNow"] = now.into();
        line["OldestHeldSeconds"] = oldest.map_or(0.0, |d| d.as_secs_f64()).into();
    }
    line
}

fn batch_line(output: &BatchOutput, stalest: f64) -> Value {
    serde_json::json!({
        "_aws": {
            "Timestamp": now_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [
                    metric("ReferenceStalenessSeconds", "Seconds"),
                    metric("EnrichedOrders", "Count"),
                    metric("UnmatchedOrders", "Count"),
                    metric("TooStaleOrders", "Count"),
                    metric("NotAnsweredOrders", "Count"),
                    metric("InvalidRecords", "Count"),
                    metric("DeadLetteredRecords", "Count"),
                    metric("ChangeFlags", "Count"),
                    metric("UnreadableFlags", "Count"),
                ],
            }],
        },
        "Function": FUNCTION,
        "ReferenceStalenessSeconds": stalest,
        "EnrichedOrders": output.enriched,
        "UnmatchedOrders": output.unmatched_dead_lettered + output.passed + output.dropped,
        "TooStaleOrders": output.too_stale,
        "NotAnsweredOrders": output.not_answered,
        "InvalidRecords": output.invalid,
        "DeadLetteredRecords": output.unmatched_dead_lettered
            + output.too_stale
            + output.not_answered
            + output.invalid
            + output.unreadable_flags
            + output.hold_full
            + output.expired,
        "ChangeFlags": output.flags,
        "UnreadableFlags": output.unreadable_flags,
    })
}

/// One reference's embedded-metric-format line (dimensions `Function` and `Reference`, its
/// name): its state as gauges (loaded, too stale, staleness, objects rejected now), what it
/// rejected and failed since `since` (its counters at the last line; `None`: since it was
/// made) as counts, and as properties for Logs Insights its state in words, its last error
/// and the keys it rejects.
pub fn reference_metrics(h: &Health, since: Option<&MetricsSnapshot>) -> Value {
    let m = &h.metrics;
    let zero = MetricsSnapshot::default();
    let before = since.unwrap_or(&zero);
    let delta = |now: u64, then: u64| now.saturating_sub(then);
    serde_json::json!({
        "_aws": {
            "Timestamp": now_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function", "Reference"]],
                "Metrics": [
                    metric("ReferenceStalenessSeconds", "Seconds"),
                    metric("ReferenceLoaded", "Count"),
                    metric("ReferenceTooStale", "Count"),
                    metric("ReferenceRejectedObjects", "Count"),
                    metric("RejectedObjectReads", "Count"),
                    metric("RejectedRows", "Count"),
                    metric("UndecodableItems", "Count"),
                    metric("RefreshErrors", "Count"),
                    metric("FullRefreshes", "Count"),
                    metric("DynamoDbItemsRead", "Count"),
                ],
            }],
        },
        "Function": FUNCTION,
        "Reference": h.reference,
        "ReferenceStalenessSeconds": staleness_secs(h),
        "ReferenceLoaded": u8::from(h.loaded),
        "ReferenceTooStale": u8::from(h.too_stale),
        "ReferenceRejectedObjects": h.rejected.len(),
        "RejectedObjectReads": delta(m.bad_objects, before.bad_objects),
        "RejectedRows": delta(m.bad_rows, before.bad_rows),
        "UndecodableItems": delta(m.undecodable_items, before.undecodable_items),
        "RefreshErrors": delta(m.refresh_errors, before.refresh_errors),
        "FullRefreshes": delta(m.full_refreshes, before.full_refreshes),
        "DynamoDbItemsRead": delta(m.items_read, before.items_read),
        "ReferenceState": h.state(),
        "LastError": h.last_error,
        "PendingReload": h.pending_reload,
        "RejectedKeys": h.rejected.iter().take(REJECTED_KEYS_NAMED).collect::<Vec<_>>(),
    })
}

/// Where a consumer's metric lines go (stdout in Lambda, where CloudWatch takes them), and each
/// reference's counters at its last line, so that every line counts only what is new.
pub(super) struct MetricsOut {
    sink: Box<dyn Fn(&Value) + Send + Sync>,
    reported: Mutex<HashMap<String, MetricsSnapshot>>,
}

impl std::fmt::Debug for MetricsOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsOut").finish_non_exhaustive()
    }
}

impl MetricsOut {
    /// Lines to `sink`.
    pub(super) fn new(sink: impl Fn(&Value) + Send + Sync + 'static) -> Self {
        MetricsOut {
            sink: Box::new(sink),
            reported: Mutex::new(HashMap::new()),
        }
    }

    /// Lines printed to stdout.
    pub(super) fn stdout() -> Self {
        MetricsOut::new(|line| println!("{line}"))
    }

    /// Writes the batch's line (what it produced: `output`; the hold now, when on) and one line
    /// per reference.
    pub(super) fn write(
        &self,
        output: &BatchOutput,
        references: &[Health],
        held: Option<(usize, Option<std::time::Duration>)>,
    ) {
        (self.sink)(&batch_metrics_with(output, references, held));
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        for h in references {
            (self.sink)(&reference_metrics(h, reported.get(&h.reference)));
            reported.insert(h.reference.clone(), h.metrics.clone());
        }
    }
}
