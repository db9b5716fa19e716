"""Pre-loads a topic with N records of the W2/W3 shape (common.json_value), once.

    python load.py --records 1000000 [--topic peers_json] [--partitions 8] [--recreate]

Record i goes to partition i % partitions with key k{i % 1000}, as benches/kafka.rs loads its
`json` topic, so each partition's `ts` only grows. A topic that already holds exactly N records
is left as it is (pass --recreate to reload).
"""

import argparse
import time

from confluent_kafka import Producer

import common


def produce(bootstrap, topic, records, partitions):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "none",
        }
    )
    for i in range(records):
        while True:
            try:
                p.produce(topic, common.json_value(i), common.key_of(i), partition=i % partitions)
                break
            except BufferError:
                p.poll(0.005)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left:
        raise SystemExit(f"{left} records not delivered")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bootstrap", default=common.DEFAULT_BOOTSTRAP)
    ap.add_argument("--topic", default="peers_json")
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--recreate", action="store_true")
    args = ap.parse_args()

    have = common.topic_records(args.bootstrap, args.topic)
    if have == args.records and not args.recreate:
        common.log(f"{args.topic} already holds {have} records")
        return
    if have is not None:
        common.log(f"{args.topic} holds {have} records; recreating it")
    common.create_topic(args.bootstrap, args.topic, args.partitions, recreate=have is not None)
    started = time.time()
    produce(args.bootstrap, args.topic, args.records, args.partitions)
    took = time.time() - started
    have = common.topic_records(args.bootstrap, args.topic)
    assert have == args.records, f"topic holds {have} records, not {args.records}"
    common.emit(
        {
            "step": "load",
            "topic": args.topic,
            "records": args.records,
            "partitions": args.partitions,
            "seconds": round(took, 1),
        }
    )


if __name__ == "__main__":
    main()
