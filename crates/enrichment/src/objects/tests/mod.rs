//! The object loader's rules (`docs/design.md`, 2 reference data kept in S3, 3 in-stream flags
//! are a barrier), one case at a time and under a model-based random walk.

mod health;
mod model_walk;
mod object_reloads;
mod schema_change;
mod unreadable;
