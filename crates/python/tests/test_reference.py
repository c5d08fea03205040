"""The enrichment lifecycle from Python, against the emulator, through the real change-handler."""

import threading
import time
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer

import stream_refdata
from stream_refdata import ObjectReference, TableReference

from conftest import endpoint, put


def table_reference(r, **kw):
    kw.setdefault("poll_interval_seconds", 0.0)
    # One machine, one clock: no margin for clock skew between producer and consumer.
    kw.setdefault("clock_margin_seconds", 0.0)
    return TableReference(r.table, ["item", "price"], "item", r.bucket, **kw)


def refresh_until(ref, predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        report = ref.refresh()
        if predicate():
            return report
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout} s; last report {report}")


def test_a_change_with_its_image_costs_no_table_read(reference):
    ref = table_reference(reference)
    first = ref.refresh()
    assert first["full_reload"] == "first load"
    assert ref.lookup("burger")["priority"] == "medium"
    # The seed's change files were made around the Scan: re-read once (the full-load rule).
    ref.refresh()
    time.sleep(1.1)  # creation times are whole seconds: the update comes after the load's
    read = ref.metrics()["items_read"]
    version = ref.version
    table = ref.lookup_table()
    assert table["burger"] is ref.lookup("burger") and len(table) == 5
    assert ref.lookup_table() is table, "one dict per version"

    reference.set_priority("burger", "high", wait=False)
    refresh_until(ref, lambda: ref.lookup("burger")["priority"] == "high")
    m = ref.metrics()
    assert m["items_read"] == read, "the change applied from its image: no table read"
    assert m["changes_applied"] >= 1
    assert ref.version > version
    assert ref.lookup("donut") is None
    assert ref.lookup_table() is not table and ref.lookup_table()["burger"]["priority"] == "high"
    assert table["burger"]["priority"] == "medium", "the old version's dict is left as it was"


def test_values_map_as_boto3_deserializes_them(reference):
    put(
        reference.ddb,
        reference.table,
        "bento",
        "high",
        price_history={"L": [{"N": "9.5"}, {"N": "10"}]},
        tags={"SS": ["lunch", "box"]},
        sizes={"NS": ["1", "2.5"]},
        details={"M": {"vegan": {"BOOL": False}, "note": {"NULL": True}}},
        photo={"B": b"\x89PNG"},
    )
    ref = table_reference(reference)
    refresh_until(ref, lambda: ref.lookup("bento") is not None)
    ours = ref.lookup("bento")
    raw = reference.ddb.get_item(
        TableName=reference.table, Key={"item": {"S": "bento"}, "price": {"N": "100"}}, ConsistentRead=True
    )["Item"]
    theirs = {k: TypeDeserializer().deserialize(v) for k, v in raw.items()}
    # boto3 wraps binary in its Binary class; we give bytes.
    assert isinstance(theirs["photo"], Binary)
    theirs["photo"] = bytes(theirs["photo"])
    assert ours == theirs
    assert isinstance(ours["price"], Decimal) and ours["price"] == Decimal("100")
    assert ours["sizes"] == {Decimal("1"), Decimal("2.5")}


def test_a_flag_in_a_batch_splits_old_and_new_data_at_its_position(reference):
    # Polled only at flags: the change reaches the records after the flag, not those before.
    ref = table_reference(reference, poll_interval_seconds=3600.0)
    ref.refresh()  # the full load
    ref.refresh()  # the first poll: the next one is an hour away, but for flags
    reference.set_priority("burger", "high")
    orders = [{"dish": "burger", "n": 1}, {"dish": "CHANGE_FLAG"}, {"dish": "burger", "n": 2}]
    outcomes, report = ref.enrich_batch(
        orders, key=lambda o: o["dish"], is_flag=lambda o: o["dish"] == "CHANGE_FLAG"
    )
    assert [o[0] for o in outcomes] == ["enriched", "flag", "enriched"]
    assert outcomes[0][2]["priority"] == "medium"
    assert outcomes[2][2]["priority"] == "high"
    assert outcomes[2][1] is orders[2], "the record itself comes back"
    assert report["records"] == 3 and report["flags"] == 1 and report["retry"] is None


def test_unmatched_records_follow_the_policy_and_counts_reconcile(reference):
    orders = [{"dish": "burger"}, {"dish": "donut"}, {"no": "dish"}]
    for policy, status in [("dead-letter", "rejected"), ("pass", "passed"), ("drop", "dropped")]:
        ref = table_reference(reference, unmatched=policy)
        outcomes, report = ref.enrich_batch(orders, key=lambda o: o.get("dish"))
        assert [o[0] for o in outcomes] == ["enriched", status, "invalid"], policy
        assert "donut" in outcomes[1][2]
        assert outcomes[2][2] == "no lookup key"
        counted = sum(report[k] for k in ("enriched", "passed", "rejected", "dropped", "flags", "invalid", "held"))
        assert counted == report["records"] == 3


