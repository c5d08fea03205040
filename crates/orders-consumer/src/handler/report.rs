//! Step 7, report: the Lambda response (the batch's first record when it must be retried) and
//! the batch's metrics in CloudWatch embedded metric format. (The batch's log lines are written
//! by the handler itself, so their target stays `orders_consumer::handler`.)

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use enrichment::MetricsSnapshot;
use serde_json::Value;

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

/// Prints the embedded-metric-format line of `output` and the enricher's metrics `m` to stdout,
/// where Lambda's logs take it to CloudWatch.
pub(super) fn print_embedded_metrics(output: &BatchOutput, m: &MetricsSnapshot) {
    println!("{}", embedded_metrics(output, m));
}

/// The staleness reported when the reference data was never loaded (and the cap of any other):
/// a year, far above any alarm threshold, and inside the range CloudWatch accepts for a metric
/// value (an unbounded value such as `f64::MAX` is rejected and the metric is dropped).
pub(super) const STALENESS_UNKNOWN_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// One CloudWatch embedded-metric-format log line for a batch.
pub fn embedded_metrics(output: &BatchOutput, m: &MetricsSnapshot) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let metric = |name: &str, unit: &str| serde_json::json!({"Name": name, "Unit": unit});
    serde_json::json!({
        "_aws": {
            "Timestamp": now,
            "CloudWatchMetrics": [{
                "Namespace": "StreamRefdata",
                "Dimensions": [["Function"]],
                "Metrics": [
                    metric("ReferenceStalenessSeconds", "Seconds"),
                    metric("EnrichedOrders", "Count"),
                    metric("UnmatchedOrders", "Count"),
                    metric("InvalidRecords", "Count"),
                    metric("ChangeFlags", "Count"),
                ],
            }],
        },
        "Function": "orders-consumer",
        "ReferenceStalenessSeconds": m
            .staleness
            .map_or(STALENESS_UNKNOWN_SECS, |s| s.as_secs_f64().min(STALENESS_UNKNOWN_SECS)),
        "EnrichedOrders": output.enriched,
        "UnmatchedOrders": output.unmatched_dead_lettered + output.passed + output.dropped,
        "InvalidRecords": output.invalid,
        "ChangeFlags": output.flags,
        "RefreshErrors": m.refresh_errors,
        "FullRefreshes": m.full_refreshes,
        "DynamoDbItemsRead": m.items_read,
    })
}
