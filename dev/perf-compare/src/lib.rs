//! The side-by-side comparison of stream-refdata with the original design (issue 7).
//!
//! Every function, ours (the release binaries) and the Python peer of the original (under
//! `peer/`, run by `awslambdaric`, the Lambda Python runtime interface client), runs as its own
//! process behind its own local Lambda Runtime API ([`RuntimeApi`]), and reaches the emulator
//! through its own request-counting proxy, so start-up, handler time, CPU, memory and AWS
//! requests are measured the same way for both. The `compare` binary runs the scenarios and
//! writes the report; `scripts/compare` builds and runs it in one command.

pub mod function;
pub mod runtime_api;

pub use function::{FunctionSpec, Invoked, LocalFunction, ProcessStats};
pub use runtime_api::{Answer, RuntimeApi};
pub mod in_memory;
pub mod live;
pub mod plot;
pub mod report;
pub mod sequential;
pub mod stats;
pub mod workload;
pub mod world;
