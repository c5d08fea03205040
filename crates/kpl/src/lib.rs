//! De-aggregation of Kinesis records aggregated by the Kinesis Producer Library (KPL), and by
//! every library that writes its format (AWS's `kinesis-aggregation` libraries), into their user
//! records. Pure: no AWS SDK, no I/O.
//!
//! An aggregated Kinesis record is the 4 magic bytes `F3 89 9A C2`, a protobuf
//! `AggregatedRecord` (a table of partition keys, a table of explicit hash keys, and the user
//! records, each naming its keys by index), and the MD5 digest of that protobuf body. A record
//! without the magic bytes is an ordinary record ([`Deaggregated::Plain`]). The protobuf is
//! decoded with `prost` (the messages are declared here with its derive, so no `protoc` runs at
//! build time) and the digest checked with the RustCrypto `md-5` crate.
//!
//! Each user record keeps its Kinesis record's sequence number (the caller's) and gets its index
//! in the aggregate as its **sub-sequence number**, as the Kinesis Client Library and AWS's
//! deaggregators number them.
//!
//! **Errors are per Kinesis record.** A record that starts with the magic bytes but is not a
//! valid aggregate (a wrong MD5 trailer, a body that is not the protobuf, a key index out of its
//! table, no user records) is an [`AggregateError`] for that record alone: de-aggregate each
//! record of a batch on its own, and report the ones that fail (a partial-batch failure, a
//! dead letter). AWS's Python deaggregator passes such a record on as if it were an ordinary
//! one; here it is never mistaken for data.
//!
//! ```
//! use kpl_deaggregation::{deaggregate, Deaggregated};
//!
//! // An ordinary record passes through.
//! assert_eq!(deaggregate(br#"{"dish":"pizza"}"#), Ok(Deaggregated::Plain));
//!
//! // An aggregate: one user record "hi" under partition key "k", byte for byte as AWS's
//! // aggregation library writes it.
//! let aggregate = [
//!     0xF3, 0x89, 0x9A, 0xC2, // magic
//!     0x0A, 0x01, b'k', // partition_key_table: ["k"]
//!     0x1A, 0x06, 0x08, 0x00, 0x1A, 0x02, b'h', b'i', // records: [{key 0, data "hi"}]
//!     0x19, 0x87, 0x5F, 0xA5, 0x09, 0xCF, 0xD3, 0x64, // MD5 of the body
//!     0xDB, 0xCE, 0x25, 0xB3, 0x4F, 0xE3, 0x57, 0x42,
//! ];
//! match deaggregate(&aggregate) {
//!     Ok(Deaggregated::Aggregated(records)) => {
//!         assert_eq!(records[0].partition_key, "k");
//!         assert_eq!(records[0].sub_sequence_number, 0);
//!         assert_eq!(records[0].data, b"hi");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

use md5::{Digest, Md5};

/// The magic bytes that start an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// The KPL's `AggregatedRecord` message.
#[derive(Clone, PartialEq, prost::Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<AggregatedEntry>,
}

/// The KPL's `Record` message: one user record.
#[derive(Clone, PartialEq, prost::Message)]
struct AggregatedEntry {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

/// The KPL's `Tag` message (unused by consumers, decoded so that it does not fail).
#[derive(Clone, PartialEq, prost::Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// One user record of an aggregated Kinesis record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserRecord {
    /// Its own partition key.
    pub partition_key: String,
    /// Its explicit hash key, when the producer gave one.
    pub explicit_hash_key: Option<String>,
    /// Its index in the aggregate: with the Kinesis record's sequence number, its position in
    /// the stream.
    pub sub_sequence_number: u64,
    /// Its data.
    pub data: Vec<u8>,
}

/// Why a record with the magic bytes is not a valid aggregate: report the whole Kinesis record
/// with this reason (none of its user records can be trusted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// Too short to hold a body and a digest.
    #[error("KPL aggregated record of {0} bytes is too short for its MD5 trailer")]
    TooShort(usize),
    /// The MD5 trailer does not match the body.
    #[error("KPL aggregated record has a wrong MD5 checksum (corrupted or truncated)")]
    Checksum,
    /// The body is not an `AggregatedRecord`.
    #[error("KPL aggregated record has an invalid protobuf body: {0}")]
    Protobuf(#[source] ProtobufError),
    /// The aggregate holds no user record (never written by the KPL; reported, not skipped).
    #[error("KPL aggregated record holds no user records")]
    Empty,
    /// A user record names a partition key the table does not have.
    #[error("KPL user record {index} names partition key {key_index}, but the table has {keys}")]
    PartitionKey {
        /// The user record's index.
        index: usize,
        /// The index it names.
        key_index: u64,
        /// Entries in the partition key table.
        keys: usize,
    },
    /// A user record names an explicit hash key the table does not have.
    #[error(
        "KPL user record {index} names explicit hash key {key_index}, but the table has {keys}"
    )]
    ExplicitHashKey {
        /// The user record's index.
        index: usize,
        /// The index it names.
        key_index: u64,
        /// Entries in the explicit hash key table.
        keys: usize,
    },
}

/// Why an aggregate's body is not the protobuf message: the decoder's own error, kept behind a
/// type of this crate (the decoder's version is not part of this crate's API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtobufError(prost::DecodeError);

