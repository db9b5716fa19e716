"""W6: end-to-end latency of a peer's stateless Kafka -> Kafka query at a fixed input rate.

    python latency.py --peer spark|flink|weir|none [--rate 1000] [--duration 15] [--warmup 10]

Runs in either peer venv. It creates two fresh topics, starts the peer's continuous W6 query
(`<peer>_peer.py --workload W6 --continuous`, in the peer's own venv) with its default trigger,
then a producer process that writes `--rate` records a second, each stamped with its send time
(`"sent": <epoch µs>` in the W2-shaped JSON value), and a consumer process that reads the
output topic and takes receive time - sent. Records sent during the first `--warmup` seconds are
ignored; the percentiles cover those sent in the next `--duration` seconds. The consumer waits
`--grace` seconds past the end for stragglers; records still missing then are reported, not
counted. It prints one JSON line, stops the peer and deletes the topics. `--peer none` runs the
producer and consumer alone (the producer writes into the output topic): the latency the harness
itself adds on this machine at that rate, the floor under every peer's figure.

The real run uses 60 s a point at 25/50/75 % of the peer's maximum rate; the maximum is the
query_records_per_s of `<peer>_peer.py --workload W6` over a pre-loaded topic.
"""

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import psutil

import common

HERE = os.path.dirname(os.path.abspath(__file__))


def now_us():
    return time.time_ns() // 1000


# ---------------------------------------------------------------- producer process


def produce(args):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": args.linger_ms})
    start, end = args.start_us, args.start_us + int((args.warmup + args.duration) * 1e6)
    window = (start + int(args.warmup * 1e6), end)
    while now_us() < start:
        time.sleep(0.001)
    i = in_window = 0
    while True:
        now = now_us()
        if now >= end:
            break
        due = (now - start) * args.rate // 1_000_000
        while i < due:
            sent = now_us()
            value = common.json_value(i, extra=f'"sent":{sent},')
            try:
                p.produce(args.topic, value, common.key_of(i), partition=i % args.partitions)
            except BufferError:
                p.poll(0.001)
                continue
            in_window += window[0] <= sent < window[1]
            i += 1
        p.poll(0)
        time.sleep(0.0005)
    p.flush(30)
    print(json.dumps({"sent": i, "sent_in_window": in_window, "achieved_rate": round(i / ((end - start) / 1e6))}))


# ---------------------------------------------------------------- consumer process


SENT = b'"sent":'


def sent_time(value):
    """The `sent` field of a JSON value, found without parsing the whole value (the consumer
    must keep up with the highest rates on the same cores as everything else)."""
    at = value.find(SENT)
    if at < 0:
        return json.loads(value).get("sent")
    digits = value[at + len(SENT) :].lstrip()
    end = 0
    while end < len(digits) and digits[end] in b"0123456789":
        end += 1
    return int(digits[:end]) if end else None


def consume(args):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "weir-peers-latency",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])  # 0: beginning
    window = (args.start_us + int(args.warmup * 1e6), args.start_us + int((args.warmup + args.duration) * 1e6))
    stop = window[1] + int(args.grace * 1e6)
    latencies, received = [], 0
    while now_us() < stop:
        # consume() waits out its whole timeout unless the batch fills, so a short one: the
        # receive time is then within a millisecond of the record becoming readable.
        messages = c.consume(10000, timeout=0.001)
        arrived = now_us()
        for m in messages:
            if m.error():
                raise SystemExit(f"consumer error: {m.error()}")
            received += 1
            sent = sent_time(m.value())
            if sent is not None and window[0] <= sent < window[1]:
                latencies.append(arrived - sent)
    c.close()
    latencies.sort()

    def pct(q):
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000, 2) if latencies else None

    print(
        json.dumps(
            {
                "received": received,
                "measured": len(latencies),
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "p999_ms": pct(0.999),
                "max_ms": round(latencies[-1] / 1000, 2) if latencies else None,
                "mean_ms": round(sum(latencies) / len(latencies) / 1000, 2) if latencies else None,
            }
        )
    )


# ---------------------------------------------------------------- the orchestrating process


def start_peer(args, topic_in, topic_out, log_path):
    # weir's driver script needs only what this venv has; Spark and Flink need their own.
    python = sys.executable if args.peer == "weir" else os.path.join(common.CACHE, args.peer, "venv", "bin", "python")
    command = [
        python,
        os.path.join(HERE, f"{args.peer}_peer.py"),
        "--workload", "W6", "--continuous",
        "--bootstrap", args.bootstrap,
        "--topic", topic_in,
        "--out-topic", topic_out,
        *args.peer_args,
    ]  # fmt: skip
    log = open(log_path, "w")
    # A session of its own, so that the whole tree (python, JVM) can be ended by its id.
    peer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in peer.stdout], daemon=True).start()
    deadline = time.time() + args.start_timeout
    while time.time() < deadline:
        try:
            if lines.get(timeout=1).strip() == "READY":
                return peer
        except queue.Empty:
            if peer.poll() is not None:
                break
    stop_peer(peer)
    raise SystemExit(f"the {args.peer} query did not start; see {log_path}")


