//! A stand-in for the Lambda Runtime API that records what a function process posts, for tests
//! of start-up: `AWS_LAMBDA_RUNTIME_API` points at it, and every request is answered
//! `202 Accepted` (an empty `404` for `GET …/invocation/next`, so a function that did start
//! does not get an event; [`RuntimeApiStub::start_with_events`] hands out events first).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

/// One request the stub received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `POST`, `GET`, …
    pub method: String,
    /// The path, e.g. `/2018-06-01/runtime/init/error`.
    pub path: String,
    /// Headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// The stub; it serves until the test's runtime ends.
#[derive(Clone, Debug)]
pub struct RuntimeApiStub {
    address: String,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    events: Events,
    /// While set, `GET …/invocation/next` with no event waits for one ([`RuntimeApiStub::push`])
    /// instead of answering `404`.
    open: Arc<std::sync::atomic::AtomicBool>,
}

/// Events still to hand out on `GET …/invocation/next`.
type Events = Arc<Mutex<std::collections::VecDeque<serde_json::Value>>>;

impl RuntimeApiStub {
    /// Listens on a free loopback port.
    pub async fn start() -> RuntimeApiStub {
        RuntimeApiStub::start_with_events(Vec::new()).await
    }

    /// Like [`RuntimeApiStub::start`], handing out `events` in order on `GET …/invocation/next`
    /// (request ids `req-1`, `req-2`, …, with the headers Lambda sends) before the `404`; the
    /// function's answers are recorded as `POST …/invocation/req-N/response` (or `/error`).
    pub async fn start_with_events(events: Vec<serde_json::Value>) -> RuntimeApiStub {
        RuntimeApiStub::serve(events, false).await
    }

    /// A stub that hands out events as the test [`push`](RuntimeApiStub::push)es them: the
    /// function waits for the next one (as a warm Lambda environment does between invocations)
    /// until [`close`](RuntimeApiStub::close) answers `404` and ends it. For a test that changes
    /// something between two invocations of one warm process.
    pub async fn start_open() -> RuntimeApiStub {
        RuntimeApiStub::serve(Vec::new(), true).await
    }

    async fn serve(events: Vec<serde_json::Value>, open: bool) -> RuntimeApiStub {
        let events: Events = Arc::new(Mutex::new(events.into()));
        let open = Arc::new(std::sync::atomic::AtomicBool::new(open));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let address = listener.local_addr().expect("stub address").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let (queue, waiting) = (events.clone(), open.clone());
        crate::serve_http(listener, move |req| {
            let recorded = recorded.clone();
            let events = queue.clone();
            let open = waiting.clone();
            async move { Ok::<_, Infallible>(record(&recorded, &events, &open, req).await) }
        });
        RuntimeApiStub {
            address,
            requests,
            events,
            open,
        }
    }

    /// Queues `event` for the function's next `GET …/invocation/next`.
    pub fn push(&self, event: serde_json::Value) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(event);
    }

    /// After the queued events, answers `404`: the function's runtime then ends the process.
    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The function's answers (response or error documents) so far, in order.
    pub fn answers(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with("/response") || r.path.ends_with("/error"))
            .map(RecordedRequest::json)
            .collect()
    }

    /// Waits until the function has answered `n` invocations (a condition, not a time: the
    /// bound only ends a test whose function hangs).
    ///
    /// # Panics
    /// If it has not within `bound`.
    pub async fn wait_for_answers(&self, n: usize, bound: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while self.answers().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the function answered {} of {n} invocations: {:?}",
                self.answers().len(),
                self.requests()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// `host:port`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn record(
    recorded: &Mutex<Vec<RecordedRequest>>,
    events: &Events,
    open: &std::sync::atomic::AtomicBool,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let next = parts.uri.path().ends_with("/invocation/next");
    recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body,
        });
    if next {
        let event = loop {
            let event = events.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            if event.is_some() || !open.load(std::sync::atomic::Ordering::SeqCst) {
                break event;
            }
            // A warm environment waits for its next invocation.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        if let Some(event) = event {
            let n = recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|r| r.path.ends_with("/invocation/next"))
                .count();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 300_000)
                .unwrap_or_default();
            let mut response = Response::new(Full::new(Bytes::from(event.to_string())));
            let headers = response.headers_mut();
            for (name, value) in [
                ("lambda-runtime-aws-request-id", format!("req-{n}")),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:under-test".to_owned(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000".to_owned(),
                ),
                ("content-type", "application/json".to_owned()),
            ] {
                if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
            return response;
        }
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = if next {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::ACCEPTED
    };
    response
}

/// What a function process did at start-up behind a [`RuntimeApiStub`].
#[derive(Debug)]
pub struct StartUp {
    /// How it ended.
    pub status: std::process::ExitStatus,
    /// Its standard output and standard error, one after the other.
    pub output: String,
    /// What it sent to the Runtime API.
    pub requests: Vec<RecordedRequest>,
}

/// Runs the function binary `program` with only `vars` (and `AWS_LAMBDA_RUNTIME_API` pointing
/// at a fresh [`RuntimeApiStub`]) in its environment, until it exits.
///
/// # Panics
/// If it cannot be started or runs for more than 30 s (a function that started would wait for
/// events: give it a configuration that stops it at start-up).
pub async fn start_function(program: &str, vars: &[(&str, &str)]) -> StartUp {
    let api = RuntimeApiStub::start().await;
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .envs(vars.iter().copied())
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not exit within 30 s"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    StartUp {
        status: output.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        requests: api.requests(),
    }
}

/// Runs the function binary `program` on `events`, as Lambda would in an environment of its
/// own: the Lambda variables, the emulator's endpoint and credentials, then `vars`; through a
/// stand-in Runtime API that hands it the events and ends it after the last. Returns its
/// answers, one per event.
///
/// # Panics
/// If it cannot be started, runs for more than 120 s, or does not answer every event.
pub async fn run_function(
    program: &str,
    vars: &[(&str, &str)],
    events: Vec<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let n = events.len();
    let api = RuntimeApiStub::start_with_events(events).await;
    let process = tokio::process::Command::new(program)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "stack-function")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_ENDPOINT_URL", crate::emulator().endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        process.wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} did not end after its events within 120 s"))
    .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let answers = api.answers();
    assert_eq!(answers.len(), n, "{answers:?}");
    answers
}

impl StartUp {
    /// Asserts that the process failed at start-up with `sentence` (the start of its init error)
    /// in its log, no debug dump of the error, and one request to the Runtime API: `POST
    /// /2018-06-01/runtime/init/error` with `Lambda-Runtime-Function-Error-Type:
    /// Runtime.InitError` and an `errorMessage` that starts with `sentence`. Returns the error
    /// document.
    ///
    /// # Panics
    /// If any of that does not hold.
    pub fn assert_init_error(&self, sentence: &str) -> serde_json::Value {
        assert!(!self.status.success(), "{self:?}");
        assert!(self.output.contains(sentence), "{}", self.output);
        assert!(
            !self.output.contains(" { var: "),
            "a debug dump: {}",
            self.output
        );
        let [posted] = self.requests.as_slice() else {
            panic!("one request to the Runtime API: {:?}", self.requests);
        };
        assert_eq!(
            (posted.method.as_str(), posted.path.as_str()),
            ("POST", "/2018-06-01/runtime/init/error")
        );
        assert_eq!(
            posted.header("Lambda-Runtime-Function-Error-Type"),
            Some("Runtime.InitError")
        );
        let body = posted.json();
        assert!(
            body["errorMessage"]
                .as_str()
                .is_some_and(|m| m.starts_with(sentence)),
            "{body}"
        );
        body
    }
}
