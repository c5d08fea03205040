"""The original design's Glue job logic, as a Kinesis-triggered Python Lambda: the peer of the
performance comparison.

Per micro-batch (one invocation), as the published job does in forEachBatch:
- HeadObject on the fixed flag object; if it exists (or on the first batch) reload the whole
  reference table with a full Scan, then DeleteObject the flag (the blog: "refreshes the
  reference data and deletes the file"). A flag written during the reload is deleted unseen.
- Inner join of orders with the table on dish == item: unmatched orders are dropped.
- Select cost, price, priority, customer_id, item and write CSV partitioned by item and
  priority, one object per partition and batch: <prefix>item=<item>/priority=<priority>/
  part-<first sequence number>.csv.

Configuration: REFERENCE_TABLE, FLAG_BUCKET, FLAG_KEY (default change_flags/CHANGE_FLAG),
OUTPUT_BUCKET, OUTPUT_PREFIX (default peer/).
"""

import base64
import csv
import io
import json
import os

import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3")
dynamodb = boto3.client("dynamodb")

TABLE = os.environ["REFERENCE_TABLE"]
FLAG_BUCKET = os.environ["FLAG_BUCKET"]
FLAG_KEY = os.environ.get("FLAG_KEY", "change_flags/CHANGE_FLAG")
OUTPUT_BUCKET = os.environ["OUTPUT_BUCKET"]
OUTPUT_PREFIX = os.environ.get("OUTPUT_PREFIX", "peer/")

# item -> (price, priority); None until the first batch loads it.
reference = None


def scalar(attribute):
    """The value of a DynamoDB attribute of type S or N, as text."""
    if attribute is None:
        return None
    return attribute.get("S", attribute.get("N"))


def load_reference():
    """The whole table, by a paginated full Scan (the job re-reads it through the catalog)."""
    table = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            table[item["item"]["S"]] = (scalar(item.get("price")), scalar(item.get("priority")))
    return table


def flag_exists():
    try:
        s3.head_object(Bucket=FLAG_BUCKET, Key=FLAG_KEY)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def handler(event, context):
    global reference
    records = event["Records"]
    if not records:
        return {}
    if flag_exists():
        reference = load_reference()
        s3.delete_object(Bucket=FLAG_BUCKET, Key=FLAG_KEY)
    elif reference is None:
        reference = load_reference()

    partitions = {}
    for record in records:
        order = json.loads(base64.b64decode(record["kinesis"]["data"]))
        dish = order.get("dish")
        if dish not in reference:
            continue  # inner join: unmatched orders are dropped
        price, priority = reference[dish]
        partitions.setdefault((dish, priority), []).append(
            (order.get("cost"), price, priority, order.get("customer_id"), dish)
        )

    first = records[0]["kinesis"]["sequenceNumber"]
    for (item, priority), rows in partitions.items():
        body = io.StringIO()
        writer = csv.writer(body)
        writer.writerow(["cost", "price", "priority", "customer_id", "item"])
        writer.writerows(rows)
        key = f"{OUTPUT_PREFIX}item={item}/priority={priority}/part-{first}.csv"
        s3.put_object(Bucket=OUTPUT_BUCKET, Key=key, Body=body.getvalue().encode())
    return {}
