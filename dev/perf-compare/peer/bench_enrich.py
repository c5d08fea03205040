"""Times the peer consumer's own handler on one event with its S3 calls replaced by a stub:
the CPU the original design's job logic spends per record on decoding, joining and encoding.

Usage: bench_enrich.py EVENT_JSON REPETITIONS. Loads the reference table once from the
emulator (REFERENCE_TABLE), then runs the handler REPETITIONS times on the event and prints
the process CPU time per record in microseconds.
"""

import json
import sys
import time

import consumer


class StubS3:
    """No flag object, and writes that go nowhere."""

    class exceptions:
        pass

    def head_object(self, **kwargs):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "404"}}, "HeadObject")

    def put_object(self, **kwargs):
        return {}

    def delete_object(self, **kwargs):
        return {}


def main():
    with open(sys.argv[1], "rb") as f:
        event = json.load(f)
    reps = int(sys.argv[2])
    consumer.reference = consumer.load_reference()
    consumer.s3 = StubS3()
    consumer.handler(event, None)
    start = time.process_time()
    for _ in range(reps):
        consumer.handler(event, None)
    elapsed = time.process_time() - start
    print(f"{elapsed * 1e6 / (reps * len(event['Records'])):.3f}")


if __name__ == "__main__":
    main()
