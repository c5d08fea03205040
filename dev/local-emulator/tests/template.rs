//! The provisioning against `infra/template.yaml`: the constants and the event source mapping
//! settings are the template's defaults, and what `provision` creates in the emulator (described
//! back through the APIs) has the template's key schema, attribute types, stream view type,
//! shard count, notifications and redrive. A change to either side alone fails here.

use std::collections::BTreeSet;

use local_emulator::provision::{
    self, mappings, Clients, Names, CHANGE_PREFIX, DEAD_LETTER_PREFIX, KEY_SCHEMA,
    LOCAL_VISIBILITY_TIMEOUT_SECS, MAX_RECEIVE_COUNT, MESSAGE_RETENTION_SECS, NOTIFICATION_EVENTS,
    OUTPUT_PREFIX, REFERENCE_PREFIX, SHARD_COUNT, STREAM_VIEW_TYPE, TABLE_NAME,
};
use local_emulator::LocalEmulator;
use serde_norway::Value;

/// The SAM template, parsed with CloudFormation's short-form tags (`!Ref`, `!Sub`, `!GetAtt`,
/// `!If`, …) kept as tagged values.
struct Template(Value);

impl Template {
    fn load() -> Template {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/template.yaml");
        let text = std::fs::read_to_string(path).expect("infra/template.yaml");
        Template(serde_norway::from_str(&text).expect("the template is YAML"))
    }

    /// A parameter's default.
    fn default(&self, parameter: &str) -> &Value {
        let value = &self.0["Parameters"][parameter]["Default"];
        assert!(!value.is_null(), "parameter {parameter} has no default");
        value
    }

    /// `!Ref Parameter` → the parameter's default; anything else as it is.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        if let Value::Tagged(tagged) = value {
            if tagged.tag == "Ref" {
                if let Some(name) = tagged.value.as_str() {
                    if !self.0["Parameters"][name].is_null() {
                        return self.default(name);
                    }
                }
            }
        }
        value
    }

    fn text(&self, value: &Value) -> String {
        let value = self.resolve(value);
        value
            .as_str()
            .map(str::to_owned)
            .or_else(|| value.as_i64().map(|n| n.to_string()))
            .unwrap_or_else(|| panic!("not a scalar: {value:?}"))
    }

    fn number(&self, value: &Value) -> i64 {
        self.resolve(value)
            .as_i64()
            .unwrap_or_else(|| panic!("not a number: {value:?}"))
    }

    fn properties(&self, resource: &str) -> &Value {
        let value = &self.0["Resources"][resource]["Properties"];
        assert!(!value.is_null(), "no resource {resource}");
        value
    }

    /// The one event source mapping of `function` (`Events.<name>.Properties` of its one
    /// Kinesis, DynamoDB or SQS event; a schedule is not one).
    fn event_source(&self, function: &str) -> &Value {
        let events = self.properties(function)["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{function} has no events"));
        let mappings: Vec<&Value> = (events.values())
            .filter(|e| {
                let kind = e["Type"].as_str().unwrap_or_default();
                matches!(kind, "Kinesis" | "DynamoDB" | "SQS")
            })
            .collect();
        assert_eq!(mappings.len(), 1, "{function} has one event source mapping");
        &mappings[0]["Properties"]
    }

    /// (name, type, key type) of the reference table's key, from `KeySchema` and
    /// `AttributeDefinitions`.
    fn table_key(&self) -> Vec<(String, String, String)> {
        let table = self.properties("ReferenceTable");
        let types = table["AttributeDefinitions"]
            .as_sequence()
            .expect("attributes");
        table["KeySchema"]
            .as_sequence()
            .expect("key schema")
            .iter()
            .map(|k| {
                let name = self.text(&k["AttributeName"]);
                let attribute = types
                    .iter()
                    .find(|a| self.text(&a["AttributeName"]) == name)
                    .unwrap_or_else(|| panic!("{name} has no attribute definition"));
                (
                    name,
                    self.text(&attribute["AttributeType"]),
                    self.text(&k["KeyType"]),
                )
            })
            .collect()
    }

    /// (event, prefix) of every notification of the reference bucket, each to the queue.
    fn notifications(&self) -> BTreeSet<(String, String)> {
        self.properties("ReferenceBucket")["NotificationConfiguration"]["QueueConfigurations"]
            .as_sequence()
            .expect("queue notifications")
            .iter()
            .map(|n| {
                let Value::Tagged(queue) = &n["Queue"] else {
                    panic!("Queue is !GetAtt ReferenceQueue.Arn: {n:?}");
                };
                assert_eq!(queue.value.as_str(), Some("ReferenceQueue.Arn"));
                let rules = n["Filter"]["S3Key"]["Rules"].as_sequence().expect("rules");
                assert_eq!(rules.len(), 1);
                assert_eq!(self.text(&rules[0]["Name"]), "prefix");
                (self.text(&n["Event"]), self.text(&rules[0]["Value"]))
            })
            .collect()
    }
}

