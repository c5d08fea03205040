//! The object rules under a model-based random walk (`docs/design.md`, 2 reference data kept in
//! S3: **Fetch the current object**, **No shortcut for removals**, **A rejected object keeps its
//! previous rows**; 3: **The flag's object first**): full loads by gap file, flags, duplicate
//! flags, removals, undeletes, rejected objects, lookup-key groups that span objects, both
//! ambiguity policies and both bad-row policies. Every step compares every lookup, the
//! snapshot's size and the counters with a model of the documented behaviour.

use std::collections::BTreeMap;
use std::time::Duration;

use stream_refdata_protocol::ChangeFlag;

use crate::key::*;
use crate::rows::*;
use crate::test_support::objects::{flag, gap_file, Row, RowEnricher};
use crate::testing::MemoryBucket;
use crate::*;

const OBJECTS: [&str; 4] = [
    "reference/o0.csv",
    "reference/o1.csv",
    "reference/o10.csv",
    "reference/o3.csv.gz",
];
const ITEMS: [&str; 3] = ["a", "b", "c"];

/// What the model holds of one object: its ETag (bare) and its rows (item key, item, priority).
#[derive(Clone, Debug)]
struct Held {
    etag: Option<String>,
    rows: Vec<(ItemKey, String, String)>,
}

/// The object as the bucket has it: the rows it parses to, or `None` if rejected.
fn parse_model(
    key: &str,
    body: &[u8],
    bad_rows: BadRows,
) -> Option<Vec<(ItemKey, String, String)>> {
    let rows = parse_rows::<Row>(key, body, None).ok()?;
    if rejected_whole(&rows, bad_rows) {
        return None;
    }
    Some(
        rows.into_iter()
            .filter_map(|(line, r)| {
                let r = r.ok()?;
                Some((
                    ItemKey::from_iter([
                        KeyValue::S(key.to_owned()),
                        KeyValue::N(line.to_string()),
                    ]),
                    r.item,
                    r.priority,
                ))
            })
            .collect(),
    )
}

