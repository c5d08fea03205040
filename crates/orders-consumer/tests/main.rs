//! The orders consumer against the emulator, and as a binary at start-up.
//!
//! One test binary: each file of tests/ is a module of it.

mod as_of;
mod emulator;
mod hold;
mod init_error;
mod kafka;
mod reference_objects;
