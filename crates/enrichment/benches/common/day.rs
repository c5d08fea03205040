//! A day of the reference for the history benches: a Scan snapshot of `n` items and `n`
//! changes of random items spread over the day, in change files of 100 as S3 holds them; and
//! the view built from them.

use std::sync::Arc;

use stream_refdata::config::{DecodeError, Decoder, LookupKeyFn};
use stream_refdata::history::{History, HistoryBuilder};
use stream_refdata::Ambiguity;
use stream_refdata_protocol::{
    ChangeFile, ChangeKind, EntryBody, EventName, Item, SequenceNumber, SnapshotEntry,
    SnapshotHeader, Source, StreamChange,
};

use super::{product_item, Product};

pub(crate) const START: i64 = 1_795_650_000_000;
const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/1";
const PRIORITIES: [&str; 4] = ["low", "medium", "high", "very high"];

pub(crate) fn header(n: usize) -> SnapshotHeader {
    SnapshotHeader {
        kind: stream_refdata_protocol::SNAPSHOT_KIND.into(),
        schema: stream_refdata_protocol::SNAPSHOT_SCHEMA,
        table: "ProductPriority".into(),
        key_attributes: vec!["item".into(), "price".into()],
        stream_arn: Some(ARN.into()),
        position_ms: START,
        full_load_end_ms: Some(START - 60_000),
        full_load_start_ms: None,
        write_window_ms: 20_000,
        clock_margin_ms: 0,
        created_ms: START,
        items: n as u64,
        tombstones: 0,
    }
}

pub(crate) fn entries(n: usize) -> Vec<SnapshotEntry> {
    (0..n)
        .map(|i| SnapshotEntry {
            seq: None,
            stamp: None,
            body: EntryBody::Item(product_item(format!("dish-{i:06}"), "low")),
        })
        .collect()
}

/// A day's change files as JSON, as S3 holds them: `changes` changes of random items spread
/// over the day, 100 to a file.
pub(crate) fn day_files(items: usize, changes: usize) -> Vec<Vec<u8>> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // (made a file at a time: the inputs' own peak stays below the views')
    let change = |n: usize, next: &mut dyn FnMut() -> u64| {
        let item = format!("dish-{:06}", next() as usize % items);
        let priority = PRIORITIES[next() as usize % 4];
        let image = product_item(item, priority);
        StreamChange {
            index: n % 100,
            event_id: format!("e{n}"),
            event_name: EventName::Modify,
            sequence_number: SequenceNumber::parse(&format!("{}", 10_u128.pow(20) + n as u128))
                .unwrap(),
            approximate_creation_ms: START + 120_000 + (n as i64 * 86_000_000 / changes as i64),
            stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
            keys: Item::from(
                image
                    .iter()
                    .filter(|(k, _)| *k == "item" || *k == "price")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
            new_image: Some(image),
            old_image: None,
            user_identity: None,
        }
    };
    (0..changes.div_ceil(100))
        .map(|f| {
            let chunk: Vec<StreamChange> = (f * 100..((f + 1) * 100).min(changes))
                .map(|n| change(n, &mut next))
                .collect();
            let file = ChangeFile {
                schema_version: 1,
                kind: ChangeKind::Dynamodb,
                written_at: String::new(),
                write_window_ms: 20_000,
                producer: "bench".into(),
                source: Source {
                    label: stream_refdata_protocol::source_label(ARN),
                    table: Some("ProductPriority".into()),
                    stream_arn: Some(ARN.into()),
                    region: None,
                    bucket: None,
                },
                changes: chunk,
                opaque: vec![],
                objects: vec![],
                reason: None,
            };
            serde_json::to_vec(&file).unwrap()
        })
        .collect()
}

pub(crate) fn builder() -> HistoryBuilder<Product, String> {
    let decode: Decoder<Product> =
        Arc::new(|i: Item| serde_dynamo::from_item(i).map_err(DecodeError::wrap));
    let key: LookupKeyFn<Product, String> = Arc::new(|p: &Product| Some(p.item.clone()));
    HistoryBuilder::new(&["item", "price"], decode, key, Ambiguity::LowestKey, START)
}

/// The day's view: the snapshot's entries and every file decoded and placed.
pub(crate) fn build(
    n: usize,
    snapshot: &[SnapshotEntry],
    files: &[Vec<u8>],
) -> History<Product, String> {
    build_from(n, snapshot.to_vec(), files)
}

/// [`build`] from entries handed over.
pub(crate) fn build_from(
    n: usize,
    snapshot: Vec<SnapshotEntry>,
    files: &[Vec<u8>],
) -> History<Product, String> {
    let mut b = builder();
    b.snapshot(&header(n), snapshot);
    for (i, body) in files.iter().enumerate() {
        b.file(&format!("f{i}"), ChangeFile::from_slice(body).unwrap());
    }
    b.build(i64::MAX)
}
