//! Round trips of the change file and its decoding errors.

use std::collections::HashMap;

use proptest::prelude::*;
use stream_refdata_protocol::{
    AttributeValue, ChangeFile, ChangeKind, DecodeError, EventName, Item, OpaqueRecord,
    SequenceNumber, Source, StreamChange,
};

fn attribute() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        "[0-9]{1,38}(\\.[0-9]{1,5})?".prop_map(AttributeValue::N),
        "\\PC{0,20}".prop_map(AttributeValue::S),
        any::<bool>().prop_map(AttributeValue::Bool),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(AttributeValue::B),
        Just(AttributeValue::Null(true)),
        proptest::collection::vec("\\PC{1,8}", 1..4).prop_map(AttributeValue::Ss),
        proptest::collection::vec("[0-9]{1,10}", 1..4).prop_map(AttributeValue::Ns),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..3)
            .prop_map(AttributeValue::Bs),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
            proptest::collection::hash_map("[a-z]{1,6}", inner, 0..4).prop_map(AttributeValue::M),
        ]
    })
}

fn item() -> impl Strategy<Value = Item> {
    proptest::collection::hash_map("[a-z]{1,8}", attribute(), 1..5)
        .prop_map(|m: HashMap<String, AttributeValue>| Item::from(m))
}

fn change() -> impl Strategy<Value = StreamChange> {
    (
        0usize..1000,
        "[0-9a-f]{32}",
        prop_oneof![
            Just(EventName::Insert),
            Just(EventName::Modify),
            Just(EventName::Remove)
        ],
        "[1-9][0-9]{20,39}",
        0i64..4_000_000_000_000,
        item(),
        proptest::option::of(item()),
        proptest::option::of(item()),
    )
        .prop_map(|(index, id, name, seq, ms, keys, new, old)| StreamChange {
            index,
            event_id: id,
            event_name: name,
            sequence_number: SequenceNumber::parse(&seq).unwrap(),
            approximate_creation_ms: ms,
            stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
            keys,
            new_image: new,
            old_image: old,
            user_identity: None,
        })
}

fn file(changes: Vec<StreamChange>) -> ChangeFile {
    ChangeFile {
        schema_version: 1,
        kind: ChangeKind::Dynamodb,
        written_at: "20261125T234107.123Z".into(),
        write_window_ms: 20_000,
        producer: "test".into(),
        source: Source {
            label: stream_refdata_protocol::source_label("arn"),
            table: Some("ProductPriority".into()),
            stream_arn: Some("arn".into()),
            region: Some("us-east-1".into()),
            bucket: None,
        },
        changes,
        opaque: vec![OpaqueRecord {
            index: 7,
            reason: "unknown attribute type".into(),
            sequence_number: None,
            keys: Some(serde_json::json!({"item": {"S": "x"}})),
            raw: serde_json::json!({"odd": {"X": 1}}),
        }],
        objects: vec![],
        reason: None,
    }
}

proptest! {
    #[test]
    fn change_file_round_trips(changes in proptest::collection::vec(change(), 0..5)) {
        let f = file(changes);
        let back = ChangeFile::from_slice(&f.to_vec()).unwrap();
        prop_assert_eq!(back, f);
    }

    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ChangeFile::from_slice(&bytes);
    }
}

#[test]
fn numbers_sets_and_binary_keep_their_types() {
    let mut m = HashMap::new();
    m.insert("n".to_string(), AttributeValue::N("100".into()));
    m.insert("s".to_string(), AttributeValue::S("100".into()));
    m.insert(
        "ns".to_string(),
        AttributeValue::Ns(vec!["1".into(), "2".into()]),
    );
    m.insert("b".to_string(), AttributeValue::B(vec![0, 255, 7]));
    let mut f = file(vec![]);
    f.changes.push(StreamChange {
        index: 0,
        event_id: "e".into(),
        event_name: EventName::Insert,
        sequence_number: SequenceNumber::parse("1").unwrap(),
        approximate_creation_ms: 0,
        stream_view_type: None,
        keys: Item::from(m.clone()),
        new_image: Some(Item::from(m)),
        old_image: None,
        user_identity: None,
    });
    let json: serde_json::Value = serde_json::from_slice(&f.to_vec()).unwrap();
    let keys = &json["changes"][0]["keys"];
    assert_eq!(keys["n"], serde_json::json!({"N": "100"}));
    assert_eq!(keys["s"], serde_json::json!({"S": "100"}));
    assert_eq!(keys["ns"], serde_json::json!({"NS": ["1", "2"]}));
    assert_eq!(keys["b"], serde_json::json!({"B": "AP8H"}));
}

#[test]
fn unknown_version_is_reported_as_such() {
    let mut json: serde_json::Value = serde_json::from_slice(&file(vec![]).to_vec()).unwrap();
    json["schema_version"] = serde_json::json!(2);
    let err = ChangeFile::from_slice(json.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion(2)), "{err}");
    assert!(err.to_string().contains("schema version 2"));
}

#[test]
fn truncated_and_mistyped_files_are_malformed() {
    let bytes = file(vec![]).to_vec();
    let truncated = &bytes[..bytes.len() / 2];
    assert!(matches!(
        ChangeFile::from_slice(truncated),
        Err(DecodeError::Malformed(_))
    ));
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json["write_window_ms"] = serde_json::json!("twenty");
    let err = ChangeFile::from_slice(json.to_string().as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("write_window_ms") || err.to_string().contains("invalid type"),
        "{err}"
    );
}

#[test]
fn the_documented_example_parses() {
    let f = ChangeFile::from_slice(include_bytes!("data/example-change-file.json")).unwrap();
    assert_eq!(f.changes.len(), 1);
    assert_eq!(f.opaque.len(), 1);
    assert_eq!(f.write_window_ms, 20_000);
    let arn = f.source.stream_arn.as_deref().unwrap();
    assert_eq!(f.source.label, stream_refdata_protocol::source_label(arn));
}
