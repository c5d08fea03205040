//! The table loader's rules (`docs/design.md`, 1.3 applying changes, 1.4 full loads and
//! reloads, 1.5 gaps, kinds and untypeable records, 5a feed snapshots): the full load and the
//! files that force one, the per-item order of changes, stream switches, loading from a feed
//! snapshot, and the clock margin data loaded from one needs.

mod clock_margin_floor;
mod feed_snapshot_catch_up;
mod feed_snapshot_load;
mod full_load;
mod ordering;
mod schema_change;
mod streams;
