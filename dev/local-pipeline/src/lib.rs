//! The local pipeline: the deployed stack's behaviour on one machine.
//!
//! It starts the emulator (or uses `AWS_ENDPOINT_URL`), provisions the resources that infra/
//! declares (with `local_emulator::provision`, the one provisioning code, which the tests use
//! too and which is checked against the template), and runs event source mappings with the
//! template's settings that invoke the three functions in-process with events shaped exactly
//! as AWS builds them: the reference table's stream → change-handler
//! (4 polls a second), the reference prefix's S3 notifications via SQS → s3-event-handler, and
//! each shard of the 4-shard orders stream → its own orders consumer (1 poll a second), with
//! `ReportBatchItemFailures` retries and per-shard checkpoints. A generator writes orders like
//! the original's Kinesis Data Generator. Nothing depends on this crate, and no function behaves
//! differently because it exists.
//!
//! Two modes: the scripted walkthrough ([`demo::run`]: the update and the S3 change at set
//! times, then a summary) and the interactive one ([`demo::live`]: orders flow until Ctrl-C and
//! the user changes the reference data with the seed's own `aws` commands, [`commands`]).

pub mod commands;
pub mod demo;
pub mod generator;
pub mod kafka_broker;
