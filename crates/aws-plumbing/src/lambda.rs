//! A function's handler served on the Lambda runtime: the loop that every function whose handler
//! takes the event as JSON shares, so each `main` only reads its configuration and builds its
//! handler (through the function's composition root).

use std::fmt::Debug;
use std::future::Future;

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

/// A function's handler as the runtime calls it: the event's JSON payload and the invocation's
/// request id in, the response (e.g. the batch item failures) or an error that says whether a
/// retry can help out.
pub trait JsonHandler {
    /// What the function answers (serialised as the invocation's response).
    type Response: Serialize;
    /// What fails the invocation; its [`Diagnostic`] names the error type Lambda reports.
    type Error: Into<Diagnostic> + Debug;

    /// Handles one invocation.
    fn handle(
        &self,
        payload: &Value,
        request_id: &str,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>>;
}

/// Serves `handler` for every invocation until the runtime stops.
///
/// # Errors
/// The runtime's, when it cannot reach the Runtime API.
pub async fn serve<H: JsonHandler>(handler: &H) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler
            .handle(&event.payload, &event.context.request_id)
            .await
    }))
    .await
}
