//! `--invoke-…`: a record replayed by invoking the deployed function through the Lambda API
//! (the real SDK against a stub of the Invoke operation; the emulator cannot run functions),
//! counted done only when the function succeeded with no `batchItemFailures`.

use std::time::Duration;

use redrive::{Action, Deployed, Function, Redriver, S3FailureBucket, Settings};
use stream_refdata_aws::{OffsetClock, S3Store};
use test_support::feed_config;

use crate::common;

use common::lambda_stub;

#[tokio::test]
async fn a_record_is_replayed_by_invoking_the_deployed_function() {
    let (sdk, s3, feed, failures) = common::buckets().await;
    let (endpoint, seen) = lambda_stub(Default::default()).await;
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let expected_payload = redrive::FailureRecord::parse(common::DDB_RECORD)
        .unwrap()
        .payload
        .unwrap();
    let settings = Settings {
        backoff: Duration::from_millis(5),
        attempts: 2,
        ..Settings::default()
    };
    for (name, action, invocations) in [
        ("ok", Action::Redriven, 1),
        ("partial", Action::GapAnnounced, 2),
        ("broken", Action::GapAnnounced, 2),
    ] {
        let key = format!("aws/lambda/esm-{name}/shardId-1/2026/11/25/2026-11-25T09.14.49-{name}");
        common::put(&s3, &failures, &key, common::DDB_RECORD).await;
        let functions = Deployed::with_sdk(
            feed_config(&feed),
            Err("none".into()),
            &sdk,
            &sdk,
            OffsetClock::default(),
        )
        .invoking(Function::ChangeHandler, name, lambda.clone());
        let report = Redriver::new(
            S3FailureBucket::new(S3Store::new(s3.clone()), &failures),
            functions,
            settings.clone(),
        )
        .run_keys(std::slice::from_ref(&key))
        .await
        .unwrap();
        let outcome = &report.records[0];
        assert_eq!(outcome.action, action, "{name}: {}", outcome.detail);
        let calls: Vec<(String, String)> = seen.lock().unwrap().drain(..).collect();
        assert_eq!(calls.len(), invocations, "{name}");
        assert!(
            calls
                .iter()
                .all(|(n, body)| n == name && *body == expected_payload),
            "{name}: the record's payload, unchanged"
        );
        if name == "broken" {
            assert!(
                outcome.detail.contains("Unhandled") && outcome.detail.contains("S3 is down"),
                "{}",
                outcome.detail
            );
        }
        if name == "partial" {
            assert!(
                outcome.detail.contains("batchItemFailures"),
                "{}",
                outcome.detail
            );
        }
    }
}
