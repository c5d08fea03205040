//! Errors at start-up, reported the way Lambda shows them.
//!
//! A function that cannot start (a missing or invalid variable) should say so in one sentence,
//! not end with a Rust debug dump (`Error: Invalid { var: "CHANGE_BUCKET", … }`), and Lambda
//! should show that sentence as the function's init error. `lambda_runtime` 1.x reports init
//! errors only for its own SnapStart hooks (its `/init/error` request is crate-private), so
//! this module does it for errors before [`lambda_runtime::run`]-style loops start:
//!
//! ```no_run
//! # async fn example() {
//! # fn from_env() -> Result<String, stream_refdata_aws::ConfigError> { Ok(String::new()) }
//! let config = stream_refdata_aws::init::or_exit("change-handler", from_env()).await;
//! # }
//! ```
//!
//! [`or_exit`] logs the sentence (through `tracing` when a subscriber is installed, else on
//! stderr), posts it to `POST /2018-06-01/runtime/init/error` of the Runtime API at
//! `AWS_LAMBDA_RUNTIME_API` when that is set (header `Lambda-Runtime-Function-Error-Type:
//! Runtime.InitError`, body `{"errorMessage": …, "errorType": …}`, as `lambda_runtime` builds
//! its own), and exits with status 1.
//!
//! [`lambda_runtime::run`]: https://docs.rs/lambda_runtime/latest/lambda_runtime/fn.run.html

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The Runtime API's path for init errors.
pub const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

/// The header that carries the error's category.
pub const ERROR_TYPE_HEADER: &str = "Lambda-Runtime-Function-Error-Type";

/// The category sent in [`ERROR_TYPE_HEADER`] (the value `lambda_runtime` uses for init errors).
pub const INIT_ERROR_CATEGORY: &str = "Runtime.InitError";

/// How long the report may take; the process exits either way.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// An error that stops a function at start-up, as Lambda's init error: one sentence and the
/// error's type name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitError {
    message: String,
    error_type: String,
}

