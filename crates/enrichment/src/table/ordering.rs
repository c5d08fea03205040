//! The table's ordering rules (`docs/design.md`, the change feed): which change of an item
//! applies from its image, which is skipped and which needs a consistent re-read; and how a
//! change file's stream relates to the stream the data follows.

use stream_refdata_protocol::SequenceNumber;

/// What the loader knows of an item: the last sequence number applied, and how current its
/// value is.
#[derive(Clone, Debug)]
pub(crate) struct ItemState {
    pub(crate) seq: Option<SequenceNumber>,
    pub(crate) stamp: Stamp,
}

/// How current an item's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// Applied from the image of a change created at this time (ms).
    Change(i64),
    /// Read from the table (a consistent read) between these times (ms, the consumer's clock):
    /// the first request was sent at `from`, the last answer came at `to`.
    Read { from: i64, to: i64 },
}

/// What to do with a change of an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The item already reflects it (or something newer).
    Skip,
    /// Apply its image (if it has one; else read the item).
    Apply,
    /// Only a consistent read can tell: read the item.
    Reread,
}

/// The per-item order rule (`docs/design.md` 1.3). A creation time is a second rounded down, so
/// a change happened within `[second, second + 1 s)`; `margin` covers clock skew.
///
/// - Applied from a change's image: an equal sequence number is skipped; an older one is skipped
///   unless it was created in a later second (then sequence and creation order disagree: read);
///   a newer one created in an earlier second is read; otherwise applied.
/// - Read from the table between `from` (first request) and `to` (last answer): an older
///   sequence number made before `from − margin` is reflected by the read (skipped); a newer one
///   made at or after `to + margin` applies from its image; anything else is read again (never
///   skipped on the consumer's clock alone: a newer change may have been made after the read).
pub(super) fn verdict(
    state: Option<&ItemState>,
    seq: &SequenceNumber,
    created_ms: i64,
    margin_ms: i64,
) -> Verdict {
    let Some(state) = state else {
        return Verdict::Apply;
    };
    if state.seq.as_ref() == Some(seq) {
        return Verdict::Skip;
    }
    let older = state.seq.as_ref().is_some_and(|applied| seq < applied);
    let second = created_ms.div_euclid(1000);
    match state.stamp {
        Stamp::Read { from, to } => {
            let (earliest, latest) = (second * 1000, second * 1000 + 999);
            if older && latest < from - margin_ms {
                Verdict::Skip
            } else if !older && earliest >= to + margin_ms {
                Verdict::Apply
            } else {
                Verdict::Reread
            }
        }
        Stamp::Change(applied_ms) => {
            let applied_second = applied_ms.div_euclid(1000);
            match (older, second.cmp(&applied_second)) {
                (true, std::cmp::Ordering::Greater) => Verdict::Reread,
                (true, _) => Verdict::Skip,
                (false, std::cmp::Ordering::Less) => Verdict::Reread,
                (false, _) => Verdict::Apply,
            }
        }
    }
}

/// How a change file's stream relates to the stream the data follows.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StreamOrder {
    /// The stream the data follows.
    Current,
    /// A newer stream of the table (or the table had no stream at the full load): what happened
    /// between the streams was never streamed.
    Newer,
    /// An older stream of the table: its changes are covered by the full load that moved on.
    Older,
    /// Another table's or another region's stream (a global table's replica).
    Foreign,
}

/// The table part and the creation label of a stream ARN
/// (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`).
pub(super) fn split_stream_arn(arn: &str) -> Option<(&str, &str)> {
    arn.rsplit_once("/stream/")
        .filter(|(table, label)| table.contains(":table/") && !label.is_empty())
}

/// Orders `arn` against the stream the data follows. Which stream is newer is decided by the
/// creation label (an ISO 8601 time, so it sorts by time), never by the order files are listed
/// in. A file without a parseable stream ARN counts as a newer stream: it cannot be placed, so
/// only a full load covers it.
pub(super) fn stream_order(current: Option<&str>, arn: &str) -> StreamOrder {
    let Some((table, label)) = split_stream_arn(arn) else {
        return StreamOrder::Newer;
    };
    let Some((current_table, current_label)) = current.and_then(split_stream_arn) else {
        return StreamOrder::Newer;
    };
    if table != current_table {
        return StreamOrder::Foreign;
    }
    match label.cmp(current_label) {
        std::cmp::Ordering::Equal => StreamOrder::Current,
        std::cmp::Ordering::Greater => StreamOrder::Newer,
        std::cmp::Ordering::Less => StreamOrder::Older,
    }
}
