//! An HTTP proxy between the SDK and the emulator that injects faults per service and
//! operation: 5xx errors, each service's own throttling error (S3 `SlowDown` 503, DynamoDB and
//! Kinesis `ProvisionedThroughputExceededException`), connection resets and added latency, at a
//! chosen rate. Requests that are not faulted are forwarded with their body streamed through
//! unchanged (aws-chunked payloads included: only the HTTP framing is re-done). It also counts
//! requests per operation and DynamoDB items read, and keeps client connections open (as AWS
//! endpoints do, and moto's server does not).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

/// What to do to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 in the service's error form.
    ServerError,
    /// The service's throttling error (S3 `SlowDown` 503; DynamoDB and Kinesis
    /// `ProvisionedThroughputExceededException` 400).
    Throttle,
    /// Close the connection without a response.
    Reset,
    /// Forward it after this delay.
    Latency(Duration),
    /// HTTP 403 `AccessDenied` (what S3 answers for a missing key when the caller may not list
    /// the bucket).
    Forbidden,
}

/// A fault rule: which requests (service `s3`, `dynamodb`, `kinesis`, … or `*`; an operation
/// such as `PutObject` or `*`), what fault, and how often (0.0 to 1.0).
#[derive(Clone, Debug)]
pub struct Rule {
    /// Service name as in the SigV4 credential scope, or `*`.
    pub service: &'static str,
    /// Operation name, or `*`; for S3 object operations also `"GetObject <key suffix>"`, which
    /// matches only keys ending with the suffix (e.g. `"GetObject /_head"`).
    pub operation: &'static str,
    /// The fault.
    pub fault: Fault,
    /// Probability per matching request.
    pub rate: f64,
}

#[derive(Debug)]
struct State {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    rng: Mutex<fastrand::Rng>,
    counts: Mutex<BTreeMap<String, u64>>,
    items_read: Mutex<BTreeMap<String, u64>>,
    client: Client<HttpConnector, Incoming>,
}

/// A running proxy; it lives as long as the test's runtime.
#[derive(Clone, Debug)]
pub struct HttpFaultProxy {
    endpoint: String,
    state: Arc<State>,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(body: String) -> Body {
    Full::new(Bytes::from(body))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The service (from the SigV4 credential scope) and the operation of a request.
fn classify(req: &Request<Incoming>) -> (String, String) {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let service = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    let target = header("x-amz-target");
    let operation = if let Some((_, op)) = target.split_once('.') {
        op.to_owned()
    } else if service == "s3" {
        let query = req.uri().query().unwrap_or("");
        // Path style: `/bucket/key` is an object; `/bucket` and `/bucket/` are the bucket.
        let object = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(_, key)| !key.is_empty());
        match (req.method().as_str(), object) {
            ("PUT", true) => "PutObject",
            ("GET", true) => "GetObject",
            ("HEAD", true) => "HeadObject",
            ("DELETE", true) => "DeleteObject",
            ("GET", false) if query.contains("list-type=2") => "ListObjectsV2",
            ("PUT", false) => "CreateBucket",
            _ => "Other",
        }
        .to_owned()
    } else {
        "Other".to_owned()
    };
    (service, operation)
}

fn error_response(service: &str, fault: Fault) -> Response<Body> {
    let (status, content_type, body) = match (service, fault) {
        (_, Fault::Forbidden) => (
            StatusCode::FORBIDDEN,
            "application/xml",
            "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>FAULT</RequestId></Error>".to_owned(),
        ),
        ("s3", Fault::Throttle) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/xml",
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>FAULT</RequestId></Error>".to_owned(),
        ),
        ("s3", _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/xml",
            "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>FAULT</RequestId></Error>".to_owned(),
        ),
        ("dynamodb", Fault::Throttle) => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#.to_owned(),
        ),
        (_, Fault::Throttle) => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard."}"#.to_owned(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/x-amz-json-1.1",
            r#"{"__type":"InternalFailure","message":"injected internal error"}"#.to_owned(),
        ),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", content_type.parse().expect("content type"));
    response
}