impl InitError {
    /// `function` cannot start because of `error`: the sentence `"<function> cannot start:
    /// <error>[: <cause>…]."` (the error's `Display`, never its `Debug`; causes not already in
    /// it appended) and the error's type name without its path (e.g. `ConfigError`).
    pub fn new<E: std::error::Error>(function: &str, error: &E) -> InitError {
        let mut message = format!("{function} cannot start: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        if !message.ends_with('.') {
            message.push('.');
        }
        InitError {
            message,
            error_type: short_type_name::<E>().to_owned(),
        }
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error's type name, e.g. `ConfigError`.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The Runtime API's error document: `{"errorMessage": …, "errorType": …}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "errorMessage": self.message,
            "errorType": self.error_type,
        }))
        .unwrap_or_default()
    }
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `a::b::ConfigError` → `ConfigError` (generic arguments dropped).
fn short_type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let plain = full.split('<').next().unwrap_or(full);
    plain.rsplit("::").next().unwrap_or(plain)
}

/// Why an init error could not be reported. The process ends anyway; this is logged.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `AWS_LAMBDA_RUNTIME_API` does not make a valid URL.
    #[error("the Runtime API address {address:?} is not a host:port")]
    Address {
        /// The value of `AWS_LAMBDA_RUNTIME_API`.
        address: String,
        /// Why the URL made of it does not parse.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// The request could not be built, sent or answered (the HTTP client's error is the source).
    #[error("posting the init error to the Runtime API failed: {0}")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The Runtime API answered with a status other than 2xx.
    #[error("the Runtime API answered the init error with HTTP {0}")]
    Status(u16),
    /// No answer in time.
    #[error("the Runtime API did not answer the init error within {0:?}")]
    Timeout(Duration),
}

/// Posts `error` to the Runtime API at `runtime_api` (`host:port`, the value of
/// `AWS_LAMBDA_RUNTIME_API`): `POST /2018-06-01/runtime/init/error` with the
/// [`ERROR_TYPE_HEADER`] and the JSON error document. Lambda answers 202 and expects the
/// process to exit.
///
/// # Errors
/// [`ReportError`] if the request fails, is not accepted, or takes more than 5 s.
pub async fn report(runtime_api: &str, error: &InitError) -> Result<(), ReportError> {
    let uri: hyper::Uri = format!("http://{runtime_api}{INIT_ERROR_PATH}")
        .parse()
        .map_err(|source| ReportError::Address {
            address: runtime_api.to_owned(),
            source,
        })?;
    let request = hyper::Request::post(uri)
        .header(ERROR_TYPE_HEADER, INIT_ERROR_CATEGORY)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(error.to_json())))
        .map_err(|e| ReportError::Request(e.into()))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| ReportError::Request(e.into()))?;
        let status = response.status();
        // Read the (empty) answer so the connection ends cleanly.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(ReportError::Status(status.as_u16()))
        }
    };
    tokio::time::timeout(REPORT_TIMEOUT, exchange)
        .await
        .map_err(|_| ReportError::Timeout(REPORT_TIMEOUT))?
}

/// Ends the process for `error`: logs its sentence, reports it as the function's init error
/// when `AWS_LAMBDA_RUNTIME_API` is set (a failed report is logged too), and exits with
/// status 1.
pub async fn exit(error: InitError) -> ! {
    log(&error);
    if let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|a| !a.trim().is_empty())
    {
        if let Err(e) = report(&api, &error).await {
            warn(&e);
        }
    }
    std::process::exit(1)
}

/// The value of `result`, or the end of the process with its error as `function`'s init error
/// (see [`exit`]). Use it in `main` for everything read before the runtime starts.
pub async fn or_exit<T, E: std::error::Error>(function: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => exit(InitError::new(function, &e)).await,
    }
}

fn log(error: &InitError) {
    if tracing::dispatcher::has_been_set() {
        tracing::error!(error_type = error.error_type(), "{}", error.message());
    } else {
        eprintln!("{}", error.message());
    }
}

fn warn(e: &ReportError) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{e}");
    } else {
        eprintln!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigError;

    #[derive(Debug, thiserror::Error)]
    #[error("loading the table failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_message_is_a_sentence_naming_the_variable_not_a_debug_dump() {
        let error = ConfigError::Invalid {
            var: "CHANGE_BUCKET",
            value: "b".into(),
            reason: "not a bucket name (3-63 lowercase letters, digits, '-' or '.')".into(),
        };
        let init = InitError::new("change-handler", &error);
        assert_eq!(
            init.message(),
            "change-handler cannot start: environment variable CHANGE_BUCKET=\"b\" is invalid: \
             not a bucket name (3-63 lowercase letters, digits, '-' or '.')."
        );
        assert!(!init.message().contains("Invalid {"), "{init}");
        assert_eq!(init.error_type(), "ConfigError");

        let missing = InitError::new("orders-consumer", &ConfigError::Missing { var: "X" });
        assert_eq!(
            missing.to_string(),
            "orders-consumer cannot start: environment variable X is required but not set."
        );
    }

    #[test]
    fn causes_are_appended_once() {
        let e = Outer(std::io::Error::other("connection refused"));
        let init = InitError::new("f", &e);
        assert_eq!(
            init.message(),
            "f cannot start: loading the table failed: connection refused."
        );
        assert_eq!(init.error_type(), "Outer");
    }

    #[test]
    fn the_error_document_has_the_runtime_api_field_names() {
        let init = InitError::new("f", &ConfigError::Missing { var: "X" });
        let json: serde_json::Value = serde_json::from_slice(&init.to_json()).unwrap();
        assert_eq!(json["errorMessage"], init.message());
        assert_eq!(json["errorType"], "ConfigError");
        assert_eq!(json.as_object().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_runtime_api_that_is_not_there_is_a_report_error_not_a_hang() {
        let init = InitError::new("f", &ConfigError::Missing { var: "X" });
        // Port 9 (discard) on loopback: nothing listens in a test environment.
        let err = report("127.0.0.1:9", &init).await.unwrap_err();
        assert!(
            matches!(err, ReportError::Request(_) | ReportError::Timeout(_)),
            "{err}"
        );
        assert!(matches!(
            report("not a host", &init).await.unwrap_err(),
            ReportError::Address { .. }
        ));
    }
}