def stop_peer(peer):
    if peer.poll() is None:
        peer.send_signal(signal.SIGTERM)
        try:
            peer.wait(60)
        except subprocess.TimeoutExpired:
            pass
    # Anything left of the tree (the JVM) is in the peer's own process group.
    try:
        os.killpg(peer.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    peer.wait()
    # A killed JVM takes a moment to go; return when nothing of the group is left.
    for _ in range(100):
        if not group_alive(peer.pid):
            return
        time.sleep(0.1)


def group_alive(pgid):
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid:
                return True
        except ProcessLookupError:
            pass
    return False


def role_command(role, args, topic, start_us):
    return [
        sys.executable, os.path.abspath(__file__), "--role", role,
        "--bootstrap", args.bootstrap, "--topic", topic,
        "--partitions", str(args.partitions), "--rate", str(args.rate),
        "--duration", str(args.duration), "--warmup", str(args.warmup),
        "--grace", str(args.grace), "--linger-ms", str(args.linger_ms),
        "--start-us", str(start_us),
    ]  # fmt: skip


def orchestrate(args):
    stamp = time.strftime("%Y%m%d%H%M%S")
    topic_in, topic_out = f"w6_{args.peer}_{stamp}_in", f"w6_{args.peer}_{stamp}_out"
    for t in (topic_in, topic_out):
        common.create_topic(args.bootstrap, t, args.partitions)
    log_path = os.path.join(common.CACHE, f"latency-{args.peer}-{stamp}.log")
    # With no peer the producer writes straight into the output topic: the harness's own floor.
    peer = None if args.peer == "none" else start_peer(args, topic_in, topic_out, log_path)
    try:
        cpu = common.ProcessTreeCpu(peer.pid) if peer else None
        start_us = now_us() + 2_000_000  # both children are up by then
        consumer = subprocess.Popen(role_command("consume", args, topic_out, start_us), stdout=subprocess.PIPE)
        into = topic_in if peer else topic_out
        producer = subprocess.Popen(role_command("produce", args, into, start_us), stdout=subprocess.PIPE)
        # The peer's CPU over the measurement window (its python driver and JVM).
        time.sleep(max(0, (start_us - now_us()) / 1e6 + args.warmup))
        cpu0 = cpu.seconds() + cpu.own_seconds() if cpu else 0
        time.sleep(args.duration)
        peer_cpu = cpu.seconds() + cpu.own_seconds() - cpu0 if cpu else 0
        if peer and peer.poll() is not None:
            raise SystemExit(f"the {args.peer} query ended early; see {log_path}")
        sent = json.loads(producer.communicate()[0])
        got = json.loads(consumer.communicate()[0])
        if producer.returncode or consumer.returncode:
            raise SystemExit("the producer or the consumer failed")
    finally:
        if peer:
            stop_peer(peer)
            common.remove_scratch(peer.pid)
    if not args.keep_topics:
        common.delete_topics(args.bootstrap, [topic_in, topic_out])
    common.emit(
        {
            "peer": args.peer,
            "workload": "W6",
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "partitions": args.partitions,
            **sent,
            **got,
            "missing": sent["sent_in_window"] - got["measured"],
            "peer_cpu_s_per_s": round(peer_cpu / args.duration, 3),
            "peer_log": log_path,
        }
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peer", choices=["spark", "flink", "weir", "none"], help="none: the harness alone")
    ap.add_argument("--bootstrap", default=common.DEFAULT_BOOTSTRAP)
    ap.add_argument("--rate", type=int, default=1000, help="records per second")
    ap.add_argument("--duration", type=float, default=15, help="seconds measured")
    ap.add_argument("--warmup", type=float, default=10, help="seconds sent before measuring")
    ap.add_argument("--grace", type=float, default=5, help="seconds to wait for stragglers")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--linger-ms", type=int, default=0, help="the producer's linger.ms")
    ap.add_argument("--start-timeout", type=float, default=180, help="seconds for the peer to start")
    ap.add_argument("--keep-topics", action="store_true")
    ap.add_argument("--peer-args", nargs=argparse.REMAINDER, default=[], help="passed to <peer>_peer.py")
    # Internal: the producer and consumer processes.
    ap.add_argument("--role", choices=["produce", "consume"], help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--start-us", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "produce":
        produce(args)
    elif args.role == "consume":
        consume(args)
    elif args.peer:
        orchestrate(args)
    else:
        ap.error("--peer is required")


if __name__ == "__main__":
    main()
