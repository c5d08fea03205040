//! Bad input at every entry point: each case gives a clear error that names what was wrong
//! (or, for a stream record that can never parse, an `opaque` entry that passes it on), and
//! nothing valid next to it is lost. Prints the matrix (`cargo test -p end-to-end --test
//! bad_inputs -- --nocapture`), which docs/reliability.md reproduces.

use std::collections::HashMap;

use serde_json::{json, Value};
use stream_refdata_protocol::{ChangeFile, ChangeFlag, ChangeKey, SequenceNumber};

/// One case: where the input enters, what it is, and what its outcome must mention.
struct Case {
    entry: &'static str,
    input: &'static str,
    expect: &'static str,
    outcome: String,
}

const ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-11-25T23:00:00.000";

fn stream_record(name: &str, dynamodb: Value) -> Value {
    json!({"eventID": "1", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
           "awsRegion": "us-east-1", "dynamodb": dynamodb, "eventSourceARN": ARN})
}

fn good_dynamodb() -> Value {
    json!({"ApproximateCreationDateTime": 1795650067, "SequenceNumber": "4421584600000000017450439092",
           "Keys": {"item": {"S": "burger"}, "price": {"N": "100"}},
           "NewImage": {"item": {"S": "burger"}, "price": {"N": "100"}, "priority": {"S": "high"}},
           "SizeBytes": 60, "StreamViewType": "NEW_AND_OLD_IMAGES"})
}

/// The change-handler's outcome for a batch of `bad` followed by one good record: the error, or
/// the opaque entry's reason (checking the good record was kept).
fn change_handler(payload: Value) -> String {
    match change_handler::parse_event(&payload) {
        Err(e) => format!("error: {e}"),
        Ok(batch) => {
            let opaque: Vec<String> = batch.opaque.iter().map(|o| o.reason.clone()).collect();
            format!(
                "{} changes, {} opaque: {}",
                batch.changes.len(),
                opaque.len(),
                opaque.join("; ")
            )
        }
    }
}

fn with_good(bad: Value) -> Value {
    json!({"Records": [bad, stream_record("MODIFY", good_dynamodb())]})
}

