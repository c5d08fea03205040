//! The redrive as an operator runs it, as the optional Lambda function, and invoking the
//! deployed function.
//!
//! One test binary: each file of tests/ is a module of it.

mod cli;
mod common;
mod invoke;
mod lambda;
