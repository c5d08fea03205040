//! The local pipeline: the deployed stack's behaviour on one machine.
//!
//! It starts the emulator (or uses `AWS_ENDPOINT_URL`), provisions the resources that infra/
//! declares, and runs the event source mappings that invoke the functions in-process with
//! events shaped exactly as AWS builds them. Nothing depends on this crate, and no function
//! behaves differently because it exists.
//!
//! Today it runs the DynamoDB path: the reference table's stream → change-handler → change
//! files in S3, and the original walkthrough's update (burger: medium → high).

pub mod demo;
pub mod provision;