impl std::fmt::Display for ProtobufError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ProtobufError {}

/// What a Kinesis record's data holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Deaggregated {
    /// An ordinary record (no magic bytes).
    Plain,
    /// The user records of an aggregate, in order.
    Aggregated(Vec<UserRecord>),
}

/// De-aggregates one Kinesis record's data.
///
/// # Errors
/// [`AggregateError`] when the data starts with the magic bytes but is not a valid aggregate.
pub fn deaggregate(data: &[u8]) -> Result<Deaggregated, AggregateError> {
    let Some(rest) = data.strip_prefix(&MAGIC) else {
        return Ok(Deaggregated::Plain);
    };
    if rest.len() < DIGEST_LEN {
        return Err(AggregateError::TooShort(data.len()));
    }
    let (body, digest) = rest.split_at(rest.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return Err(AggregateError::Checksum);
    }
    let aggregate = <AggregatedRecord as prost::Message>::decode(body)
        .map_err(|e| AggregateError::Protobuf(ProtobufError(e)))?;
    if aggregate.records.is_empty() {
        return Err(AggregateError::Empty);
    }
    let keys = aggregate.partition_key_table;
    let hash_keys = aggregate.explicit_hash_key_table;
    aggregate
        .records
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let key = usize::try_from(r.partition_key_index)
                .ok()
                .and_then(|i| keys.get(i))
                .ok_or(AggregateError::PartitionKey {
                    index,
                    key_index: r.partition_key_index,
                    keys: keys.len(),
                })?;
            let explicit_hash_key = match r.explicit_hash_key_index {
                None => None,
                Some(i) => Some(
                    usize::try_from(i)
                        .ok()
                        .and_then(|i| hash_keys.get(i))
                        .ok_or(AggregateError::ExplicitHashKey {
                            index,
                            key_index: i,
                            keys: hash_keys.len(),
                        })?
                        .clone(),
                ),
            };
            Ok(UserRecord {
                partition_key: key.clone(),
                explicit_hash_key,
                sub_sequence_number: index as u64,
                data: r.data,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Deaggregated::Aggregated)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aggregates user records (partition key, data) in the KPL format (the consumer only reads
    /// them).
    fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut keys: Vec<String> = Vec::new();
        let entries = records
            .iter()
            .map(|(key, data)| {
                let index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
                    keys.push((*key).to_owned());
                    keys.len() - 1
                });
                AggregatedEntry {
                    partition_key_index: index as u64,
                    explicit_hash_key_index: None,
                    data: data.to_vec(),
                    tags: vec![],
                }
            })
            .collect();
        let body = prost::Message::encode_to_vec(&AggregatedRecord {
            partition_key_table: keys,
            explicit_hash_key_table: vec![],
            records: entries,
        });
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(Md5::digest(&body).as_slice());
        out
    }

    #[test]
    fn plain_records_pass_through() {
        assert_eq!(
            deaggregate(b"{\"dish\":\"pizza\"}"),
            Ok(Deaggregated::Plain)
        );
        assert_eq!(deaggregate(b""), Ok(Deaggregated::Plain));
    }

    #[test]
    fn an_aggregate_round_trips_with_partition_keys_and_sub_sequence_numbers() {
        let data = aggregate(&[("a", b"one"), ("b", b"two"), ("a", b"three")]);
        let Deaggregated::Aggregated(records) = deaggregate(&data).unwrap() else {
            panic!("not aggregated")
        };
        let got: Vec<(&str, u64, &[u8])> = records
            .iter()
            .map(|r| {
                (
                    r.partition_key.as_str(),
                    r.sub_sequence_number,
                    r.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", 0, &b"one"[..]),
                ("b", 1, &b"two"[..]),
                ("a", 2, &b"three"[..])
            ]
        );
    }

    #[test]
    fn a_bad_checksum_a_bad_body_or_a_bad_key_index_say_so() {
        let mut data = aggregate(&[("a", b"one")]);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert_eq!(deaggregate(&data), Err(AggregateError::Checksum));

        let mut garbage = MAGIC.to_vec();
        let body = [0xFFu8, 0xFF, 0xFF];
        garbage.extend_from_slice(&body);
        garbage.extend_from_slice(Md5::digest(body).as_slice());
        let err = deaggregate(&garbage).unwrap_err();
        assert!(matches!(err, AggregateError::Protobuf(_)), "{err}");

        let body = prost::Message::encode_to_vec(&AggregatedRecord {
            partition_key_table: vec![],
            explicit_hash_key_table: vec![],
            records: vec![AggregatedEntry {
                partition_key_index: 3,
                explicit_hash_key_index: None,
                data: b"x".to_vec(),
                tags: vec![],
            }],
        });
        let mut bad_key = MAGIC.to_vec();
        bad_key.extend_from_slice(&body);
        bad_key.extend_from_slice(Md5::digest(&body).as_slice());
        assert!(matches!(
            deaggregate(&bad_key),
            Err(AggregateError::PartitionKey { key_index: 3, .. })
        ));

        assert_eq!(deaggregate(&aggregate(&[])), Err(AggregateError::Empty));
        assert_eq!(
            deaggregate(&MAGIC[..]),
            Err(AggregateError::TooShort(4)),
            "magic bytes alone"
        );
    }
}
