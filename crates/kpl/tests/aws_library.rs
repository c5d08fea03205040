//! Against AWS's own aggregation library (`aws-kinesis-agg`, the Python one, pinned in the
//! workspace's requirements-dev.txt and installed into `.venv` by scripts/setup): aggregates its
//! `RecordAggregator` writes de-aggregate here into the user records its deaggregator reads from
//! them, field for field (partition key, explicit hash key, sub-sequence number, data; but for an
//! explicit hash key its deaggregator invents, see below); a record its deaggregator passes on as
//! ordinary because its checksum is wrong is reported here.

use base64::Engine;
use kpl_deaggregation::{deaggregate, AggregateError, Deaggregated};
use serde_json::Value;

/// AWS's library, run on `script` (which prints JSON).
fn aws_library(script: &str) -> Value {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    let run = std::process::Command::new(python)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/setup installs aws-kinesis-agg)"));
    assert!(
        run.status.success(),
        "aws-kinesis-agg failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

/// Aggregates of user records with several partition keys, explicit hash keys on some, binary
/// data, and enough of them that the aggregator fills more than one aggregate; each with the
/// user records AWS's deaggregator reads from it.
const AGGREGATE_AND_READ: &str = r#"
import base64, json
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import deaggregate_records

def b64(b):
    return base64.b64encode(b).decode()

# (aggregates of at most 50 KiB, the KPL's default AggregationMaxSize: the 3,000 records fill several)
agg = RecordAggregator(max_size=51200)
done = []
given = []
for i in range(3000):
    pk = "pk-%d" % (i % 7)
    ehk = str(2**127 + i) if i % 5 == 0 else None
    data = bytes([i % 256, 0xFF, 0x00]) + (("record-%d " % i) * (i % 40)).encode()
    full = agg.add_user_record(pk, data, ehk)
    given.append(ehk)
    if full is not None:
        done.append(full)
done.append(agg.clear_and_get())
out = []
n = 0
for record in done:
    pk, ehk, data = record.get_contents()
    event = {"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                         "approximateArrivalTimestamp": 1795650067.123, "partitionKey": pk, "data": b64(data)}}
    users = [{"partition_key": r["kinesis"]["partitionKey"], "explicit_hash_key": r["kinesis"]["explicitHashKey"],
              "sub_sequence_number": r["kinesis"]["subSequenceNumber"], "data": r["kinesis"]["data"].decode()}
             for r in deaggregate_records([event])]
    for u in users:
        u["given_explicit_hash_key"] = given[n]
        n += 1
    out.append({"aggregate": b64(data), "users": users})
print(json.dumps(out))
"#;

#[test]
fn the_user_records_are_those_aws_deaggregator_reads_field_for_field() {
    let cases = aws_library(AGGREGATE_AND_READ);
    let cases = cases.as_array().unwrap();
    assert!(cases.len() > 1, "the aggregator filled several aggregates");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut users = 0;
    for case in cases {
        let aggregate = b64.decode(case["aggregate"].as_str().unwrap()).unwrap();
        let Ok(Deaggregated::Aggregated(records)) = deaggregate(&aggregate) else {
            panic!("not read as an aggregate");
        };
        let want = case["users"].as_array().unwrap();
        assert_eq!(records.len(), want.len());
        for (got, want) in records.iter().zip(want) {
            assert_eq!(got.partition_key, want["partition_key"].as_str().unwrap());
            // The explicit hash key the producer gave, or none. (AWS's Python deaggregator gives
            // a record without one the table's first key whenever the aggregate has a table: it
            // reads the protobuf's absent index as 0. The KCL checks for the index, as here.)
            let given = want["given_explicit_hash_key"].as_str();
            assert_eq!(got.explicit_hash_key.as_deref(), given);
            if given.is_some() {
                assert_eq!(given, want["explicit_hash_key"].as_str());
            }
            assert_eq!(
                got.sub_sequence_number,
                want["sub_sequence_number"].as_u64().unwrap()
            );
            assert_eq!(
                got.data,
                b64.decode(want["data"].as_str().unwrap()).unwrap()
            );
        }
        users += records.len();
    }
    assert_eq!(users, 3000);
}

#[test]
fn a_record_with_a_wrong_checksum_is_reported_where_aws_passes_it_on_as_ordinary() {
    let out = aws_library(
        r#"
import base64, json
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import deaggregate_records
agg = RecordAggregator()
for i in range(3):
    agg.add_user_record("k", b"order %d" % i)
pk, ehk, data = agg.clear_and_get().get_contents()
bad = data[:-1] + bytes([data[-1] ^ 1])
event = {"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": "1", "approximateArrivalTimestamp": 1.0,
                     "partitionKey": pk, "data": base64.b64encode(bad).decode()}}
read = list(deaggregate_records([event]))
print(json.dumps({"good": base64.b64encode(data).decode(), "bad": base64.b64encode(bad).decode(),
                  "aws_reads": len(read), "aws_aggregated": "subSequenceNumber" in read[0]["kinesis"]}))
"#,
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    // AWS's deaggregator hands the damaged aggregate on whole, as if it were an ordinary record.
    assert_eq!(out["aws_reads"], 1);
    assert_eq!(out["aws_aggregated"], false);
    // Here it is an error for that record, and the others of a batch are read as they are.
    let batch = [
        b64.decode(out["good"].as_str().unwrap()).unwrap(),
        b64.decode(out["bad"].as_str().unwrap()).unwrap(),
        b"{\"dish\":\"pizza\"}".to_vec(),
    ];
    let read: Vec<_> = batch.iter().map(|data| deaggregate(data)).collect();
    assert!(matches!(&read[0], Ok(Deaggregated::Aggregated(r)) if r.len() == 3));
    assert_eq!(read[1], Err(AggregateError::Checksum));
    assert_eq!(read[2], Ok(Deaggregated::Plain));
}