fn expected_key() -> Vec<(String, String, String)> {
    KEY_SCHEMA
        .iter()
        .map(|k| (k.name.into(), k.attribute_type.into(), k.key_type.into()))
        .collect()
}

fn expected_notifications() -> BTreeSet<(String, String)> {
    NOTIFICATION_EVENTS
        .iter()
        .map(|e| ((*e).to_owned(), REFERENCE_PREFIX.to_owned()))
        .collect()
}

#[test]
fn the_provisioning_follows_the_templates_defaults() {
    let t = Template::load();
    assert_eq!(t.text(t.default("TableName")), TABLE_NAME);
    assert_eq!(
        t.text(&t.properties("ReferenceTable")["TableName"]),
        TABLE_NAME
    );
    assert_eq!(t.table_key(), expected_key());
    assert_eq!(
        t.text(&t.properties("ReferenceTable")["StreamSpecification"]["StreamViewType"]),
        STREAM_VIEW_TYPE
    );
    assert_eq!(t.text(t.default("StreamMode")), "PROVISIONED");
    assert_eq!(t.number(t.default("ShardCount")), i64::from(SHARD_COUNT));

    let names = Names::default();
    for (parameter, constant, name) in [
        ("ChangePrefix", CHANGE_PREFIX, &names.change_prefix),
        ("ReferencePrefix", REFERENCE_PREFIX, &names.reference_prefix),
        ("OutputPrefix", OUTPUT_PREFIX, &names.output_prefix),
        (
            "DeadLetterPrefix",
            DEAD_LETTER_PREFIX,
            &names.dead_letter_prefix,
        ),
    ] {
        assert_eq!(t.text(t.default(parameter)), constant, "{parameter}");
        assert_eq!(name, constant, "Names::default() for {parameter}");
    }
    assert_eq!(names.table, TABLE_NAME);

    assert_eq!(t.notifications(), expected_notifications());

    let queue = t.properties("ReferenceQueue");
    assert_eq!(
        t.number(&queue["RedrivePolicy"]["maxReceiveCount"]),
        i64::from(MAX_RECEIVE_COUNT)
    );
    for q in [queue, t.properties("ReferenceDeadLetterQueue")] {
        assert_eq!(
            t.number(&q["MessageRetentionPeriod"]),
            i64::from(MESSAGE_RETENTION_SECS)
        );
    }
    // The local queue's short visibility timeout is a documented deviation; the template keeps
    // AWS's rule for SQS mappings: at least 6 times the function timeout.
    let visibility = t.number(&queue["VisibilityTimeout"]);
    assert!(visibility >= 6 * t.number(t.default("S3EventHandlerTimeout")));
    assert!(i64::from(LOCAL_VISIBILITY_TIMEOUT_SECS) < visibility);
}

