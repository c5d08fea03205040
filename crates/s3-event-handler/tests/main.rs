//! The s3-event-handler over the sample events, against the emulator, and as a binary at start-up.
//!
//! One test binary: each file of tests/ is a module of it.

mod emulator;
mod init_error;
mod kafka;
mod sample_events;
