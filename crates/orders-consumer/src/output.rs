//! Enriched orders and dead letters as S3 objects with deterministic names. Pure.
//!
//! Names are the partition path, then the batch's shard and first record's sequence number, so
//! a batch retried from its first record overwrites its own objects instead of duplicating them.
//! Every line carries its source shard and sequence number (and sub-sequence number for a user
//! record of a KPL aggregate), so downstream can de-duplicate when a reference change between two
//! attempts moved a record to another partition.
//!
//! The handler's fourth step (build the output). Of this module only [`BatchOutput`], what a
//! batch wrote (a [`BatchSummary`](crate::BatchSummary)'s output), is public.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use stream_refdata::{Outcome, UnmatchedReason};
use stream_refdata_aws::Bytes;

use crate::orders::{Order, Product, Record, ReferenceRow};
use crate::partition::escape_partition_value;

/// The priority partition of orders written un-enriched (`UNMATCHED=pass`).
pub(crate) const UNMATCHED_PARTITION: &str = "__unmatched__";

/// One input record of a batch.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    /// Its Kinesis record's sequence number.
    pub(crate) sequence_number: String,
    /// Its index in a KPL aggregate (`None` for an ordinary Kinesis record).
    pub(crate) sub_sequence: Option<u64>,
    /// Its data.
    pub(crate) data: Vec<u8>,
    /// What it is.
    pub(crate) record: Record,
    /// Its row of the second reference (objects in S3), when one is configured and matched.
    pub(crate) reference_object: Option<Arc<ReferenceRow>>,
    /// When its Kinesis record arrived in the stream (`approximateArrivalTimestamp`, ms).
    pub(crate) arrival_ms: Option<i64>,
    /// The time it was enriched as of (`ENRICH_AS_OF=arrival`), written on its line.
    pub(crate) as_of: Option<AsOfMark>,
}

/// The time an order was enriched as of, and whether the answer was final then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AsOfMark {
    /// The time (ms since the epoch): its arrival.
    pub(crate) ms: i64,
    /// The feed's visibility bound had not passed it (`AS_OF_RECENT=provisional`): a change
    /// made before it may still appear.
    pub(crate) provisional: bool,
}

/// Where the batch came from and where its output goes.
#[derive(Clone, Debug)]
pub(crate) struct Naming<'a> {
    /// The batch's shard id.
    pub(crate) shard: &'a str,
    /// Its first record's sequence number.
    pub(crate) first_sequence: &'a str,
    /// Its first user record's sub-sequence number, when that record is a KPL aggregate.
    pub(crate) first_sub_sequence: Option<u64>,
    /// Output prefix.
    pub(crate) output_prefix: &'a str,
    /// Dead-letter prefix.
    pub(crate) dead_letter_prefix: &'a str,
    /// The line field for the second reference's columns, and the join column left out of it.
    pub(crate) reference_object_field: Option<(&'a str, &'a str)>,
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    reason: String,
    shard: &'a str,
    sequence_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_sequence_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    /// The time the order was looked up as of (`ENRICH_AS_OF=arrival`).
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    provisional: bool,
}

/// What a batch produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutput {
    /// Objects to write: key and JSON Lines body (shared with the puts, not copied).
    pub objects: Vec<(String, Bytes)>,
    /// Orders per `item=…/priority=…` partition path.
    pub partitions: BTreeMap<String, usize>,
    /// Each partition path's values as written (item, priority), for the catalog.
    pub partition_values: BTreeMap<String, (String, String)>,
    /// Orders enriched.
    pub enriched: usize,
    /// Orders without a reference item written un-enriched (`pass`).
    pub passed: usize,
    /// Orders without a reference item, dead-lettered.
    pub unmatched_dead_lettered: usize,
    /// Orders a reference was too stale for (past the staleness limit), dead-lettered with
    /// that reason.
    pub too_stale: usize,
    /// Orders whose reference as of their time could not be answered (`ENRICH_AS_OF=arrival`),
    /// dead-lettered with why.
    pub not_answered: usize,
    /// Orders without a reference item dropped (`drop`).
    pub dropped: usize,
    /// Records that are not orders, dead-lettered.
    pub invalid: usize,
    /// Change flags (not written).
    pub flags: usize,
    /// Of those, flags that did not parse (handled as flags naming nothing: the feed polled at
    /// their position).
    pub unreadable_flags: usize,
    /// Orders without a row held until it arrives (`UNMATCHED=hold`), this batch's.
    pub held: usize,
    /// Orders without a row dead-lettered at once because the shard's hold was full.
    pub hold_full: usize,
    /// Orders held by earlier batches, released into their partitions by this one.
    pub released: usize,
    /// Orders held by earlier batches, dead-lettered by this one past the grace period.
    pub expired: usize,
    /// Of the orders this batch released, how long the longest was held (ms).
    pub longest_held_ms: Option<u64>,
    /// Orders of this batch that left the hold before (a redelivered or redriven batch): not
    /// decided again (one released is written again as it was released, into the object of
    /// this batch it went to).
    pub already_ended: usize,
    /// Released orders' lines, each under the name of an object of their first attempt (the
    /// batch that held them): merged into that object (read, merged by record identity, written
    /// back only if unchanged meanwhile), never written over it.
    pub merges: Vec<(String, Bytes)>,
}

