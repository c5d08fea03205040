"""The original design's change-handler Lambda, as the peer of the performance comparison.

Invoked by the ProductPriority table's DynamoDB stream with BatchSize 1. For every stream record
it writes the one fixed change flag object (the blog's "change file" variant): the record's
content is ignored, every change overwrites the same key. No partial-batch reporting.

Configuration: FLAG_BUCKET, FLAG_KEY (default change_flags/CHANGE_FLAG).
"""

import os

import boto3

s3 = boto3.client("s3")
BUCKET = os.environ["FLAG_BUCKET"]
KEY = os.environ.get("FLAG_KEY", "change_flags/CHANGE_FLAG")


def handler(event, context):
    for _record in event["Records"]:
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"CHANGE_FLAG")
    return {"flags": len(event["Records"])}