def test_a_failed_refresh_keeps_the_last_snapshot_and_staleness_grows(reference):
    ref = table_reference(reference, max_staleness_seconds=1.0)
    started = time.monotonic()
    ref.refresh()
    staleness = ref.staleness_seconds
    # As old as the load, which began after `started` (however slow the machine is).
    assert staleness is not None and staleness <= time.monotonic() - started + 0.05
    # The feed bucket goes away: every refresh fails from now on.
    s3 = reference.s3
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=reference.bucket).get("Contents", [])]:
        s3.delete_object(Bucket=reference.bucket, Key=key)
    s3.delete_bucket(Bucket=reference.bucket)
    report = ref.refresh()
    assert report["error"] and "ListObjectsV2" in report["error"], report
    assert ref.lookup("burger")["priority"] == "medium", "the last good data keeps serving"
    assert ref.metrics()["refresh_errors"] >= 1
    time.sleep(1.2)
    assert ref.staleness_seconds > 1.0
    outcomes, _ = ref.enrich_batch([{"dish": "burger"}], key=lambda o: o["dish"])
    assert outcomes[0][0] == "rejected" and "stale" in outcomes[0][2], outcomes


def test_lookups_are_safe_from_several_threads_while_it_refreshes(reference):
    ref = table_reference(reference)
    ref.refresh()
    errors = []

    def read():
        try:
            for _ in range(2000):
                assert ref.lookup("pizza")["item"] == "pizza"
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(5):
        ref.refresh()
    for t in threads:
        t.join()
    assert errors == []


def test_bad_configuration_is_a_clear_python_error(reference):
    with pytest.raises(ValueError, match="unknown unmatched policy"):
        table_reference(reference, unmatched="ignore")
    with pytest.raises(ValueError, match="key_attributes"):
        TableReference(reference.table, [], "item", reference.bucket)
    with pytest.raises(ValueError, match="feed_bucket"):
        TableReference(reference.table, ["item"], "item", "Not_A_Bucket")
    # Blank names, as a new user might pass them, are refused by name.
    for args, name in [
        (("", ["item"], "item"), "table"),
        ((reference.table, ["item", " "], "item"), "key_attributes"),
        ((reference.table, ["item"], ""), "lookup_attribute"),
    ]:
        with pytest.raises(ValueError, match=f"{name} is blank"):
            TableReference(*args, reference.bucket)
    with pytest.raises(ValueError, match="key_column is blank"):
        ObjectReference(reference.bucket, "reference/", " ", reference.bucket)
    assert stream_refdata.__version__


def test_reference_objects_in_s3_are_rows_by_their_key_column(reference):
    s3 = reference.s3
    s3.put_object(
        Bucket=reference.bucket,
        Key="reference/menu.csv",
        Body=b"item,category,allergens\nburger,mains,gluten\nsalad,starters,\n",
    )
    ref = ObjectReference(reference.bucket, "reference/", "item", reference.bucket, poll_interval_seconds=0.0)
    report = ref.refresh()
    assert report["error"] is None, report
    assert ref.lookup("burger") == {"item": "burger", "category": "mains", "allergens": "gluten"}
    assert len(ref) == 2
    outcomes, _ = ref.enrich_batch([{"dish": "salad"}, {"dish": "pizza"}], key=lambda o: o["dish"])
    assert outcomes[0][2]["category"] == "starters"
    assert outcomes[1][0] == "rejected"


def test_the_lookup_table_keys_numbers_as_lookup_does(reference):
    # A reference looked up by a number attribute: DynamoDB keeps its digits as written, which
    # Python's Decimal renders otherwise (0.0000001 -> 1E-7).
    put(reference.ddb, reference.table, "tiny", "low", price={"N": "0.0000001"})
    ref = TableReference(reference.table, ["item", "price"], "price", reference.bucket, poll_interval_seconds=0.0)
    assert ref.refresh()["error"] is None
    assert ref.lookup("0.0000001")["item"] == "tiny"
    table = ref.lookup_table()
    assert "0.0000001" in table and "1E-7" not in table, sorted(table)
    assert table["0.0000001"] is ref.lookup("0.0000001")


def test_health_says_never_loaded_then_names_a_rejected_object(reference):
    s3 = reference.s3
    s3.put_object(Bucket=reference.bucket, Key="reference/menu.csv", Body=b"item,category\nburger,mains\n")
    s3.put_object(Bucket=reference.bucket, Key="reference/bad.csv", Body=b"name,category\nsalad,starters\n")
    ref = ObjectReference(reference.bucket, "reference/", "item", reference.bucket, poll_interval_seconds=0.0)
    h = ref.health()
    assert (h["state"], h["loaded"], h["staleness_seconds"]) == ("never loaded", False, None), h
    assert h["reference"] == f"s3://{reference.bucket}/reference/"
    ref.refresh()
    h = ref.health()
    assert h["state"] == "degraded" and h["rejected"] == ["reference/bad.csv"], h
    assert ref.lookup("burger")["category"] == "mains"


def test_hold_waits_for_the_row_and_hands_out_the_version_that_resolved_it(reference):
    ref = table_reference(reference, unmatched="hold")
    ref.refresh()
    outcomes, counts = ref.enrich_batch([{"dish": "donut"}], key=lambda o: o["dish"])
    assert outcomes[0][0] == "waiting" and counts["waiting"] == 1, (outcomes, counts)
    assert ref.take_resolved() == []
    put(reference.ddb, reference.table, "donut", "low")
    refresh_until(ref, lambda: ref.lookup("donut") is not None)
    resolved = ref.take_resolved()
    assert [(k, i["priority"]) for k, i in resolved] == [("donut", "low")], resolved
    assert ref.take_resolved() == []