impl BatchOutput {
    /// Adds `other` (another batch's output of the same invocation) to this one: its objects
    /// and counts.
    pub(crate) fn absorb(&mut self, other: BatchOutput) {
        self.objects.extend(other.objects);
        for (path, n) in other.partitions {
            *self.partitions.entry(path).or_default() += n;
        }
        self.partition_values.extend(other.partition_values);
        self.enriched += other.enriched;
        self.passed += other.passed;
        self.unmatched_dead_lettered += other.unmatched_dead_lettered;
        self.too_stale += other.too_stale;
        self.not_answered += other.not_answered;
        self.dropped += other.dropped;
        self.invalid += other.invalid;
        self.flags += other.flags;
        self.unreadable_flags += other.unreadable_flags;
        self.held += other.held;
        self.hold_full += other.hold_full;
        self.released += other.released;
        self.expired += other.expired;
        self.longest_held_ms = self.longest_held_ms.max(other.longest_held_ms);
        self.already_ended += other.already_ended;
        self.merges.extend(other.merges);
    }

    /// Records accounted for; equals the batch's record count.
    pub fn accounted(&self) -> usize {
        self.enriched
            + self.passed
            + self.unmatched_dead_lettered
            + self.too_stale
            + self.not_answered
            + self.held
            + self.hold_full
            + self.already_ended
            + self.dropped
            + self.invalid
            + self.flags
    }
}

fn order_of(input: &Input) -> Option<&Order> {
    match &input.record {
        Record::Order(o) => Some(o),
        _ => None,
    }
}

/// One output partition of a batch: its path, body, lines, and values as written.
struct Partition {
    path: String,
    body: Vec<u8>,
    lines: usize,
    values: (String, String),
}

/// A batch's partitions, found by their unescaped (item, priority) values so that each pair is
/// escaped into its path once per batch, not once per line. Two pairs that escape to the same
/// path share its partition.
#[derive(Default)]
struct Partitions<'o> {
    by_values: HashMap<(&'o str, &'o str), usize>,
    by_path: HashMap<String, usize>,
    all: Vec<Partition>,
}

impl<'o> Partitions<'o> {
    /// The index in `all` of the partition of (item, priority), added if new.
    fn index(&mut self, item: &'o str, priority: &'o str) -> usize {
        match self.by_values.get(&(item, priority)) {
            Some(&i) => i,
            None => {
                let path = format!(
                    "item={}/priority={}/",
                    escape_partition_value(item),
                    escape_partition_value(priority),
                );
                let next = self.all.len();
                let i = *self.by_path.entry(path.clone()).or_insert(next);
                if i == next {
                    self.all.push(Partition {
                        path,
                        body: Vec::new(),
                        lines: 0,
                        values: (item.to_owned(), priority.to_owned()),
                    });
                }
                self.by_values.insert((item, priority), i);
                i
            }
        }
    }
}

/// What each enriched line of a reference item starts with, and its partition, by the item's
/// address: found once per item and batch instead of hashing its (item, priority) and writing
/// its fields for every line. The batch's outcomes hold each item (an `Arc`) until the build
/// is done, so an address names one item throughout.
#[derive(Default)]
struct Starts {
    by_item: HashMap<usize, (usize, Vec<u8>), foldhash::fast::FixedState>,
}

/// The fields of a batch's lines that are the same on every line, written once.
struct LineParts<'a> {
    /// `,"shard":<shard>,"sequence_number":`
    shard: Vec<u8>,
    /// The line field for the second reference's columns, and the join column left out of it.
    reference_object_field: Option<(&'a str, &'a str)>,
}

