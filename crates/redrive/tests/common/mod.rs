//! What the redrive's integration tests share: a stub of the two Lambda API operations the
//! redrive calls (the emulator cannot run functions).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use local_emulator::provision;
use test_support::{sdk_config, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The documented DynamoDB-stream invocation record (events/), with its payload.
pub(crate) const DDB_RECORD: &[u8] =
    include_bytes!("../../../../events/example-s3-failure-dynamodb.json");
/// The documented Kinesis invocation record.
pub(crate) const KINESIS_RECORD: &[u8] =
    include_bytes!("../../../../events/example-s3-failure-kinesis.json");

/// The emulator's SDK configuration and S3 client, and two new buckets: the feed and the
/// failure bucket.
pub(crate) async fn buckets() -> (
    stream_refdata_aws::SdkConfig,
    aws_sdk_s3::Client,
    String,
    String,
) {
    let sdk = sdk_config().await;
    let s3 = stream_refdata_aws::s3_client(&sdk);
    let (feed, failures) = (unique_name("feed"), unique_name("failures"));
    for b in [&feed, &failures] {
        provision::create_bucket(&s3, b)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    (sdk, s3, feed, failures)
}

/// Puts `body` at `bucket/key`.
pub(crate) async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("putting {key}: {e}"));
}

/// A stub of Lambda's `POST /2015-03-31/functions/{name}/invocations` (`ok` answers no
/// failures, `partial` reports a record, anything else is a function error) and
/// `GET /2015-03-31/functions/{name}/configuration` (the function's variables from
/// `environments`). Records each invocation.
pub(crate) async fn lambda_stub(
    environments: BTreeMap<String, BTreeMap<String, String>>,
) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
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
            let environments = environments.clone();
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
                let rest = path.trim_start_matches("/2015-03-31/functions/");
                if let Some(name) = rest.strip_suffix("/configuration") {
                    let variables = environments.get(name).cloned().unwrap_or_default();
                    let answer = serde_json::json!({
                        "FunctionName": name,
                        "Environment": { "Variables": variables },
                    })
                    .to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    return;
                }
                let name = rest.trim_end_matches("/invocations").to_owned();
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
