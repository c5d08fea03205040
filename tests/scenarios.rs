//! The cross-crate scenarios, in one test binary (one link of the whole workspace, one process
//! against the emulator that `scripts/test` starts): the walkthrough on the local pipeline, the
//! enrichment crate and the orders consumer following a feed that the real producers write,
//! faults, redelivery, redrive, snapshots and bad inputs. Each module is one scenario family;
//! `cargo test -p end-to-end --test scenarios MODULE::` runs one.

mod common;

mod bad_inputs;
mod enrichment_emulator;
mod faults;
mod follower_aws;
mod kafka;
mod many_consumers;
mod orders_consumer_feed;
mod redelivery;
mod redrive;
mod replay;
mod s3_path;
mod snapshots;
mod walkthrough;