impl LineParts<'_> {
    fn new<'a>(naming: &Naming<'a>) -> LineParts<'a> {
        let mut shard = b",\"shard\":".to_vec();
        write_json(&mut shard, naming.shard);
        shard.extend_from_slice(b",\"sequence_number\":");
        LineParts {
            shard,
            reference_object_field: naming.reference_object_field,
        }
    }
}

/// `value` as JSON (serde_json's compact form), appended to `out`.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).unwrap_or_default();
}

/// An enriched line's start, up to its order's cost: `{"item":…,"priority":…,"price":…,"cost":`.
fn line_start(item: &str, priority: Option<&str>, price: Option<&serde_json::Number>) -> Vec<u8> {
    let mut start = Vec::with_capacity(64);
    start.extend_from_slice(b"{\"item\":");
    write_json(&mut start, item);
    start.extend_from_slice(b",\"priority\":");
    write_json(&mut start, &priority);
    start.extend_from_slice(b",\"price\":");
    write_json(&mut start, &price);
    start.extend_from_slice(b",\"cost\":");
    start
}

/// Builds the output objects of one batch from its outcomes, in input order.
pub(crate) fn build(naming: &Naming<'_>, outcomes: Vec<Outcome<Input, Product>>) -> BatchOutput {
    build_with(naming, outcomes, &[], &[])
}

/// One record's dead letter as an object of its own, named by the record's identity
/// (`<dead-letter prefix>held-<shard>-<sequence>[-<sub>].jsonl`): a held order dead-lettered by
/// a later batch (its own batch is long acknowledged, and no batch's object may be rewritten
/// without it).
pub(crate) fn own_dead_letter(
    dead_letter_prefix: &str,
    shard: &str,
    input: &Input,
    reason: String,
) -> (String, Bytes) {
    let text = std::str::from_utf8(&input.data).ok();
    let line = DeadLetter {
        reason,
        shard,
        sequence_number: &input.sequence_number,
        sub_sequence_number: input.sub_sequence,
        data: text,
        data_base64: text
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(&input.data)),
        as_of: None,
        provisional: false,
    };
    let mut body = serde_json::to_vec(&line).unwrap_or_default();
    body.push(b'\n');
    let name = match input.sub_sequence {
        None => format!(
            "{dead_letter_prefix}held-{shard}-{}.jsonl",
            input.sequence_number
        ),
        Some(sub) => format!(
            "{dead_letter_prefix}held-{shard}-{}-{sub}.jsonl",
            input.sequence_number
        ),
    };
    (name, body.into())
}

/// [`build`], with the batch's flags that did not parse (`unreadable_flags`, each counted among
/// the outcomes' flags) dead-lettered as well, with the reason and what was done instead: kept
/// for an operator, never lost; and the orders the full hold could not take (`hold_full`, not
/// among the outcomes), dead-lettered with that reason.
pub(crate) fn build_with(
    naming: &Naming<'_>,
    outcomes: Vec<Outcome<Input, Product>>,
    unreadable_flags: &[Input],
    hold_full: &[(Input, String)],
) -> BatchOutput {
    let mut lines = Lines::new(naming);
    for outcome in &outcomes {
        lines.add(outcome);
    }
    for (input, reason) in hold_full {
        lines.out.hold_full += 1;
        lines.dead_letter(input, reason.clone());
    }
    for input in unreadable_flags {
        if let Record::UnreadableFlag(why) = &input.record {
            lines.out.unreadable_flags += 1;
            lines.dead_letter(
                input,
                format!(
                    "{why}; handled as a flag naming nothing (the feed polled at its position)"
                ),
            );
        }
    }
    lines.into_output()
}

/// A batch's lines as [`build`] writes them: each partition's body, the dead letters, and the
/// counts. Partitions are found by values borrowed from the batch's outcomes (`'o`).
struct Lines<'o> {
    naming: &'o Naming<'o>,
    parts: LineParts<'o>,
    partitions: Partitions<'o>,
    starts: Starts,
    dead: Vec<u8>,
    out: BatchOutput,
}

impl<'o> Lines<'o> {
    fn new(naming: &'o Naming<'o>) -> Self {
        Lines {
            naming,
            parts: LineParts::new(naming),
            partitions: Partitions::default(),
            starts: Starts::default(),
            dead: Vec::new(),
            out: BatchOutput::default(),
        }
    }

