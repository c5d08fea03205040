"""Fixtures of the Python package's tests: the emulator (moto's server, started by scripts/test,
reached through AWS_ENDPOINT_URL), a reference table with its stream and the original's five
items, a feed bucket, and the real change-handler writing the feed (tests/bin/pump-stream,
which stands in for the event source mapping; scripts/test builds it and names it in
PUMP_STREAM)."""

import os
import pathlib
import subprocess
import time
import uuid

import boto3
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
ORIGINAL_ITEMS = [
    ("pizza", "low"),
    ("burger", "medium"),
    ("salad", "high"),
    ("ice-cream", "very very high"),
    ("pasta", "very high"),
]


def pump_stream():
    """The pump-stream binary: PUMP_STREAM, or where cargo builds it (scripts/cargo-bin)."""
    path = os.environ.get("PUMP_STREAM")
    if not path:
        out = subprocess.run(
            [str(ROOT / "scripts" / "cargo-bin"), "-p", "end-to-end", "--bin", "pump-stream"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        )
        path = out.stdout.split()[-1]
    assert pathlib.Path(path).exists(), f"{path} is missing: scripts/test builds it"
    return path


def endpoint():
    url = os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        pytest.fail("AWS_ENDPOINT_URL is not set: run the tests with scripts/test (it starts the emulator)")
    return url


@pytest.fixture(scope="session")
def ddb():
    return boto3.client("dynamodb", endpoint_url=endpoint(), region_name="us-east-1")


@pytest.fixture(scope="session")
def s3():
    return boto3.client("s3", endpoint_url=endpoint(), region_name="us-east-1")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def put(ddb, table, item, priority, **extra):
    attrs = {"item": {"S": item}, "price": {"N": "100"}, "priority": {"S": priority}}
    attrs.update(extra)
    ddb.put_item(TableName=table, Item=attrs)


class Reference:
    """A table, its feed bucket and the pump writing the feed."""

    def __init__(self, ddb, s3):
        self.ddb, self.s3 = ddb, s3
        self.table = unique("ProductPriority")
        self.bucket = unique("feed")
        ddb.create_table(
            TableName=self.table,
            KeySchema=[
                {"AttributeName": "item", "KeyType": "HASH"},
                {"AttributeName": "price", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "item", "AttributeType": "S"},
                {"AttributeName": "price", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        s3.create_bucket(Bucket=self.bucket)
        for item, priority in ORIGINAL_ITEMS:
            put(ddb, self.table, item, priority)
        self.pump = subprocess.Popen([str(pump_stream()), self.table, self.bucket], stderr=subprocess.DEVNULL)

    def change_files(self):
        out = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="change_flags/2")
        return [o["Key"] for o in out.get("Contents", [])]

    def set_priority(self, item, priority, wait=True):
        """The seed's update: `item`'s priority set to `priority` in the table; with `wait`,
        returns once the pump has written the change file for it."""
        files = len(self.change_files()) if wait else 0
        self.ddb.update_item(
            TableName=self.table,
            Key={"item": {"S": item}, "price": {"N": "100"}},
            UpdateExpression="SET priority = :s",
            ExpressionAttributeValues={":s": {"S": priority}},
        )
        if wait:
            self.wait_for_change_files(files + 1)

    def wait_for_change_files(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.change_files()) >= n:
                return
            time.sleep(0.1)
        raise AssertionError(f"fewer than {n} change files after {timeout} s: {self.change_files()}")

    def close(self):
        self.pump.kill()
        self.pump.wait()


@pytest.fixture
def reference(ddb, s3):
    r = Reference(ddb, s3)
    # The seed writes five items: the pump turns them into change files first.
    r.wait_for_change_files(1)
    yield r
    r.close()
