//! The table consumer's rig: an in-memory table of three products, a feed, a manual clock and a
//! consumer that follows the feed; it writes change files and gap files as the producers do, and
//! publishes feed snapshots as the compactor does.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use stream_refdata_protocol::{
    head_key, source_label, AttributeValue, ChangeFile, ChangeKey, ChangeKind, EventName,
    HeadPointer, Item, OpaqueRecord, SequenceNumber, SequenceRange, Source, StreamChange,
};

use super::{
    every_refresh, keys, modify, product, product_config, put_gap_file, Change, ManualClock,
    Product, AFTER_LOAD, ARN, BASE, PREFIX,
};
use crate::config::*;
use crate::key::ItemKey;
use crate::sources::{FeedSource, TableSource};
use crate::testing::{MemoryBucket, MemoryTable};
use crate::*;

/// A table consumer following the feed, on an in-memory table (salad high, pizza low, burger
/// medium), an in-memory feed and a manual clock.
pub(crate) struct Rig {
    pub(crate) table: MemoryTable,
    pub(crate) feed: MemoryBucket,
    pub(crate) clock: ManualClock,
    pub(crate) enricher: TableEnricher<Product, String, MemoryTable, MemoryBucket>,
}

/// A rig whose consumer's configuration `config` adjusts (the feed polled at every refresh).
pub(crate) fn rig_with(
    config: impl FnOnce(TableConfig<Product, String>) -> TableConfig<Product, String>,
) -> Rig {
    let table = MemoryTable::new(&["item", "price"]);
    table.set_stream_arn(Some(ARN));
    for (item, priority) in [("salad", "high"), ("pizza", "low"), ("burger", "medium")] {
        table.put(product(item, priority));
    }
    let feed = MemoryBucket::default();
    let clock = ManualClock(Arc::new(Mutex::new(
        DateTime::from_timestamp_millis(BASE).unwrap(),
    )));
    let cfg = config(product_config().with_feed(every_refresh()));
    let enricher = TableEnricher::new(cfg, table.clone(), Some(feed.clone()), clock.clone());
    Rig {
        table,
        feed,
        clock,
        enricher,
    }
}

/// A rig with the default configuration.
pub(crate) fn rig() -> Rig {
    rig_with(|c| c)
}

/// A stream change of `item` as the change-handler writes it (a new image if `priority` is
/// given).
fn change(seq: u64, event: EventName, item: &str, priority: Option<&str>) -> StreamChange {
    StreamChange {
        index: 0,
        event_id: format!("e{seq}"),
        event_name: event,
        sequence_number: SequenceNumber::parse(&seq.to_string()).unwrap(),
        approximate_creation_ms: 0,
        stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
        keys: keys(item),
        new_image: priority.map(|p| product(item, p)),
        old_image: None,
        user_identity: None,
    }
}

impl Rig {
    /// The rig after its consumer's first load, the clock moved past the load's margin: a
    /// change created from then on applies from its image.
    pub(crate) async fn loaded(mut self) -> Rig {
        self.enricher.refresh().await;
        self.clock.advance(AFTER_LOAD);
        self
    }

