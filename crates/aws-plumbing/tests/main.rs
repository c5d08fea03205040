//! The S3 adapter against the emulator, and the init error as the Runtime API receives it.
//!
//! One test binary: each file of tests/ is a module of it.

mod init_error;
mod s3_store;
