//! Counters of what the enricher did, readable at any time as a plain struct.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by the enricher and its readers.
        #[derive(Debug, Default)]
        pub(crate) struct Metrics {
            $($(#[$doc])* pub(crate) $name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
            /// Time since the snapshot was last known to be current (last successful poll of
            /// the feed or full load); `None` before the first load.
            pub staleness: Option<Duration>,
        }

        impl MetricsSnapshot {
            /// Every counter by name (for bindings and log lines), staleness aside.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }

        impl Metrics {
            /// Reads every counter.
            pub(crate) fn snapshot(&self, staleness: Option<Duration>) -> MetricsSnapshot {
                MetricsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    staleness,
                }
            }
        }
    };
}

counters! {
    /// Lookups that found an item.
    hits,
    /// Lookups that found none.
    misses,
    /// Lookups with several candidate items under [`crate::Ambiguity::Reject`].
    ambiguous,
    /// In-stream change flags met.
    flags,
    /// Change files read from the feed.
    change_files_read,
    /// Changes applied from a change file's new image (no table read).
    changes_applied,
    /// Changes skipped because the item already had that or a newer sequence number.
    changes_skipped,
    /// Items re-read from the table (KEYS_ONLY changes, opaque entries, order disagreements,
    /// changes around a full load).
    items_reread,
    /// Refreshes that applied a delta.
    delta_refreshes,
    /// Full reloads of the table.
    full_refreshes,
    /// Of those, loads of a table from a feed snapshot (no table items read).
    snapshot_loads,
    /// Of those, loads of a table by a Scan.
    scan_loads,
    /// Feed snapshots absent or refused (each with its reason in the log): a Scan instead.
    snapshot_fallbacks,
    /// Items read from DynamoDB (Scan and BatchGetItem).
    items_read,
    /// ListObjectsV2 requests on the feed.
    feed_lists,
    /// GetObject requests for change files.
    feed_gets,
    /// Conditional GETs of the `_head` pointer.
    head_polls,
    /// Of those, answered 304 Not Modified.
    head_not_modified,
    /// Keys under the feed prefix that are not change files (legacy marker, pointer), counted once each.
    ignored_keys,
    /// Change files of sources or kinds this enricher does not use.
    ignored_files,
    /// Of those, DynamoDB change files of an older stream of the table, or of another
    /// region's stream (a global table's replica).
    other_stream_files,
    /// Protocol change flags that name reference data this enricher does not hold.
    ignored_flags,
    /// Refreshes that failed (the last good snapshot kept serving).
    refresh_errors,
    /// Reference items that could not be decoded into the user's type (left out, logged).
    undecodable_items,
    /// Reference objects read from S3 (object sources).
    objects_read,
    /// Rows of reference objects that did not parse (reported with object key and line).
    bad_rows,
    /// Reference objects rejected as a whole (their previous rows kept).
    bad_objects,
    /// Of those, reads refused for a reason a retry alone cannot cure (archived, access
    /// denied, a KMS key the consumer may not use): read again after a growing wait.
    unreadable_objects,
    /// Duration of the last refresh that did any work, in microseconds.
    last_refresh_micros,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }
}