    /// Writes a change file at the clock's time, then the pointer, as the producer does.
    pub(crate) fn write(&self, changes: &[Change<'_>]) -> String {
        self.write_file(changes, ARN, vec![])
    }

    /// Writes a change file of `arn`'s stream with `opaque` entries at the clock's time, then the
    /// pointer.
    pub(crate) fn write_file(
        &self,
        changes: &[Change<'_>],
        arn: &str,
        opaque: Vec<OpaqueRecord>,
    ) -> String {
        let list: Vec<StreamChange> = changes
            .iter()
            .map(|c| {
                let mut sc = change(c.seq, c.event, c.item, c.priority);
                sc.approximate_creation_ms = BASE + c.created_ms;
                sc
            })
            .collect();
        let seqs = list.first().map(|f| SequenceRange {
            first: f.sequence_number.clone(),
            last: list.last().unwrap().sequence_number.clone(),
        });
        let key = ChangeKey {
            time: self.clock.now(),
            label: source_label(arn),
            unique: seqs.is_none().then(|| format!("u{}", self.clock.ms())),
            sequences: seqs,
        }
        .to_key(PREFIX);
        let file = ChangeFile {
            schema_version: 1,
            kind: ChangeKind::Dynamodb,
            written_at: String::new(),
            write_window_ms: 20_000,
            producer: "test".into(),
            source: Source {
                label: source_label(arn),
                table: Some("ProductPriority".into()),
                stream_arn: Some(arn.into()),
                region: None,
                bucket: None,
            },
            changes: list,
            opaque,
            objects: vec![],
            reason: None,
        };
        self.feed.put(&key, file.to_vec());
        self.point_head_at(&key);
        key
    }

    /// Points the feed's `_head` at `key`, as a producer does after its change file.
    pub(crate) fn point_head_at(&self, key: &str) {
        let pointer = HeadPointer {
            latest: key.into(),
            written_at: String::new(),
        };
        self.feed
            .put(&head_key(PREFIX), serde_json::to_vec(&pointer).unwrap());
    }

    /// The priority the consumer serves for `item`.
    pub(crate) fn priority(&self, item: &str) -> Option<String> {
        self.enricher
            .reader()
            .lookup(item)
            .map(|p| p.priority.clone())
    }

    /// Delivers `changes` to the consumer: a change file written (see [`Rig::write`]), then a
    /// refresh after it (see [`Rig::refresh_later`]).
    pub(crate) async fn deliver(&mut self, changes: &[Change<'_>]) -> RefreshReport {
        self.write(changes);
        self.refresh_later().await
    }

    /// Writes a change file keyed at `time`, as a producer that read its key time then and whose
    /// PUT became visible only now; the clock is left as it is.
    pub(crate) fn write_keyed_at(&self, time: DateTime<Utc>, changes: &[Change<'_>]) -> String {
        let now = self.clock.now();
        *self.clock.0.lock().unwrap() = time;
        let key = self.write(changes);
        *self.clock.0.lock().unwrap() = now;
        key
    }

    /// A refresh after the clock moved past the producer's write (and the full load's margin).
    pub(crate) async fn refresh_later(&mut self) -> RefreshReport {
        self.clock.advance(100);
        self.enricher.refresh().await
    }
}

impl Rig {
    /// Writes a `gap` change file at the clock's time, then the pointer.
    pub(crate) fn write_gap(&self) -> String {
        let key = put_gap_file(
            &self.feed,
            self.clock.now(),
            &format!("gap-{}", self.clock.ms()),
        );
        self.point_head_at(&key);
        key
    }
}

/// A follower of raw items: what the feed-compactor runs.
pub(crate) type RawFollower = TableEnricher<Item, String, MemoryTable, MemoryBucket>;

/// The configuration of a follower of the `ProductPriority` table's raw items (what the
/// feed-compactor runs), following the feed with `feed`.
pub(crate) fn raw_config(feed: FeedSettings) -> TableConfig<Item, String> {
    TableConfig::raw("ProductPriority", &["item", "price"], |_: &Item| {
        None::<String>
    })
    .with_feed(feed)
}

/// The priority a follower of raw items holds for the product `item` (price 100).
pub(crate) fn raw_priority<Tb: TableSource, Fd: FeedSource>(
    follower: &TableEnricher<Item, String, Tb, Fd>,
    item: &str,
) -> Option<String> {
    let key = ItemKey::from_item(&["item".to_owned(), "price".to_owned()], &keys(item)).ok()?;
    match follower.snapshot().get(&key)?.get("priority")? {
        AttributeValue::S(priority) => Some(priority.clone()),
        _ => None,
    }
}

impl Rig {
    /// A follower of raw items on the rig's table, feed and clock: what the feed-compactor runs.
    pub(crate) fn compactor(&self) -> RawFollower {
        self.compactor_on(self.clock.clone())
    }

    /// A compactor (see [`Rig::compactor`]) on its own clock.
    pub(crate) fn compactor_on(&self, clock: ManualClock) -> RawFollower {
        TableEnricher::new(
            raw_config(every_refresh()),
            self.table.clone(),
            Some(self.feed.clone()),
            clock,
        )
    }

    /// A compactor (see [`Rig::compactor`]) after its first load.
    pub(crate) async fn loaded_compactor(&self) -> RawFollower {
        let mut compactor = self.compactor();
        compactor.refresh().await;
        compactor
    }

    /// Publishes the snapshot of a compactor's first load (see [`Rig::publish`]); returns its
    /// key.
    pub(crate) async fn publish_first_snapshot(&self) -> String {
        self.publish(&self.loaded_compactor().await)
    }

    /// Publishes the snapshot of a compactor whose clock leads the producers' (and the rig's) by
    /// 4 s, within its default 5 s margin, with a change file just behind its position. The
    /// compactor Scans; a minute later salad changes to low and the compactor lists (at t1: L is
    /// t1 + 4 s on its clock). A producer read its key time 19 s before t1 and its PUT (burger
    /// high) became visible just after that listing, within W = 20 s: the file is in no listing
    /// before L, so only a look-back from L with the compactor's margin finds it. Both clocks then
    /// move 100 ms on. Returns the compactor.
    pub(crate) async fn publish_before_a_late_file(&self) -> RawFollower {
        let lead = 4_000;
        let compactor_clock = ManualClock(Arc::new(Mutex::new(
            self.clock.now() + chrono::Duration::milliseconds(lead),
        )));
        let mut compactor = self.compactor_on(compactor_clock.clone());
        let advance = |ms: i64| {
            self.clock.advance(ms);
            compactor_clock.advance(ms);
        };
        compactor.refresh().await; // Scan
        advance(60_000);
        self.table.put(product("salad", "low"));
        self.write(&[modify(5, "salad", "low", 60_000)]);
        compactor.refresh().await; // a complete listing at t1: L = t1 + 4 s (its clock)

        self.table.put(product("burger", "high"));
        let key_time = self.clock.now() - chrono::Duration::milliseconds(19_000);
        self.write_keyed_at(key_time, &[modify(10, "burger", "high", 60_000 - 19_500)]);
        self.publish(&compactor);
        advance(100);
        compactor
    }

    /// Refreshes the consumer, which refuses the feed snapshot, and says why.
    pub(crate) async fn refused(&mut self) -> String {
        self.enricher
            .refresh()
            .await
            .snapshot_refused
            .expect("refused")
    }

    /// Publishes `follower`'s snapshot as the compactor does: the compressed object, then the
    /// pointer to it. Returns the object's key.
    pub(crate) fn publish(&self, follower: &RawFollower) -> String {
        let now = self.clock.now();
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let (gz, header) = follower.write_feed_snapshot(gz, now).expect("current");
        let key = stream_refdata_protocol::snapshot_key(
            stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX,
            &header.table,
            now,
        );
        self.feed.put(&key, gz.finish().unwrap());
        let pointer = stream_refdata_protocol::SnapshotPointer::to(key.clone(), &header);
        self.feed.put(
            &stream_refdata_protocol::snapshot_pointer_key(
                stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX,
                &header.table,
            ),
            serde_json::to_vec(&pointer).unwrap(),
        );
        key
    }

    /// Rewrites the snapshot at `key` and its pointer as a compactor before schema 2 wrote them:
    /// schema 1, every entry with its keys (an item's beside the item).
    pub(crate) fn rewrite_as_schema_1(&self, key: &str) {
        use std::io::{BufRead, Write};
        let body = self.feed.object(key).unwrap();
        let lines = std::io::BufReader::new(flate2::bufread::GzDecoder::new(body.as_slice()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut items_rewritten = 0;
        for (i, line) in lines.lines().enumerate() {
            let mut v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if i == 0 {
                assert_eq!(v["schema"], 2);
                v["schema"] = 1.into();
            } else if let Some(item) = v.get("item") {
                assert!(v.get("keys").is_none());
                let keys: serde_json::Map<_, _> = ["item", "price"]
                    .into_iter()
                    .map(|k| (k.to_owned(), item[k].clone()))
                    .collect();
                v["keys"] = keys.into();
                items_rewritten += 1;
            }
            serde_json::to_writer(&mut gz, &v).unwrap();
            gz.write_all(b"\n").unwrap();
        }
        assert!(items_rewritten > 0);
        self.feed.put(key, gz.finish().unwrap());
        let pointer_key = stream_refdata_protocol::snapshot_pointer_key(
            stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX,
            "ProductPriority",
        );
        let mut pointer: stream_refdata_protocol::SnapshotPointer =
            serde_json::from_slice(&self.feed.object(&pointer_key).unwrap()).unwrap();
        pointer.schema = 1;
        self.feed
            .put(&pointer_key, serde_json::to_vec(&pointer).unwrap());
    }
}