#[test]
fn the_emulated_event_source_mappings_have_the_templates_settings() {
    let t = Template::load();
    let m = mappings();
    for (function, config, stream) in [
        ("ChangeHandler", &m.change_handler, true),
        ("S3EventHandler", &m.s3_event_handler, false),
        ("OrdersConsumer", &m.orders_consumer, true),
    ] {
        let source = t.event_source(function);
        assert_eq!(
            t.number(&source["BatchSize"]),
            i64::from(config.batch_size),
            "{function} BatchSize"
        );
        // The emulation always reports partial batch failures and never bisects.
        let responses: Vec<String> = source["FunctionResponseTypes"]
            .as_sequence()
            .expect("FunctionResponseTypes")
            .iter()
            .map(|v| t.text(v))
            .collect();
        assert_eq!(responses, ["ReportBatchItemFailures"], "{function}");
        if stream {
            let trim_horizon = t.text(&source["StartingPosition"]) == "TRIM_HORIZON";
            assert_eq!(
                trim_horizon, config.trim_horizon,
                "{function} StartingPosition"
            );
            assert_eq!(
                source["BisectBatchOnFunctionError"].as_bool(),
                Some(false),
                "{function} does not bisect"
            );
        }
    }
    // The change-handler's mapping retries until it succeeds, as the emulation does; the
    // consumer's gives up after `ConsumerMaxRetries` and discards to the failure bucket.
    assert_eq!(
        t.number(&t.event_source("ChangeHandler")["MaximumRetryAttempts"]),
        -1
    );
    assert_eq!(m.change_handler.maximum_retry_attempts, None);
    assert_eq!(
        m.orders_consumer.maximum_retry_attempts.map(i64::from),
        Some(t.number(t.default("ConsumerMaxRetries")))
    );
    // With UNMATCHED=hold, the consumer's sweep runs on a schedule (the scheduled event of
    // events/, which the consumer takes as the sweep).
    let sweep = &t.properties("OrdersConsumer")["Events"]["HoldSweep"];
    assert_eq!(t.text(&sweep["Type"]), "Schedule");
    assert!(t
        .text(&sweep["Properties"]["Schedule"])
        .starts_with("rate("));
    for function in ["ChangeHandler", "OrdersConsumer"] {
        let destination = &t.event_source(function)["DestinationConfig"]["OnFailure"];
        assert!(
            !destination["Destination"].is_null(),
            "{function} has an on-failure destination"
        );
    }
}

#[test]
fn the_msk_mapping_has_the_kinesis_mappings_settings() {
    // With OrdersSource=MSK the orders consumer's mapping is the topic's: the same batch size,
    // window, retries, record age, partial batch responses, no bisect, the same failure bucket;
    // and the Kinesis mapping is disabled then.
    let t = Template::load();
    let kinesis = t.event_source("OrdersConsumer");
    let msk = t.properties("OrdersConsumerMskMapping");
    for setting in [
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "StartingPosition",
    ] {
        assert_eq!(
            t.text(&msk[setting]),
            t.text(&kinesis[setting]),
            "{setting}"
        );
    }
    assert_eq!(
        msk["FunctionResponseTypes"],
        kinesis["FunctionResponseTypes"]
    );
    assert_eq!(msk["BisectBatchOnFunctionError"].as_bool(), Some(false));
    assert_eq!(
        msk["DestinationConfig"]["OnFailure"]["Destination"],
        kinesis["DestinationConfig"]["OnFailure"]["Destination"]
    );
    assert!(
        !msk["ProvisionedPollerConfig"].is_null(),
        "retries need provisioned pollers"
    );
    let enabled = format!("{:?}", kinesis["Enabled"]);
    assert!(
        enabled.contains("MskOn"),
        "the Kinesis mapping is off with MSK: {enabled}"
    );
    assert_eq!(t.text(t.default("OrdersSource")), "Kinesis");
}