impl HttpFaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    /// Faults are drawn from a random generator seeded with `seed`, so a run is repeatable.
    pub async fn start(upstream: &str, seed: u64) -> HttpFaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            counts: Mutex::new(BTreeMap::new()),
            items_read: Mutex::new(BTreeMap::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let served = state.clone();
        crate::serve_http(listener, move |req| handle(served.clone(), req));
        HttpFaultProxy { endpoint, state }
    }

    /// The endpoint to give the SDK.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Replaces the rules (an empty list stops all faults).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.state.rules.lock().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// Requests seen, by `service/operation/outcome` (`forwarded` or the fault).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// DynamoDB items returned to the client, by read operation (`Scan`, `Query`, `GetItem`,
    /// `BatchGetItem`), counted in the forwarded responses.
    pub fn items_read(&self) -> BTreeMap<String, u64> {
        self.state
            .items_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Faults injected in all.
    pub fn injected(&self) -> u64 {
        self.counts()
            .iter()
            .filter(|(k, _)| !k.ends_with("/forwarded"))
            .map(|(_, v)| v)
            .sum()
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let (service, operation) = classify(&req);
    let path = req.uri().path().to_owned();
    let fault = {
        let rules = state.rules.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
        rules
            .iter()
            .filter(|r| {
                (r.service == "*" || r.service == service)
                    && (r.operation == "*"
                        || r.operation == operation
                        || r.operation
                            .split_once(' ')
                            .is_some_and(|(op, suffix)| op == operation && path.ends_with(suffix)))
            })
            .find(|r| rng.f64() < r.rate)
            .map(|r| r.fault)
    };
    let label = match fault {
        None => "forwarded".to_owned(),
        Some(Fault::Latency(_)) => "latency".to_owned(),
        Some(f) => format!("{f:?}"),
    };
    *state
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(format!("{service}/{operation}/{label}"))
        .or_default() += 1;
    match fault {
        Some(Fault::Reset) => return Err(std::io::Error::other("injected connection reset")),
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(f) => {
            // Read the request body first, so the client sees a response, not a broken upload.
            let _ = req.into_body().collect().await;
            return Ok(error_response(&service, f));
        }
        None => {}
    }
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = format!("{}{path}", state.upstream)
        .parse()
        .map_err(std::io::Error::other)?;
    let response = state
        .client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(std::io::Error::other)?;
    // moto's development server closes every connection (`Connection: close`); AWS endpoints
    // keep them open. Keep the client's connection open, so a client pays for a TCP connect
    // per request here no more than it does on AWS.
    let mut response = response;
    response.headers_mut().remove(hyper::header::CONNECTION);
    if service == "dynamodb" && READS.contains(&operation.as_str()) {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        let items = items_in(&operation, &body);
        *state
            .items_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(operation)
            .or_default() += items;
        return Ok(Response::from_parts(
            parts,
            Full::new(body).map_err(|never| match never {}).boxed(),
        ));
    }
    Ok(response.map(|b| b.boxed()))
}

const READS: [&str; 4] = ["Scan", "Query", "GetItem", "BatchGetItem"];

/// Items in a DynamoDB read response (0 for an error response).
fn items_in(operation: &str, body: &[u8]) -> u64 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    match operation {
        "GetItem" => u64::from(v.get("Item").is_some()),
        "BatchGetItem" => v
            .get("Responses")
            .and_then(|r| r.as_object())
            .map(|tables| {
                tables
                    .values()
                    .filter_map(|items| items.as_array())
                    .map(|items| items.len() as u64)
                    .sum()
            })
            .unwrap_or(0),
        _ => v
            .get("Items")
            .and_then(|i| i.as_array())
            .map_or(0, |i| i.len() as u64),
    }
}
