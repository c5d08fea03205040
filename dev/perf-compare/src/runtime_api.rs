//! A local Lambda Runtime API endpoint for one function process.
//!
//! The process (a Rust binary on `lambda_runtime`, or Python's `awslambdaric`) polls
//! `GET /2018-06-01/runtime/invocation/next` as it does on AWS; [`RuntimeApi::invoke`] hands it
//! one event and waits for `POST …/invocation/{id}/response` (or `/error`). The first `next`
//! request marks the process ready, so start-up is measured the way Lambda's init phase ends.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

const PREFIX: &str = "/2018-06-01/runtime";

/// What the function answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `…/response`: the handler's result.
    Response(Bytes),
    /// `…/error` or `init/error`: the error document.
    Error(Bytes),
}

struct Pending {
    id: String,
    payload: Bytes,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct State {
    queue: Mutex<VecDeque<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    queued: Notify,
    first_next: Mutex<Option<Instant>>,
    ready: Notify,
    init_error: Mutex<Option<Bytes>>,
    next_id: Mutex<u64>,
}

/// The endpoint; it serves until the runtime it was started on ends.
#[derive(Clone)]
pub struct RuntimeApi {
    address: String,
    state: Arc<State>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("address", &self.address)
            .finish()
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let state = Arc::new(State::default());
        let served = state.clone();
        test_support::serve_http(listener, move |req| {
            let state = served.clone();
            async move { Ok::<_, Infallible>(handle(state, req).await) }
        });
        Ok(RuntimeApi { address, state })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// When the process first asked for an event, waiting up to `timeout` for it. An init
    /// error reported by the process is returned as the error.
    pub async fn ready(&self, timeout: Duration) -> Result<Instant, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.ready.notified();
            if let Some(at) = *lock(&self.state.first_next) {
                return Ok(at);
            }
            if let Some(e) = lock(&self.state.init_error).clone() {
                return Err(String::from_utf8_lossy(&e).into_owned());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!("no request for an event within {timeout:?}"));
            }
        }
    }

    /// Hands `payload` to the process and waits for its answer.
    pub async fn invoke(&self, payload: Bytes) -> Result<Answer, String> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut n = lock(&self.state.next_id);
            *n += 1;
            format!("00000000-0000-4000-8000-{:012}", *n)
        };
        lock(&self.state.queue).push_back(Pending {
            id,
            payload,
            answer: tx,
        });
        self.state.queued.notify_one();
        rx.await
            .map_err(|_| "the function process went away without answering".to_owned())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, Bytes::from_static(b"unknown path"));
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, Bytes::from(e.to_string())),
    };
    if rest == "/invocation/next" {
        {
            let mut first = lock(&state.first_next);
            if first.is_none() {
                *first = Some(Instant::now());
                state.ready.notify_waiters();
            }
        }
        let pending = loop {
            let notified = state.queued.notified();
            if let Some(p) = lock(&state.queue).pop_front() {
                break p;
            }
            notified.await;
        };
        let deadline = std::time::SystemTime::now() + Duration::from_secs(900);
        let deadline_ms = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        lock(&state.in_flight).insert(pending.id.clone(), pending.answer);
        let mut r = reply(StatusCode::OK, pending.payload);
        let h = r.headers_mut();
        let header = |v: String| v.parse().expect("header value");
        h.insert("lambda-runtime-aws-request-id", header(pending.id));
        h.insert(
            "lambda-runtime-deadline-ms",
            header(deadline_ms.to_string()),
        );
        h.insert(
            "lambda-runtime-invoked-function-arn",
            header("arn:aws:lambda:us-east-1:123456789012:function:local".to_owned()),
        );
        h.insert(
            "lambda-runtime-trace-id",
            header("Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
        );
        h.insert("content-type", header("application/json".to_owned()));
        return r;
    }
    if rest == "/init/error" {
        *lock(&state.init_error) = Some(body);
        state.ready.notify_waiters();
        return reply(StatusCode::ACCEPTED, Bytes::from_static(b"{}"));
    }
    if let Some(tail) = rest.strip_prefix("/invocation/") {
        let (id, kind) = tail.split_once('/').unwrap_or((tail, ""));
        let answer = match kind {
            "response" => Answer::Response(body),
            "error" => Answer::Error(body),
            _ => return reply(StatusCode::NOT_FOUND, Bytes::from_static(b"unknown path")),
        };
        return match lock(&state.in_flight).remove(id) {
            Some(tx) => {
                let _ = tx.send(answer);
                reply(StatusCode::ACCEPTED, Bytes::from_static(b"{}"))
            }
            None => reply(
                StatusCode::NOT_FOUND,
                Bytes::from_static(b"unknown request id"),
            ),
        };
    }
    reply(StatusCode::NOT_FOUND, Bytes::from_static(b"unknown path"))
}