    /// Writes (or counts) one outcome.
    fn add(&mut self, outcome: &'o Outcome<Input, Product>) {
        match outcome {
            Outcome::Enriched { record, item } => self.enriched(record, item),
            Outcome::Passed { record, reason } => self.passed(record, reason),
            Outcome::Rejected { record, reason } => {
                match reason {
                    UnmatchedReason::Stale { .. } => self.out.too_stale += 1,
                    _ => self.out.unmatched_dead_lettered += 1,
                }
                self.dead_letter(record, rejected_reason(reason, record));
            }
            Outcome::Dropped { .. } => self.out.dropped += 1,
            Outcome::Flag => self.out.flags += 1,
            Outcome::Invalid { record, reason } => {
                match record.record {
                    Record::TooStale(_) => self.out.too_stale += 1,
                    Record::NotAnswered(_) => self.out.not_answered += 1,
                    _ => self.out.invalid += 1,
                }
                self.dead_letter(record, reason.clone());
            }
            // A batch with held records is reported for retry by the handler and never built.
            Outcome::Held { .. } => {}
            // Held (its object is written by the handler); not written here.
            Outcome::Waiting { .. } => self.out.held += 1,
        }
    }

    /// An enriched order's line, in its reference item's partition.
    fn enriched(&mut self, record: &'o Input, item: &'o Arc<Product>) {
        let Some(order) = order_of(record) else {
            return;
        };
        self.out.enriched += 1;
        let (index, start) = self
            .starts
            .by_item
            .entry(Arc::as_ptr(item) as usize)
            .or_insert_with(|| {
                let index = self
                    .partitions
                    .index(item.item.as_str(), item.priority.as_str());
                let start = line_start(&item.item, Some(&item.priority), Some(&item.price));
                (index, start)
            });
        let partition = &mut self.partitions.all[*index];
        write_line(&mut partition.body, &self.parts, start, order, record, None);
        partition.lines += 1;
    }

    /// An order written un-enriched (`UNMATCHED=pass`), in its dish's unmatched partition.
    fn passed(&mut self, record: &'o Input, reason: &UnmatchedReason) {
        let Some(order) = order_of(record) else {
            return;
        };
        self.out.passed += 1;
        let index = self
            .partitions
            .index(order.dish.as_str(), UNMATCHED_PARTITION);
        let start = line_start(&order.dish, None, None);
        let partition = &mut self.partitions.all[index];
        let reason = reason.to_string();
        write_line(
            &mut partition.body,
            &self.parts,
            &start,
            order,
            record,
            Some(&reason),
        );
        partition.lines += 1;
    }

    /// A dead letter: the record's data (as text, or base64 when it is not UTF-8) and why.
    fn dead_letter(&mut self, input: &Input, reason: String) {
        let text = std::str::from_utf8(&input.data).ok();
        let line = DeadLetter {
            reason,
            shard: self.naming.shard,
            sequence_number: &input.sequence_number,
            sub_sequence_number: input.sub_sequence,
            data: text,
            data_base64: text
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&input.data)),
            as_of: input.as_of.map(|m| m.ms),
            provisional: input.as_of.is_some_and(|m| m.provisional),
        };
        serde_json::to_writer(&mut self.dead, &line).unwrap_or_default();
        self.dead.push(b'\n');
    }

    /// The batch's objects, in path order, the dead letters last, with their counts.
    fn into_output(self) -> BatchOutput {
        let Lines {
            naming,
            partitions,
            dead,
            mut out,
            ..
        } = self;
        let name = object_name(naming);
        let mut all = partitions.all;
        all.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        for p in all {
            out.objects.push((
                format!("{}{}{name}", naming.output_prefix, p.path),
                p.body.into(),
            ));
            out.partitions.insert(p.path.clone(), p.lines);
            out.partition_values.insert(p.path, p.values);
        }
        if !dead.is_empty() {
            out.objects
                .push((format!("{}{name}", naming.dead_letter_prefix), dead.into()));
        }
        out
    }
}

/// Why an order is dead-lettered as unmatched: the dish it has no (single) reference item for.
fn rejected_reason(reason: &UnmatchedReason, record: &Input) -> String {
    match (reason, order_of(record)) {
        (UnmatchedReason::NoItem, Some(o)) => format!("no reference item for dish {:?}", o.dish),
        (UnmatchedReason::Ambiguous(n), Some(o)) => {
            format!("{n} reference items for dish {:?}", o.dish)
        }
        (r, _) => r.to_string(),
    }
}

