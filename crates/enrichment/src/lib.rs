//! Reference data in memory for streaming enrichment, refreshed only when it changes.
//!
//! A streaming consumer embeds an [`TableEnricher`] (reference data in a DynamoDB table) or an
//! [`ObjectEnricher`] (reference data as objects in S3): it loads the reference data once, then follows
//! the S3 change feed that the `change-handler` Lambda writes, applying each change as a delta
//! (no table read when the change carries its new image), and enriches records with a
//! synchronous, lock-free lookup. Any number of consumers read the same feed, each with its own
//! position; nothing is ever deleted.
//!
//! # Lifecycle: load, follow, swap, read
//! 1. **Load** (first [`refresh`](ReferenceEnricher::refresh)): take the feed position, then a
//!    consistent, parallel Scan (or a read of every object under the prefix) into an immutable
//!    [`Snapshot`].
//! 2. **Follow** (every refresh, at most once per `poll_interval`): a conditional GET of the
//!    feed's `_head` pointer; only when it changed (or once a minute as a safety net) a listing
//!    with look-back from the previous listing, then the new change files in key order.
//! 3. **Apply**, per item, each change once, newest sequence number wins: a change with a new
//!    image is applied from it; a change without one (KEYS_ONLY), an `opaque` entry, a change
//!    whose creation time disagrees with sequence order, or a change stamped before the end of
//!    the last full load (plus the clock margin) is applied by a consistent re-read
//!    (BatchGetItem). Removals leave a tombstone, so a late older change cannot resurrect an
//!    item. An unreadable change file, a `gap` file, a new stream ARN or an opaque entry
//!    without keys triggers a full reload, and says why ([`ReloadReason`]). Objects: the object a
//!    flag or an S3-kind change file names is read again (a 404 removes its rows).
//! 4. **Swap**: the next snapshot is built from the current one (a full load's flat base is
//!    shared, the changes since are persistent maps over it) and published through an
//!    `ArcSwap`; readers never block.
//! 5. **Read**: [`enrich`](ReferenceEnricher::enrich) walks a batch in order; a record classified as a flag
//!    refreshes at its position, so every record after it sees the change.
//!
//! If a refresh fails the last good snapshot keeps serving, the error is logged, counted and
//! reported, and the next batch retries. Past `max_staleness` records are rejected with a
//! "stale" reason instead of being enriched with data that is too old. Unmatched records follow
//! the [`Unmatched`] policy (reject, pass, drop), each counted. The crate never installs a
//! tracing subscriber and knows nothing of any particular record type.
//!
//! # Several items per lookup key
//! The original joins orders on `dish == item` while the table's key is `(item, price)`. The
//! [`Ambiguity`] policy decides: the item with the lowest primary key (default, deterministic),
//! or reject the record as ambiguous.
//!
//! The lifecycle is written once ([`ReferenceEnricher`]); what is loaded is a loader's business
//! (`table/`, `objects/`), so both kinds share every rule, policy ([`Policies`]) and counter.
//! The contract these rules implement is `docs/design.md` in the repository.
//!
//! # Example: embedding it in a consumer loop
//! ```no_run
//! use stream_refdata::{Classified, TableEnricher, TableConfig, Outcome, SystemClock};
//! use stream_refdata::sources::{DynamoDbTable, S3Feed};
//!
//! #[derive(serde::Deserialize)]
//! struct Product { item: String, priority: String }
//!
//! # async fn next_batch() -> Vec<String> { vec![] }
//! # async fn run() {
//! let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let config = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
//!     Some(p.item.clone())
//! });
//! let table = DynamoDbTable::new(aws_sdk_dynamodb::Client::new(&sdk), "ProductPriority");
//! let feed = S3Feed::new(aws_sdk_s3::Client::new(&sdk), "demo-bucket-123456789012");
//! let mut enricher: TableEnricher<Product> = TableEnricher::new(config, table, Some(feed), SystemClock);
//!
//! loop {
//!     let dishes = next_batch().await; // e.g. decoded Kinesis records
//!     let (outcomes, report) = enricher
//!         .process_batch(dishes, |dish| {
//!             if dish == "CHANGE_FLAG" { Classified::Flag } else { Classified::Data(dish.clone()) }
//!         })
//!         .await;
//!     assert!(report.reconciles());
//!     for outcome in outcomes {
//!         match outcome {
//!             Outcome::Enriched { record, item } => println!("{record}: {}", item.priority),
//!             Outcome::Rejected { record, reason } => eprintln!("dead-letter {record}: {reason}"),
//!             _ => {}
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! Without AWS, the in-memory sources of `stream_refdata::testing` (feature `testing`) stand in for the table
//! and the bucket; the examples on [`TableEnricher`], [`ObjectEnricher`] and [`Reader`] use them.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod feed;
pub mod key;
mod lifecycle;
mod metrics;
mod objects;
mod policy;
mod snapshot;
pub mod sources;
mod table;

#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[path = "sources/memory.rs"]
pub mod testing;

pub mod history;

/// The library guide: what you choose when embedding the crate and what you get back (tables
/// and objects in S3). The rules behind it are the repository's `docs/design.md`.
pub mod guide {
    #![doc = include_str!("../docs/guide.md")]
    #![doc = include_str!("../docs/objects.md")]
}

pub use feed::FeedSettings;
pub use key::LookupKey;
pub use lifecycle::config::{self, ObjectConfig, TableConfig};
pub use lifecycle::outcome::{BatchReport, Classified, Outcome, UnmatchedReason};
pub use lifecycle::report::{Health, RefreshError, RefreshReport, ReloadReason};
pub use lifecycle::{Reader, ReferenceEnricher};
pub use metrics::MetricsSnapshot;
pub use objects::{rows, ObjectEnricher};
pub use policy::{Ambiguity, BadRows, Policies, Unmatched};
pub use snapshot::{Lookup, Snapshot};
pub use stream_refdata_aws::{Clock, SystemClock};
pub use table::{NotCurrent, TableEnricher};

#[cfg(test)]
mod test_support;
