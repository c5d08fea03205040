//! The floor our orders consumer's CPU per record is compared with: a `lambda_runtime` function
//! that receives the Kinesis event through the standard types
//! (`aws_lambda_events::event::kinesis::KinesisEvent`, which also decodes each record's base64),
//! decodes each record as an order `{dish, cost, customer_id}` with serde_json and encodes it
//! back to bytes (JSON Lines in one buffer). Nothing else: no KPL check, no lookup, no lineage
//! fields, no S3, no SDK. It answers the records and bytes it produced, so the work is used.

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// An order as the generator writes it (the consumer's `Order`, decoded the same way).
#[derive(Deserialize, Serialize)]
struct Order {
    dish: String,
    cost: serde_json::Number,
    #[serde(default)]
    customer_id: Option<i64>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<KinesisEvent>| async move {
        let mut out = Vec::new();
        let (mut orders, mut invalid) = (0usize, 0usize);
        for record in &event.payload.records {
            match serde_json::from_slice::<Order>(&record.kinesis.data) {
                Ok(order) => {
                    serde_json::to_writer(&mut out, &order)?;
                    out.push(b'\n');
                    orders += 1;
                }
                Err(_) => invalid += 1,
            }
        }
        Ok::<Value, Error>(json!({ "orders": orders, "invalid": invalid, "bytes": out.len() }))
    }))
    .await
}
