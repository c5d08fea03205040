//! The life cycle's rules, shared by both kinds of consumer (a table, objects in S3): when a
//! full reload is due and that it stays pending until it succeeds, the flag barrier in a batch,
//! and what records get when nothing matches or the data is too old (`docs/design.md`, 1.4
//! full loads and reloads, 3 in-stream flags are a barrier, 5 unmatched records and staleness).

mod flag_barrier;
mod hold;
mod maximum_age_and_retention;
mod reload_pending;
mod unmatched_and_staleness;