/// Whether an object of `rows` is rejected whole: any bad row under
/// [`BadRows::RejectObject`]; more bad rows than good ones under either policy.
fn rejected_whole<T, E>(rows: &[(u64, Result<T, E>)], bad_rows: BadRows) -> bool {
    let bad = rows.iter().filter(|(_, r)| r.is_err()).count();
    (bad_rows == BadRows::RejectObject && bad > 0) || bad * 2 > rows.len()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn body(rng: &mut Rng, counter: &mut u64, key: &str) -> Vec<u8> {
    let mut csv = String::from("item,priority\n");
    for _ in 0..rng.below(4) {
        if rng.below(6) == 0 {
            csv.push_str("bad,row,extra\n");
        } else {
            *counter += 1;
            let item = ITEMS[rng.below(ITEMS.len() as u64) as usize];
            csv.push_str(&format!("{item},p{counter}\n"));
        }
    }
    if key.ends_with(".gz") && rng.below(3) != 0 {
        // not gzip at all: an object that does not parse
        return csv.into_bytes();
    }
    if key.ends_with(".gz") {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(csv.as_bytes()).unwrap();
        return gz.finish().unwrap();
    }
    csv.into_bytes()
}

fn check(e: &RowEnricher, model: &BTreeMap<String, Held>, ambiguity: Ambiguity, step: &str) {
    let s = e.snapshot();
    let total: usize = model.values().map(|h| h.rows.len()).sum();
    assert_eq!(s.len(), total, "len after {step}: {model:?}");
    for item in ITEMS {
        let mut group: Vec<(&ItemKey, &String)> = model
            .values()
            .flat_map(|h| h.rows.iter())
            .filter(|(_, i, _)| i == item)
            .map(|(k, _, p)| (k, p))
            .collect();
        group.sort();
        let expected = match (group.len(), ambiguity) {
            (0, _) => None,
            (1, _) | (_, Ambiguity::LowestKey) => Some(Ok(group[0].1.clone())),
            (n, Ambiguity::Reject) => Some(Err(n)),
        };
        let got = match s.lookup(item) {
            Lookup::Found(r) => Some(Ok(r.priority.clone())),
            Lookup::Ambiguous(n) => Some(Err(n)),
            Lookup::Missing => None,
        };
        assert_eq!(got, expected, "lookup {item} after {step}: {model:?}");
    }
    for h in model.values() {
        for (k, _, p) in &h.rows {
            assert_eq!(
                s.get(k).map(|r| r.priority.clone()).as_ref(),
                Some(p),
                "get {k:?} after {step}"
            );
        }
    }
}

async fn walk(seed: u64, ambiguity: Ambiguity, bad_rows: BadRows) {
    let mut rng = Rng(seed);
    let mut counter = 0;
    let objects = MemoryBucket::default();
    for key in OBJECTS {
        if rng.below(2) == 0 {
            let b = body(&mut rng, &mut counter, key);
            objects.put(key, b);
        }
    }
    let config = ObjectConfig::new("ref-bucket", "reference/", |r: &Row| Some(r.item.clone()))
        .with_bad_rows(bad_rows)
        .with_ambiguity(ambiguity)
        .with_max_age(None)
        .with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            ..FeedSettings::default()
        });
    let mut e: RowEnricher =
        ObjectEnricher::new(config, objects.clone(), Some(objects.clone()), SystemClock);
    let mut model: BTreeMap<String, Held> = BTreeMap::new();
    let (mut reads, mut bad_objects, mut bad_rows_n) = (0u64, 0u64, 0u64);
    // what the enricher would count reading `key` now
    let count = |key: &str, b: &[u8], reads: &mut u64, bo: &mut u64, br: &mut u64| {
        *reads += 1;
        match parse_rows::<Row>(key, b, None) {
            Err(_) => *bo += 1,
            Ok(rows) => {
                let bad = rows.iter().filter(|(_, r)| r.is_err()).count() as u64;
                *br += bad;
                if rejected_whole(&rows, bad_rows) {
                    *bo += 1;
                }
            }
        }
    };
    let full_load =
        |model: &mut BTreeMap<String, Held>, reads: &mut u64, bo: &mut u64, br: &mut u64| {
            let mut next = BTreeMap::new();
            for key in OBJECTS {
                let Some(b) = objects.object(key) else {
                    continue;
                };
                count(key, &b, reads, bo, br);
                match parse_model(key, &b, bad_rows) {
                    Some(rows) => {
                        let etag = objects.etag(key).map(|e| e.trim_matches('"').to_owned());
                        next.insert(key.to_owned(), Held { etag, rows });
                    }
                    None => {
                        if let Some(h) = model.get(key) {
                            next.insert(key.to_owned(), h.clone());
                        }
                    }
                }
            }
            *model = next;
        };
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    full_load(&mut model, &mut reads, &mut bad_objects, &mut bad_rows_n);
    check(&e, &model, ambiguity, "first load");
    let mut gaps = 0;
    let mut stale_flags: Vec<ChangeFlag> = Vec::new();
    for step in 0..40 {
        let key = OBJECTS[rng.below(OBJECTS.len() as u64) as usize];
        let what = rng.below(10);
        let name;
        match what {
            // a write, not yet notified
            0..=2 => {
                let b = body(&mut rng, &mut counter, key);
                objects.put(key, b);
                stale_flags.push(flag(&objects, key, false));
                name = format!("{step}: put {key}");
            }
            // a delete, not yet notified
            3 => {
                objects.remove(key);
                name = format!("{step}: remove {key}");
            }
            // a flag for the object's current state (a removal flag if it is gone, or sometimes
            // a removal flag for an object that is there: an undelete)
            4..=6 => {
                let removed = objects.object(key).is_none() || rng.below(4) == 0;
                let f = flag(&objects, key, removed);
                let held_etag = model.get(key).and_then(|h| h.etag.clone());
                let duplicate = !removed && held_etag.is_some() && held_etag == f.change.etag;
                e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
                    .await;
                if !duplicate {
                    match objects.object(key) {
                        None => {
                            model.remove(key);
                        }
                        Some(b) => {
                            count(key, &b, &mut reads, &mut bad_objects, &mut bad_rows_n);
                            if let Some(rows) = parse_model(key, &b, bad_rows) {
                                let etag =
                                    objects.etag(key).map(|e| e.trim_matches('"').to_owned());
                                model.insert(key.to_owned(), Held { etag, rows });
                            }
                        }
                    }
                }
                name = format!("{step}: flag {key} removed={removed} duplicate={duplicate}");
            }
            // an old notification delivered again late (its ETag may be the held one, or not)
            7 if !stale_flags.is_empty() => {
                let f = stale_flags[rng.below(stale_flags.len() as u64) as usize].clone();
                let k = f.change.key.clone();
                let held_etag = model.get(&k).and_then(|h| h.etag.clone());
                let duplicate = held_etag.is_some() && held_etag == f.change.etag;
                e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
                    .await;
                if !duplicate {
                    match objects.object(&k) {
                        None => {
                            model.remove(&k);
                        }
                        Some(b) => {
                            count(&k, &b, &mut reads, &mut bad_objects, &mut bad_rows_n);
                            if let Some(rows) = parse_model(&k, &b, bad_rows) {
                                let etag = objects.etag(&k).map(|e| e.trim_matches('"').to_owned());
                                model.insert(k.clone(), Held { etag, rows });
                            }
                        }
                    }
                }
                name = format!("{step}: late flag {k} duplicate={duplicate}");
            }
            // a full load (a gap file)
            _ => {
                gaps += 1;
                gap_file(&objects, &format!("g{gaps}"));
                let report = e.refresh().await;
                assert!(
                    matches!(report.full_reload, Some(ReloadReason::Gap { .. })),
                    "{report:?}"
                );
                full_load(&mut model, &mut reads, &mut bad_objects, &mut bad_rows_n);
                name = format!("{step}: full load");
            }
        }
        check(&e, &model, ambiguity, &name);
        let m = e.metrics();
        assert_eq!(
            (m.objects_read, m.bad_objects, m.bad_rows),
            (reads, bad_objects, bad_rows_n),
            "counters after {name}"
        );
    }
}

#[tokio::test]
async fn a_random_walk_of_object_changes_matches_the_model() {
    for seed in 1..150u64 {
        for ambiguity in [Ambiguity::LowestKey, Ambiguity::Reject] {
            for bad_rows in [BadRows::RejectObject, BadRows::SkipRow] {
                walk(
                    seed.wrapping_mul(0x9E3779B97F4A7C15) | 1,
                    ambiguity,
                    bad_rows,
                )
                .await;
            }
        }
    }
}
