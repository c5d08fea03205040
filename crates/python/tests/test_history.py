"""TableHistory: the table as it was at any time of a window, read from the feed the real
change-handler writes (through the pump), on the emulator."""

import time

import pytest

from stream_refdata import NotAnswerable, TableHistory

from conftest import endpoint


def test_a_table_as_it_was_at_each_time_of_the_window(reference):
    window_start = time.time() - 600  # before the table existed: it held nothing then
    reference.set_priority("burger", "high")
    after_high = time.time()
    time.sleep(1.1)  # the next change in a later second
    reference.set_priority("burger", "low")
    after_low = time.time()

    h = TableHistory(
        reference.table, ["item", "price"], "item", reference.bucket, window_start,
        look_back_seconds=0.0, empty_at_start=True, endpoint_url=endpoint(),
    )
    assert h.starts_at == pytest.approx(window_start, abs=0.001), "no snapshot: the window's start"
    assert h.lookup("burger", after_high)["priority"] == "high"
    assert h.lookup("burger", after_low)["priority"] == "low"
    assert h.lookup("salad", after_low)["priority"] == "high", "written in the window"
    assert h.lookup("donut", after_low) is None, "never written"
    with pytest.raises(NotAnswerable, match="before the history"):
        h.lookup("burger", window_start - 1)
    # Without a snapshot and without knowing the table was empty, nothing is answered.
    unbased = TableHistory(
        reference.table, ["item", "price"], "item", reference.bucket, window_start,
        look_back_seconds=0.0, endpoint_url=endpoint(),
    )
    with pytest.raises(NotAnswerable, match="before the history"):
        unbased.lookup("burger", after_low)
    assert h.is_final(after_high - 60)


def test_bad_arguments_name_what_is_wrong(reference):
    with pytest.raises(ValueError, match="look_back_seconds"):
        TableHistory(reference.table, ["item"], "item", reference.bucket, 0.0, look_back_seconds=-1.0)
    with pytest.raises(ValueError, match="feed_bucket"):
        TableHistory(reference.table, ["item"], "item", "Not A Bucket", 0.0)
