"""TableHistory: the table as it was at any time of a window, read from the feed the real
change-handler writes (through the pump), on the emulator."""

import time

import pytest

from stream_refdata import NotAnswerable, TableHistory

from conftest import endpoint


def test_a_table_as_it_was_at_each_time_of_the_window(reference):
    window_start = time.time() - 600  # before the table's five items were written
    reference.set_priority("burger", "high")
    after_high = time.time()
    time.sleep(1.1)  # the next change in a later second
    reference.set_priority("burger", "low")
    after_low = time.time()

    h = TableHistory(
        reference.table, ["item", "price"], "item", reference.bucket, window_start,
        look_back_seconds=0.0, endpoint_url=endpoint(),
    )
    assert h.starts_at == pytest.approx(window_start, abs=0.001), "no snapshot: the window's start"
    assert h.lookup("burger", after_high)["priority"] == "high"
    assert h.lookup("burger", after_low)["priority"] == "low"
    assert h.lookup("salad", after_low)["priority"] == "high", "written in the window"
    # A key with no item in the window: without a snapshot the history cannot say it had none.
    with pytest.raises(NotAnswerable, match="before the history"):
        h.lookup("donut", after_low)
    with pytest.raises(NotAnswerable, match="before the history"):
        h.lookup("burger", window_start - 1)
    assert h.is_final(after_high - 60)


def test_bad_arguments_name_what_is_wrong(reference):
    with pytest.raises(ValueError, match="look_back_seconds"):
        TableHistory(reference.table, ["item"], "item", reference.bucket, 0.0, look_back_seconds=-1.0)
    with pytest.raises(ValueError, match="feed_bucket"):
        TableHistory(reference.table, ["item"], "item", "Not A Bucket", 0.0)
