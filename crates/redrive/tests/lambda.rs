//! The redrive as the optional Lambda function: an S3 `ObjectCreated` notification of the
//! failure bucket (as S3 sends it, URL-encoded key) through a stub of the Runtime API; the
//! record is redriven, its marker written, and a key outside `aws/lambda/` is ignored.

use std::time::Duration;

use serde_json::json;
use test_support::{emulator, list_keys, RuntimeApiStub};

fn notification(bucket: &str, keys: &[&str]) -> serde_json::Value {
    let records: Vec<_> = keys
        .iter()
        .map(|key| {
            json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-25T09:14:50.123Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": { "principalId": "AWS:AROAEXAMPLE:awslambda" },
                "requestParameters": { "sourceIPAddress": "10.0.0.1" },
                "responseElements": { "x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8" },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "DiscardedBatch",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": { "principalId": "A3NL1KOZZKExample" },
                        "arn": format!("arn:aws:s3:::{bucket}")
                    },
                    "object": { "key": key, "size": 2048, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0055AED6DCD90281E5" }
                }
            })
        })
        .collect();
    json!({ "Records": records })
}

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_record_is_redriven_by_the_function() {
    let (_, s3, feed, failures) = common::buckets().await;
    let key = "aws/lambda/0f1e-esm/shardId-1/2026/11/25/2026-11-25T09.14.49-7c1d";
    common::put(&s3, &failures, key, common::DDB_RECORD).await;
    // The notification's keys are URL-encoded (nothing to encode in Lambda's names), and one
    // object outside the records' prefix is not a record.
    let api = RuntimeApiStub::start_with_events(vec![notification(
        &failures,
        &[key, "redriven/aws/lambda/other.json"],
    )])
    .await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_redrive"));
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        // What Lambda sets in every function's environment.
        .env("AWS_LAMBDA_FUNCTION_NAME", "stack-redrive")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/stack-redrive")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/25/[$LATEST]0123")
        .env("AWS_ENDPOINT_URL", emulator().endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("FAILURE_BUCKET", &failures)
        .env("CHANGE_BUCKET", &feed)
        .kill_on_drop(true);
    // After the one event the stub answers 404 for the next: the runtime ends the process.
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the function ends after its event")
        .expect("the function runs");
    let requests = api.requests();
    let answer = requests
        .iter()
        .find(|r| {
            r.path.ends_with("/invocation/req-1/response")
                || r.path.ends_with("/invocation/req-1/error")
        })
        .unwrap_or_else(|| {
            panic!(
                "no answer: {requests:?}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(answer.path.ends_with("/response"), "{answer:?}");
    assert!(list_keys(&s3, &failures, "redriven/")
        .await
        .contains(&format!("redriven/{key}.json")));
    assert!(
        !list_keys(&s3, &feed, "change_flags/").await.is_empty(),
        "the change file"
    );
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        log.contains("\"redriven\"") && log.contains("\"listed\": 1"),
        "{log}"
    );
}