fn change_file(bytes: &[u8]) -> String {
    match ChangeFile::from_slice(bytes) {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}

fn order(bytes: &[u8]) -> String {
    format!(
        "{:?}",
        orders_consumer::orders::classify(bytes, "CHANGE_FLAG")
    )
}

fn rows(key: &str, bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Row {
        item: String,
        priority: String,
    }
    match stream_refdata::rows::parse_rows::<Row>(key, bytes, None) {
        Err(e) => format!("error: {e}"),
        Ok(rows) => rows
            .iter()
            .map(|(_, r)| match r {
                Ok(_) => "ok".to_owned(),
                Err(e) => format!("error: {e}"),
            })
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

fn notification(payload: Value) -> String {
    match s3_event_handler::event::parse_payload(&payload) {
        Err(e) => format!("error: {e}"),
        Ok(d) => format!("{d:?}"),
    }
}

fn s3_record(key: &str) -> Value {
    json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
           "eventTime": "2026-11-26T01:00:00.000Z", "eventName": "ObjectCreated:Put",
           "userIdentity": {"principalId": "A"}, "requestParameters": {"sourceIPAddress": "1.2.3.4"},
           "responseElements": {}, "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "b"},
           "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "01"}}})
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn cases() -> Vec<Case> {
    let mut c = Vec::new();
    let mut add = |entry, input, expect, outcome: String| {
        c.push(Case {
            entry,
            input,
            expect,
            outcome,
        })
    };

    // --- change-handler: Lambda events
    add(
        "change-handler",
        "payload is a string",
        "expected a JSON object",
        change_handler(json!("hello")),
    );
    add(
        "change-handler",
        "no Records array",
        "no \"Records\" array",
        change_handler(json!({"records": []})),
    );
    add(
        "change-handler",
        "a Kinesis event (wrong source)",
        "eventSource \"aws:kinesis\"",
        change_handler(json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]})),
    );
    add(
        "change-handler",
        "a record that is a number",
        "Records[0] is not a stream record",
        change_handler(json!({"Records": [42]})),
    );
    let mut other = stream_record("INSERT", good_dynamodb());
    other["eventSourceARN"] = json!("arn:aws:dynamodb:us-east-1:1:table/Other/stream/x");
    add(
        "change-handler",
        "records of two streams",
        "two streams",
        change_handler(json!({"Records": [stream_record("INSERT", good_dynamodb()), other]})),
    );
    let mut d = good_dynamodb();
    d["NewImage"]["priority"] = json!({"X": "high"});
    add(
        "change-handler",
        "unknown attribute type",
        "1 changes, 1 opaque: not a DynamoDB stream record",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    add(
        "change-handler",
        "unknown eventName",
        "1 changes, 1 opaque: unknown eventName \"UPSERT\"",
        change_handler(with_good(stream_record("UPSERT", good_dynamodb()))),
    );
    let mut d = good_dynamodb();
    d.as_object_mut().unwrap().remove("SequenceNumber");
    add(
        "change-handler",
        "missing SequenceNumber",
        "1 opaque: no dynamodb.SequenceNumber",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    let mut d = good_dynamodb();
    d["SequenceNumber"] = json!("44215846000000000174504390x2");
    add(
        "change-handler",
        "SequenceNumber with a letter",
        "has a character that is not a digit",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    let mut d = good_dynamodb();
    d["SequenceNumber"] = json!("1".repeat(41));
    add(
        "change-handler",
        "SequenceNumber of 41 digits",
        "more than 40 digits",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    let mut d = good_dynamodb();
    d.as_object_mut().unwrap().remove("Keys");
    add(
        "change-handler",
        "missing Keys",
        "1 opaque: no dynamodb.Keys",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    let mut d = good_dynamodb();
    d["SizeBytes"] = json!("sixty");
    add(
        "change-handler",
        "SizeBytes as text",
        "1 opaque: not a DynamoDB stream record",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    let mut d = good_dynamodb();
    d["NewImage"]["description"] = json!({"S": "x".repeat(400_000)});
    add(
        "change-handler",
        "a 400 KB item (DynamoDB's maximum)",
        "2 changes, 0 opaque",
        change_handler(with_good(stream_record("MODIFY", d))),
    );
    add(
        "change-handler",
        "empty batch",
        "0 changes, 0 opaque",
        change_handler(json!({"Records": []})),
    );

    // --- change files and keys (consumers)
    add(
        "change file",
        "truncated",
        "malformed change file",
        change_file(b"{\"schema_version\":1,\"kind\":\"dyn"),
    );
    add(
        "change file",
        "not JSON",
        "malformed change file",
        change_file(b"\x00\x01binary"),
    );
    add(
        "change file",
        "unknown schema version",
        "schema version 7",
        change_file(br#"{"schema_version":7}"#),
    );
    add("change file", "write_window_ms as text", "invalid type", change_file(
        br#"{"schema_version":1,"kind":"dynamodb","written_at":"x","write_window_ms":"20 s","producer":"p","source":{"label":"l"}}"#));
    add("change file", "unknown kind", "unknown variant", change_file(
        br#"{"schema_version":1,"kind":"kafka","written_at":"x","write_window_ms":1,"producer":"p","source":{"label":"l"}}"#));
    add(
        "change-file key",
        "legacy marker change_flags/CHANGE_FLAG",
        "not a change-file key",
        ChangeKey::parse("change_flags/", "change_flags/CHANGE_FLAG")
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string()),
    );
    add(
        "change-file key",
        "time out of range",
        "bad time",
        ChangeKey::parse("p/", "p/20261399T999999.999Z-0123456789abcdef-u1.json")
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string()),
    );
    add(
        "sequence number",
        "empty",
        "sequence number is empty",
        SequenceNumber::parse("")
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string()),
    );

    // --- flag and order records (orders consumer)
    add(
        "flag record",
        "marker but no change",
        // a flag that names nothing: the feed polled at its position, kept in the dead letters
        "UnreadableFlag(\"change flag that does not parse",
        order(br#"{"stream_refdata_flag":1}"#),
    );
    add(
        "flag record",
        "marker with the wrong type",
        // a flag that names nothing: the feed polled at its position, kept in the dead letters
        "UnreadableFlag(\"change flag that does not parse",
        order(br#"{"stream_refdata_flag":"yes","change":{}}"#),
    );
    assert!(ChangeFlag::parse(br#"{"stream_refdata_flag":1}"#).is_none());
    add(
        "order record",
        "not JSON",
        "not an order: expected",
        order(b"this is not json"),
    );
    add(
        "order record",
        "missing dish",
        "missing field `dish`",
        order(br#"{"cost":12,"customer_id":7}"#),
    );
    add(
        "order record",
        "cost as text",
        "invalid type: string \\\"12\\\"",
        order(br#"{"dish":"burger","cost":"12"}"#),
    );
    add(
        "order record",
        "dish is a number",
        "invalid type: integer",
        order(br#"{"dish":7,"cost":12}"#),
    );
    add(
        "order record",
        "empty dish",
        "empty dish",
        order(br#"{"dish":"","cost":12}"#),
    );
    add(
        "order record",
        "unknown field",
        "unknown field `colour`",
        order(br#"{"dish":"pizza","cost":12,"colour":"red"}"#),
    );
    add(
        "order record",
        "invalid UTF-8",
        "not an order",
        order(b"{\"dish\":\"\xff\xfe\",\"cost\":1}"),
    );

    // --- S3 reference objects (enrichment)
    add(
        "reference object",
        "CSV row with an extra field",
        "ref/p.csv line 3",
        rows(
            "ref/p.csv",
            b"item,priority\nburger,high\npizza,low,extra\n",
        ),
    );
    add(
        "reference object",
        "CSV without the priority column",
        "missing field `priority`",
        rows("ref/p.csv", b"item\nburger\n"),
    );
    add(
        "reference object",
        "JSON Lines row that is not JSON",
        "ref/p.jsonl line 2",
        rows(
            "ref/p.jsonl",
            b"{\"item\":\"a\",\"priority\":\"b\"}\nnope\n",
        ),
    );
    add(
        "reference object",
        "UTF-16 text (wrong encoding)",
        "line 1",
        rows("ref/p.jsonl", b"\xff\xfe{\x00\"\x00"),
    );
    add(
        "reference object",
        ".gz that is not gzip",
        "not valid gzip",
        rows("ref/p.csv.gz", b"item,priority\n"),
    );
    add(
        "reference object",
        "unknown format (.parquet)",
        "unknown format",
        rows("ref/p.parquet", b"PAR1"),
    );

    // --- S3 notifications (s3-event-handler)
    add(
        "S3 notification",
        "key with an invalid escape %zz",
        "not a valid URL-encoded key",
        notification(json!({"Records": [s3_record("reference/bad%zz.csv")]})),
    );
    add(
        "S3 notification",
        "key that decodes to invalid UTF-8",
        "not UTF-8",
        notification(json!({"Records": [s3_record("reference/%FF.csv")]})),
    );
    let mut r = s3_record("reference/a.csv");
    r["s3"]["object"].as_object_mut().unwrap().remove("key");
    add(
        "S3 notification",
        "missing object key",
        "no s3.object.key",
        notification(json!({"Records": [r]})),
    );
    let mut r = s3_record("reference/a.csv");
    r["eventTime"] = json!("yesterday");
    add(
        "S3 notification",
        "eventTime not a time",
        "not an S3 event record",
        notification(json!({"Records": [r]})),
    );
    add(
        "S3 notification",
        "SQS message whose body is not JSON",
        "message body is not JSON",
        notification(
            json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": "{oops"}]}),
        ),
    );
    add(
        "S3 notification",
        "an EventBridge event",
        "not an S3 notification",
        notification(json!({"detail-type": "Object Created"})),
    );

    // --- configuration
    let feed = |pairs: &[(&str, &str)]| {
        feed_writer::FeedConfig::from_lookup(&env(pairs))
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string())
    };
    add(
        "configuration",
        "CHANGE_BUCKET missing",
        "CHANGE_BUCKET is required",
        feed(&[]),
    );
    add(
        "configuration",
        "CHANGE_BUCKET not a bucket name",
        "CHANGE_BUCKET=\"My_Bucket\" is invalid",
        feed(&[("CHANGE_BUCKET", "My_Bucket")]),
    );
    add(
        "configuration",
        "WRITE_WINDOW_SECS=abc",
        "WRITE_WINDOW_SECS=\"abc\" is invalid",
        feed(&[("CHANGE_BUCKET", "b-1"), ("WRITE_WINDOW_SECS", "abc")]),
    );
    let s3cfg = |pairs: &[(&str, &str)]| {
        s3_event_handler::Config::from_lookup(&env(pairs))
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string())
    };
    add(
        "configuration",
        "change feed inside REFERENCE_PREFIX",
        "would trigger it",
        s3cfg(&[
            ("CHANGE_BUCKET", "b-1"),
            ("FLAG_STREAM", "s"),
            ("REFERENCE_PREFIX", "change_flags/"),
        ]),
    );
    add(
        "configuration",
        "LEGACY_FLAG_PAYLOAD not JSON",
        "LEGACY_FLAG_PAYLOAD",
        s3cfg(&[
            ("CHANGE_BUCKET", "b-1"),
            ("FLAG_STREAM", "s"),
            ("REFERENCE_PREFIX", "r/"),
            ("LEGACY_FLAG_PAYLOAD", "{dish"),
        ]),
    );
    let consumer = |pairs: &[(&str, &str)]| {
        orders_consumer::Config::from_lookup(&env(pairs))
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string())
    };
    add(
        "configuration",
        "UNMATCHED=ignore",
        "UNMATCHED=\"ignore\" is invalid",
        consumer(&[
            ("REFERENCE_TABLE", "t"),
            ("CHANGE_BUCKET", "b"),
            ("OUTPUT_BUCKET", "o"),
            ("UNMATCHED", "ignore"),
        ]),
    );
    add(
        "configuration",
        "REFERENCE_TABLE missing",
        "REFERENCE_TABLE is required",
        consumer(&[("CHANGE_BUCKET", "b"), ("OUTPUT_BUCKET", "o")]),
    );
    c
}

#[test]
fn every_bad_input_gets_a_clear_error_and_nothing_valid_is_lost() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failed = Vec::new();
    println!("| entry point | bad input | outcome |\n|---|---|---|");
    for case in &cases {
        let shown: String = case.outcome.chars().take(140).collect();
        println!(
            "| {} | {} | {} |",
            case.entry,
            case.input,
            shown.replace('|', "\\|")
        );
        if !case.outcome.contains(case.expect) {
            failed.push(format!(
                "{} / {}: expected {:?} in {:?}",
                case.entry, case.input, case.expect, case.outcome
            ));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