#[tokio::test]
async fn what_provisioning_creates_matches_the_template() {
    let t = Template::load();
    let emulator = LocalEmulator::connect_or_start().expect("an emulator");
    let c = Clients::new(&emulator.sdk_config().await);
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let names = Names {
        table: format!("{TABLE_NAME}-{unique}"),
        bucket: format!("template-check-{unique}"),
        stream: format!("SourceKinesisStream-{unique}"),
        queue: format!("reference-data-changes-{unique}"),
        ..Names::default()
    };
    let p = provision::provision(&c, &names).await.expect("provisioned");

    // The table: key schema, attribute types, stream view type.
    let table = c
        .ddb
        .describe_table()
        .table_name(&names.table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let created_key: Vec<(String, String, String)> = table
        .key_schema()
        .iter()
        .map(|k| {
            let attribute = table
                .attribute_definitions()
                .iter()
                .find(|a| a.attribute_name() == k.attribute_name())
                .expect("a definition");
            (
                k.attribute_name().to_owned(),
                attribute.attribute_type().as_str().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(created_key, t.table_key());
    let stream = table.stream_specification().expect("a stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type().map(|v| v.as_str()),
        Some(
            t.text(&t.properties("ReferenceTable")["StreamSpecification"]["StreamViewType"])
                .as_str()
        )
    );
    assert_eq!(table.latest_stream_arn(), Some(p.table_stream_arn.as_str()));

    // The reference objects' bucket: versioned, as the template's reference bucket.
    assert_eq!(
        t.text(&t.properties("ReferenceBucket")["VersioningConfiguration"]["Status"]),
        "Enabled"
    );
    // Checked by behaviour (the emulator's GetBucketVersioning answer does not parse in the
    // SDK): two writes of one key keep two versions.
    for body in ["a", "b"] {
        c.s3.put_object()
            .bucket(&names.bucket)
            .key("versioning-check")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let versions =
        c.s3.list_object_versions()
            .bucket(&names.bucket)
            .prefix("versioning-check")
            .send()
            .await
            .unwrap();
    assert_eq!(versions.versions().len(), 2, "{versions:?}");

    // The orders stream: the template's shard count.
    assert_eq!(p.shards.len() as i64, t.number(t.default("ShardCount")));

    // The queue: redrive to a dead-letter queue, retention.
    let attributes = c
        .sqs
        .get_queue_attributes()
        .queue_url(&p.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let attribute = |name: &str| {
        attributes
            .get(&aws_sdk_sqs::types::QueueAttributeName::from(name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let redrive: serde_json::Value = serde_json::from_str(&attribute("RedrivePolicy")).unwrap();
    let template_queue = t.properties("ReferenceQueue");
    assert_eq!(
        redrive["maxReceiveCount"].as_i64(),
        Some(t.number(&template_queue["RedrivePolicy"]["maxReceiveCount"]))
    );
    let dlq_url = p
        .dead_letter_queue_url
        .as_deref()
        .expect("a dead-letter queue");
    let dlq_arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str(),
        Some(dlq_arn.as_str())
    );
    assert_eq!(
        attribute("MessageRetentionPeriod"),
        t.text(&template_queue["MessageRetentionPeriod"])
    );
    assert_eq!(
        attribute("VisibilityTimeout"),
        LOCAL_VISIBILITY_TIMEOUT_SECS.to_string()
    );

    // The bucket's notifications: the template's events under the reference prefix, to the queue.
    let notifications =
        c.s3.get_bucket_notification_configuration()
            .bucket(&names.bucket)
            .send()
            .await
            .unwrap();
    let mut created = BTreeSet::new();
    for q in notifications.queue_configurations() {
        assert_eq!(q.queue_arn(), p.queue_arn);
        let rules = q
            .filter()
            .and_then(|f| f.key())
            .map(|k| k.filter_rules().to_vec())
            .unwrap_or_default();
        assert_eq!(rules.len(), 1);
        let prefix = rules[0].value().unwrap_or_default().to_owned();
        for event in q.events() {
            created.insert((event.as_str().to_owned(), prefix.clone()));
        }
    }
    assert_eq!(created, t.notifications());
}