/// Merges the lines of `again` (orders of this batch released before) into the objects of
/// `output` of the same names. Those of an object `output` does not write are merged into it
/// where it is (`merges`): the release wrote them there, but a batch that started at the same
/// record and held fewer records may have rewritten it since.
pub(crate) fn merge_into(output: &mut BatchOutput, again: BatchOutput) {
    for (key, lines) in again.objects {
        match output.objects.iter_mut().find(|(k, _)| *k == key) {
            Some((_, body)) => *body = merge_lines(body, &lines).into(),
            None => output.merges.push((key, lines)),
        }
    }
}

/// A line's record identity, for [`merge_lines`].
#[derive(serde::Deserialize)]
struct LineId {
    sequence_number: String,
    #[serde(default)]
    sub_sequence_number: Option<u64>,
}

/// A line's place: (sequence number's length, its digits, sub-sequence number).
type LineOrder = (usize, String, Option<u64>);

/// Where a line goes in an object: by sequence number (numerically: they have no leading
/// zeros), then sub-sequence number. `None` for a line that names no record.
fn line_order(line: &[u8]) -> Option<LineOrder> {
    let id: LineId = serde_json::from_slice(line).ok()?;
    Some((
        id.sequence_number.len(),
        id.sequence_number,
        id.sub_sequence_number,
    ))
}

