//! The `redrive` binary as an operator runs it, on the emulator: `--dry-run` lists and writes
//! nothing; a run replays the documented record through the change-handler, prints what it did
//! and exits 0; a second run says it was already redriven; a record it must leave exits 1.

use std::process::Command;

use test_support::{emulator, list_keys};

use crate::common;

fn redrive(feed: &str, failures: &str, args: &[&str]) -> (i32, String) {
    redrive_with(Some(feed), failures, None, args)
}

/// The binary with this environment; `lambda`: the Lambda API's endpoint (a stub).
fn redrive_with(
    feed: Option<&str>,
    failures: &str,
    lambda: Option<&str>,
    args: &[&str],
) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redrive"));
    match feed {
        Some(feed) => command.env("CHANGE_BUCKET", feed),
        None => command.env_remove("CHANGE_BUCKET"),
    };
    if let Some(endpoint) = lambda {
        command.env("AWS_ENDPOINT_URL_LAMBDA", endpoint);
    }
    let out = command
        .args(args)
        .env("AWS_ENDPOINT_URL", emulator().endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("FAILURE_BUCKET", failures)
        .env_remove("CHANGE_PREFIX")
        .env_remove("REFERENCE_TABLE")
        .env_remove("OUTPUT_BUCKET")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("the redrive runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn the_command_replays_reports_and_exits_by_what_is_left() {
    let (_, s3, feed, failures) = common::buckets().await;
    let key = "aws/lambda/0f1e-esm/shardId-00000001764061200000-864758bb/2026/11/25/2026-11-25T09.14.49-7c1d";
    common::put(&s3, &failures, key, common::DDB_RECORD).await;

    let (code, out) = redrive(&feed, &failures, &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would-redrive") && out.contains("change-handler, 1 records"),
        "{out}"
    );
    assert!(
        out.contains("dry run: 1 record(s): 1 would-redrive"),
        "{out}"
    );
    assert!(
        list_keys(&s3, &feed, "").await.is_empty(),
        "a dry run writes nothing"
    );

    let (code, out) = redrive(&feed, &failures, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 record(s): 1 redriven"), "{out}");
    let written = list_keys(&s3, &feed, "change_flags/").await;
    assert!(
        written.iter().any(|k| k.ends_with(".json")),
        "a change file: {written:?}"
    );

    let (code, out) = redrive(&feed, &failures, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(report["records"][0]["action"], "already-redriven");

    // An orders record, without the consumer's variables: left, and the exit status says so.
    common::put(
        &s3,
        &failures,
        "aws/lambda/9a8b-esm/shardId-000000000002/2026/11/25/2026-11-25T09.38.06-5e4f",
        common::KINESIS_RECORD,
    )
    .await;
    let (code, out) = redrive(&feed, &failures, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("left") && out.contains("no configuration for the orders-consumer"),
        "{out}"
    );
}

// Multi-threaded: the stub answers on the runtime while this thread waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_own_variables_come_from_the_deployed_function() {
    let (_, s3, feed, failures) = common::buckets().await;
    common::put(
        &s3,
        &failures,
        "aws/lambda/0f1e-esm/shardId-1/2026/11/25/2026-11-25T09.14.49-7c1d",
        common::DDB_RECORD,
    )
    .await;
    // The deployed change-handler's variables: a prefix the code does not default to.
    let env = std::collections::BTreeMap::from([(
        "stack-change-handler".to_owned(),
        std::collections::BTreeMap::from([
            ("CHANGE_BUCKET".to_owned(), feed.clone()),
            ("CHANGE_PREFIX".to_owned(), "reference-feed/".to_owned()),
        ]),
    )]);
    let (endpoint, _) = common::lambda_stub(env).await;
    // Nothing about the feed in the redrive's own environment.
    let (code, out) = redrive_with(
        None,
        &failures,
        Some(&endpoint),
        &["--change-handler", "stack-change-handler"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 redriven"), "{out}");
    let written = list_keys(&s3, &feed, "").await;
    assert!(
        !written.is_empty() && written.iter().all(|k| k.starts_with("reference-feed/")),
        "the change file is where the function writes: {written:?}"
    );
}
