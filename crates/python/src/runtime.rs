//! The package's Tokio runtime, on which every AWS call runs with the GIL released, and the AWS
//! configuration the references are built with.

use std::future::Future;
use std::sync::OnceLock;

use pyo3::Python;

/// The package's runtime for AWS I/O (two workers: the calls are few and I/O-bound).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stream-refdata")
            .enable_all()
            .build()
            .expect("the stream-refdata runtime starts")
    })
}

/// Runs `work` to completion on the package's runtime with the GIL released.
pub(crate) fn block_on<T: Send>(py: Python<'_>, work: impl Future<Output = T> + Send) -> T {
    py.detach(|| runtime().block_on(work))
}

/// The AWS configuration from the environment, with `endpoint_url` (an emulator) when given.
pub(crate) fn sdk_config(py: Python<'_>, endpoint_url: Option<String>) -> aws_config::SdkConfig {
    let sdk = block_on(py, stream_refdata_aws::sdk_config(None));
    match endpoint_url {
        Some(url) => sdk.into_builder().endpoint_url(url).build(),
        None => sdk,
    }
}
