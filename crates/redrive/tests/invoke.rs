//! `--invoke-…`: a record replayed by invoking the deployed function through the Lambda API
//! (the real SDK against a stub of the Invoke operation; the emulator cannot run functions),
//! counted done only when the function succeeded with no `batchItemFailures`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_plumbing::{OffsetClock, S3Store};
use local_emulator::provision;
use redrive::{Action, Deployed, Function, Redriver, S3FailureBucket, Settings};
use test_support::{feed_config, sdk_config, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DDB_RECORD: &[u8] = include_bytes!("../../../events/example-s3-failure-dynamodb.json");

/// A stub of Lambda's `POST /2015-03-31/functions/{name}/invocations`: `ok` answers no
/// failures, `partial` reports a record, `broken` is a function error. Records each request.
async fn lambda_stub() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head, body) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = text[..end].to_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0usize);
                    if buf.len() >= end + 4 + length {
                        break (
                            head,
                            String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned(),
                        );
                    }
                };
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let name = path
                    .trim_start_matches("/2015-03-31/functions/")
                    .trim_end_matches("/invocations")
                    .to_owned();
                log.lock().unwrap().push((name.clone(), body));
                let (extra, answer) = match name.as_str() {
                    "ok" => ("", r#"{"batchItemFailures":[]}"#),
                    "partial" => ("", r#"{"batchItemFailures":[{"itemIdentifier":"4421"}]}"#),
                    _ => (
                        "X-Amz-Function-Error: Unhandled\r\n",
                        r#"{"errorType":"ChangeFileWriteFailed","errorMessage":"S3 is down"}"#,
                    ),
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Executed-Version: $LATEST\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (endpoint, seen)
}

#[tokio::test]
async fn a_record_is_replayed_by_invoking_the_deployed_function() {
    let sdk = sdk_config().await;
    let s3 = aws_plumbing::s3_client(&sdk);
    let (feed, failures) = (unique_name("feed"), unique_name("failures"));
    for b in [&feed, &failures] {
        provision::create_bucket(&s3, b)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (endpoint, seen) = lambda_stub().await;
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let expected_payload = redrive::FailureRecord::parse(DDB_RECORD)
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
        s3.put_object()
            .bucket(&failures)
            .key(&key)
            .body(DDB_RECORD.to_vec().into())
            .send()
            .await
            .unwrap();
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