/// `existing` (an object's JSON Lines) with the lines of `added` merged in, in record order (as a
/// batch writes them): a line of `existing` naming a record `added` has is replaced, so merging
/// the same lines again changes nothing. A line that names no record stays after the line
/// before it.
pub(crate) fn merge_lines(existing: &[u8], added: &[u8]) -> Vec<u8> {
    let split = |body: &[u8]| -> Vec<Vec<u8>> {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let added: Vec<(Option<LineOrder>, Vec<u8>)> = split(added)
        .into_iter()
        .map(|l| (line_order(&l), l))
        .collect();
    let replaced: std::collections::HashSet<&LineOrder> =
        added.iter().filter_map(|(k, _)| k.as_ref()).collect();
    let mut all = Vec::new();
    let mut last = None;
    for line in split(existing) {
        let order = line_order(&line);
        if order.as_ref().is_some_and(|o| replaced.contains(o)) {
            continue;
        }
        let key = order.or_else(|| last.clone());
        last.clone_from(&key);
        // (existing lines before added ones of the same place: 0, then 1)
        all.push((key, 0u8, line));
    }
    for (key, line) in &added {
        all.push((key.clone(), 1, line.clone()));
    }
    // A stable sort: lines of one place keep their order.
    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut body = Vec::with_capacity(existing.len() + all.len());
    for (_, _, line) in all {
        body.extend_from_slice(&line);
        body.push(b'\n');
    }
    body
}

/// The batch's object name after its partition path or the dead-letter prefix: shard, first
/// sequence number and, for an aggregate, its first user record's sub-sequence number, so a
/// batch retried from its first record gets the same names.
fn object_name(naming: &Naming<'_>) -> String {
    match naming.first_sub_sequence {
        None => format!("{}-{}.jsonl", naming.shard, naming.first_sequence),
        Some(sub) => format!("{}-{}-{sub}.jsonl", naming.shard, naming.first_sequence),
    }
}

/// Appends an order's line to `body`: `start` (its item's fields, [`line_start`]), then the
/// order's and the record's. The same bytes as serde_json's for `EnrichedLine` (the tests'
/// reference), written in pieces: a batch's lines share most of them.
fn write_line(
    body: &mut Vec<u8>,
    parts: &LineParts<'_>,
    start: &[u8],
    order: &Order,
    input: &Input,
    unmatched: Option<&str>,
) {
    body.extend_from_slice(start);
    write_json(body, &order.cost);
    body.extend_from_slice(b",\"customer_id\":");
    write_json(body, &order.customer_id);
    body.extend_from_slice(&parts.shard);
    write_json(body, input.sequence_number.as_str());
    if let Some(sub) = input.sub_sequence {
        body.extend_from_slice(b",\"sub_sequence_number\":");
        write_json(body, &sub);
    }
    if let Some(unmatched) = unmatched {
        body.extend_from_slice(b",\"unmatched\":");
        write_json(body, unmatched);
    }
    if let Some(mark) = input.as_of {
        body.extend_from_slice(b",\"as_of\":");
        write_json(body, &mark.ms);
        if mark.provisional {
            body.extend_from_slice(b",\"provisional\":true");
        }
    }
    if let (Some((field, join)), Some(row)) =
        (parts.reference_object_field, &input.reference_object)
    {
        // The row is already in key order: its columns written as they stand, the join left out.
        body.push(b',');
        write_json(body, field);
        body.extend_from_slice(b":{");
        let columns = row.iter().filter(|(k, _)| k.as_str() != join);
        for (n, (k, v)) in columns.enumerate() {
            if n > 0 {
                body.push(b',');
            }
            write_json(body, k.as_str());
            body.push(b':');
            write_json(body, v);
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::Order;

    fn input(dish: &str, n: u64) -> Input {
        let order = Order {
            dish: dish.into(),
            cost: n.into(),
            customer_id: Some(n as i64),
        };
        Input {
            sequence_number: format!("{n:056}"),
            sub_sequence: None,
            data: Vec::new(),
            record: Record::Order(order),
            reference_object: None,
            arrival_ms: None,
            as_of: None,
        }
    }

    fn product(item: &str, priority: &str) -> Arc<Product> {
        Arc::new(Product {
            item: item.into(),
            price: 10.into(),
            priority: priority.into(),
        })
    }

    /// The order `input(dish, n)`, enriched with `item`.
    fn enriched(dish: &str, n: u64, item: &Arc<Product>) -> Outcome<Input, Product> {
        Outcome::Enriched {
            record: input(dish, n),
            item: Arc::clone(item),
        }
    }

    /// The JSON lines of an object's `body`, in order.
    fn json_lines(body: &[u8]) -> impl Iterator<Item = serde_json::Value> + '_ {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
    }

    fn naming() -> Naming<'static> {
        Naming {
            shard: "shardId-000000000000",
            first_sequence: "1",
            first_sub_sequence: None,
            output_prefix: "out/",
            dead_letter_prefix: "dead/",
            reference_object_field: None,
        }
    }

    /// An enriched line as serde_json writes it: the reference for [`write_line`]'s bytes.
    #[derive(Serialize)]
    struct EnrichedLine<'a> {
        item: &'a str,
        priority: Option<&'a str>,
        price: Option<&'a serde_json::Number>,
        cost: &'a serde_json::Number,
        customer_id: Option<i64>,
        shard: &'a str,
        sequence_number: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        sub_sequence_number: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unmatched: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        as_of: Option<i64>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        provisional: bool,
        #[serde(flatten)]
        reference: Option<BTreeMap<&'a str, BTreeMap<&'a str, &'a serde_json::Value>>>,
    }

    #[test]
    fn released_lines_merge_into_an_object_in_record_order_and_a_merge_repeated_changes_nothing() {
        let line = |seq: &str, sub: Option<u64>, tag: &str| {
            match sub {
            None => format!("{{\"item\":\"pizza\",\"sequence_number\":\"{seq}\",\"t\":\"{tag}\"}}\n"),
            Some(s) => format!("{{\"item\":\"pizza\",\"sequence_number\":\"{seq}\",\"sub_sequence_number\":{s},\"t\":\"{tag}\"}}\n"),
        }
        };
        // A first attempt wrote 9, 11 (sub 0 and 2) and 100; 10 and 11-1 were held.
        let first = [
            line("9", None, "a"),
            line("11", Some(0), "a"),
            line("11", Some(2), "a"),
            line("100", None, "a"),
        ]
        .concat();
        let released = [line("10", None, "r"), line("11", Some(1), "r")].concat();
        let merged = merge_lines(first.as_bytes(), released.as_bytes());
        let want = [
            line("9", None, "a"),
            line("10", None, "r"),
            line("11", Some(0), "a"),
            line("11", Some(1), "r"),
            line("11", Some(2), "a"),
            line("100", None, "a"),
        ]
        .concat();
        assert_eq!(String::from_utf8(merged.clone()).unwrap(), want);
        // The same release again (a crash before the held objects went): the same bytes.
        assert_eq!(merge_lines(&merged, released.as_bytes()), merged);
        // Into no object: the released lines alone.
        assert_eq!(merge_lines(b"", released.as_bytes()), released.as_bytes());
        // A line naming no record stays after the line before it.
        let odd = [
            line("9", None, "a"),
            "not json\n".to_owned(),
            line("100", None, "a"),
        ]
        .concat();
        let merged = merge_lines(odd.as_bytes(), line("50", None, "r").as_bytes());
        let want = [
            line("9", None, "a"),
            "not json\n".to_owned(),
            line("50", None, "r"),
            line("100", None, "a"),
        ]
        .concat();
        assert_eq!(String::from_utf8(merged).unwrap(), want);
    }

    #[test]
    fn lines_are_the_bytes_serde_json_writes_for_them() {
        let numbers: Vec<serde_json::Number> = vec![
            0.into(),
            12.into(),
            (-7).into(),
            u64::MAX.into(),
            serde_json::Number::from_f64(12.5).unwrap(),
            serde_json::Number::from_f64(-0.001).unwrap(),
            serde_json::Number::from_f64(1e300).unwrap(),
        ];
        let texts = [
            "burger",
            "",
            "a\"b\\c",
            "tab\there\nline",
            "é ✓ \u{1}",
            "__unmatched__",
        ];
        let row: ReferenceRow = [
            ("item".to_owned(), serde_json::json!("burger")),
            ("allergens".to_owned(), serde_json::json!("")),
            ("kcal".to_owned(), serde_json::json!(512.5)),
            (
                "tags".to_owned(),
                serde_json::json!(["a\"", null, {"x": 1}]),
            ),
        ]
        .into_iter()
        .collect();
        let row = Arc::new(row);
        let mut cases = 0;
        for (n, number) in numbers.iter().enumerate() {
            for (t, text) in texts.iter().enumerate() {
                let other = texts[(t + n + 1) % texts.len()];
                let order = Order {
                    dish: (*text).to_owned(),
                    cost: number.clone(),
                    customer_id: [None, Some(0), Some(-3), Some(i64::MAX)][(n + t) % 4],
                };
                let product = Product {
                    item: other.to_owned(),
                    price: numbers[(n + t) % numbers.len()].clone(),
                    priority: (*text).to_owned(),
                };
                for variant in 0..16 {
                    let input = Input {
                        sequence_number: if variant % 2 == 0 {
                            format!("{n:056}")
                        } else {
                            other.to_owned()
                        },
                        sub_sequence: (variant & 2 != 0).then_some(n as u64 * 1000),
                        data: Vec::new(),
                        record: Record::Order(order.clone()),
                        reference_object: (variant & 4 != 0).then(|| Arc::clone(&row)),
                        arrival_ms: None,
                        as_of: (variant & 8 != 0).then_some(AsOfMark {
                            ms: 1_795_650_067_123 + n as i64,
                            provisional: t % 2 == 0,
                        }),
                    };
                    let naming = Naming {
                        shard: texts[(t + 2) % texts.len()],
                        reference_object_field: (variant & 4 != 0).then_some((other, "item")),
                        ..naming()
                    };
                    let parts = LineParts::new(&naming);
                    for item in [Some(&product), None] {
                        let unmatched = item.is_none().then(|| format!("{text} {n}"));
                        let start = match item {
                            Some(p) => line_start(&p.item, Some(&p.priority), Some(&p.price)),
                            None => line_start(&order.dish, None, None),
                        };
                        let mut ours = Vec::new();
                        write_line(
                            &mut ours,
                            &parts,
                            &start,
                            &order,
                            &input,
                            unmatched.as_deref(),
                        );
                        let reference =
                            match (naming.reference_object_field, &input.reference_object) {
                                (Some((field, join)), Some(row)) => {
                                    let columns = row
                                        .iter()
                                        .filter(|(k, _)| k.as_str() != join)
                                        .map(|(k, v)| (k.as_str(), v))
                                        .collect();
                                    Some(BTreeMap::from([(field, columns)]))
                                }
                                _ => None,
                            };
                        let line = EnrichedLine {
                            item: item.map_or(order.dish.as_str(), |p| p.item.as_str()),
                            priority: item.map(|p| p.priority.as_str()),
                            price: item.map(|p| &p.price),
                            cost: &order.cost,
                            customer_id: order.customer_id,
                            shard: naming.shard,
                            sequence_number: &input.sequence_number,
                            sub_sequence_number: input.sub_sequence,
                            unmatched,
                            as_of: input.as_of.map(|m| m.ms),
                            provisional: input.as_of.is_some_and(|m| m.provisional),
                            reference,
                        };
                        let mut theirs = serde_json::to_vec(&line).unwrap();
                        theirs.push(b'\n');
                        assert_eq!(
                            String::from_utf8_lossy(&ours),
                            String::from_utf8_lossy(&theirs)
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, numbers.len() * texts.len() * 32);
    }

    /// An item whose priority changed at a flag mid-batch (a new `Arc` from the
    /// refreshed snapshot), the old one still used after the flag by another reading of it:
    /// each line carries its own item's values and lands in its own partition.
    #[test]
    fn an_item_changed_at_a_flag_mid_batch_writes_its_new_values_after_it() {
        let before = product("burger", "medium");
        let after = product("burger", "high");
        let outcomes = vec![
            enriched("burger", 1, &before),
            Outcome::Flag,
            enriched("burger", 2, &after),
            enriched("burger", 3, &before),
            enriched("burger", 4, &after),
        ];
        drop(before);
        let out = build(&naming(), outcomes);
        let mut lines = Vec::new();
        for (key, body) in &out.objects {
            for v in json_lines(body) {
                lines.push((
                    v["customer_id"].as_i64().unwrap(),
                    v["priority"].as_str().unwrap().to_owned(),
                    key.clone(),
                ));
            }
        }
        lines.sort();
        let want: Vec<(i64, String, String)> =
            [(1, "medium"), (2, "high"), (3, "medium"), (4, "high")]
                .into_iter()
                .map(|(n, p)| {
                    (
                        n,
                        p.to_owned(),
                        format!("out/item=burger/priority={p}/shardId-000000000000-1.jsonl"),
                    )
                })
                .collect();
        assert_eq!(lines, want);
        assert_eq!(out.accounted(), 5);
    }

    #[test]
    fn items_with_one_partition_share_its_object_and_keep_their_own_fields() {
        // GIVEN two items of one (item, priority) that differ in price (the range key), and an
        // item whose values escape to the same path as another's
        let cheap = product("burger", "medium");
        let dear = Arc::new(Product {
            price: 99.into(),
            ..(*cheap).clone()
        });
        let outcomes = vec![
            enriched("burger", 1, &cheap),
            enriched("burger", 2, &dear),
            enriched("burger", 3, &cheap),
        ];
        // WHEN the batch's objects are built
        let out = build(&naming(), outcomes);
        // THEN one object, each line with its own item's price, in input order
        assert_eq!(out.objects.len(), 1);
        let prices: Vec<(i64, i64)> = json_lines(&out.objects[0].1)
            .map(|v| {
                (
                    v["customer_id"].as_i64().unwrap(),
                    v["price"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(prices, [(1, 10), (2, 99), (3, 10)]);
        assert_eq!(out.partitions["item=burger/priority=medium/"], 3);
    }

    #[test]
    fn objects_are_in_path_order_and_values_that_escape_to_one_path_share_its_object() {
        // GIVEN enriched orders of three partitions, out of path order, and a passed order
        // whose partition (pizza, unmatched) is also that of an item whose priority is named
        // like the unmatched partition
        let outcomes = vec![
            enriched("salad", 1, &product("salad", "high")),
            enriched("burger", 2, &product("burger", "medium")),
            Outcome::Passed {
                record: input("pizza", 3),
                reason: UnmatchedReason::NoItem,
            },
            enriched("pizza", 4, &product("pizza", UNMATCHED_PARTITION)),
            enriched("salad", 5, &product("salad", "high")),
        ];
        // WHEN the batch's objects are built
        let out = build(&naming(), outcomes);
        // THEN one object per path, in path order, each with its lines in input order
        let keys: Vec<&str> = out.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "out/item=burger/priority=medium/shardId-000000000000-1.jsonl",
                "out/item=pizza/priority=__unmatched__/shardId-000000000000-1.jsonl",
                "out/item=salad/priority=high/shardId-000000000000-1.jsonl",
            ]
        );
        let customers = |body: &[u8]| -> Vec<i64> {
            json_lines(body)
                .map(|v| v["customer_id"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(customers(&out.objects[1].1), [3, 4]);
        assert_eq!(customers(&out.objects[2].1), [1, 5]);
        assert_eq!(
            out.partitions.values().copied().collect::<Vec<_>>(),
            [1, 2, 2]
        );
        assert_eq!(
            out.partition_values["item=pizza/priority=__unmatched__/"],
            ("pizza".to_owned(), UNMATCHED_PARTITION.to_owned())
        );
        assert_eq!((out.enriched, out.passed), (4, 1));
    }
}
