"""Shared by the peer scripts: the record shape, topics, CPU accounting, JSON-line output.

Runs in either peer venv (it needs only confluent-kafka and psutil, which setup.sh puts in both).
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time

import psutil

DEFAULT_BOOTSTRAP = os.environ.get("WEIR_TEST_KAFKA", "127.0.0.1:39092")
CACHE = os.environ.get("WEIR_PEERS_CACHE", os.path.expanduser("~/.cache/weir/peers"))
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------- the record shape


def json_value(i, extra=""):
    """The value of record i, byte for byte as benches/kafka.rs `json_value` makes it.

    About 100 bytes of flat JSON: `v` is uniform in 0..100 (W2 keeps v % 10 = 0, W3 groups by
    it), `name` takes 100 000 values (W3k), `ts` moves on 1 ms per record from 2024-01-01.
    `extra` (W6: `"sent":<µs>,`) goes before `pad`, which is cut to keep the total at 100.
    """
    head = (
        f'{{"id":{i},"name":"user-{i % 100_000:06}","v":{(i * 7919) % 100},"city":"Seattle",'
        f'"ts":"2024-01-01T{i // 3_600_000:02}:{(i // 60_000) % 60:02}:{(i // 1000) % 60:02}'
        f'.{i % 1000:03}Z",{extra}"pad":"'
    )
    return (head + "y" * max(0, 98 - len(head)) + '"}').encode()


def key_of(i):
    return f"k{i % 1000}".encode()


def rfc3339_ms(epoch_us):
    t = dt.datetime.fromtimestamp(epoch_us / 1e6, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03}Z"


# ---------------------------------------------------------------- topics


def admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, topic, partitions, recreate=False):
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)
    if recreate and topic in a.list_topics(timeout=10).topics:
        delete_topics(bootstrap, [topic])
    futures = a.create_topics([NewTopic(topic, partitions, 1)])
    for f in futures.values():
        f.result()


def delete_topics(bootstrap, topics):
    a = admin(bootstrap)
    for f in a.delete_topics(list(topics)).values():
        f.result()
    # Deletion is asynchronous on the broker; wait until the names are gone.
    for _ in range(100):
        if not set(topics) & set(a.list_topics(timeout=10).topics):
            return
        time.sleep(0.1)


def partition_count(bootstrap, topic):
    meta = admin(bootstrap).list_topics(topic, timeout=10).topics.get(topic)
    return len(meta.partitions) if meta is not None and meta.error is None else None


def topic_records(bootstrap, topic):
    """Records in the topic: the sum over partitions of (end offset - start offset)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-peers-offsets"})
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        total = 0
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        c.close()


# ---------------------------------------------------------------- CPU accounting


class ProcessTreeCpu:
    """CPU seconds (user + sys) of this process's descendants: the JVM and anything it forks.

    psutil's cpu_times of a process include its reaped children (children_user/_system), so a
    sum over the live tree misses only processes that died without being waited for.
    """

    def __init__(self, root_pid=None):
        self.root = psutil.Process(root_pid or os.getpid())

    def descendants(self):
        return self.root.children(recursive=True)

    def jvm_pids(self):
        return [p.pid for p in self.descendants() if p.name() == "java"]

    def seconds(self):
        total = 0.0
        for p in self.descendants():
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        return total

    def own_seconds(self):
        t = self.root.cpu_times()
        return t.user + t.system


def scratch_dir(pid=None):
    """The JVM's java.io.tmpdir for this run (Spark and Flink unpack jars and spill there);
    kept out of /tmp so that a killed JVM leaves nothing behind that remove_scratch misses."""
    path = os.path.join(CACHE, "tmp", str(pid or os.getpid()))
    os.makedirs(path, exist_ok=True)
    return path


def remove_scratch(pid=None):
    shutil.rmtree(os.path.join(CACHE, "tmp", str(pid or os.getpid())), ignore_errors=True)


def exit_ending_jvms():
    """Ends this process's descendants (the JVM), waits for them (a JVM still shutting down must
    not overlap the next measured run) and exits at once: py4j's finalizers would otherwise log
    a screenful of errors trying to reach the JVM that is gone. Call after the result is out."""
    procs = ProcessTreeCpu().descendants()
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=30)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)
    remove_scratch()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def emit(record):
    """One JSON line on stdout (and nothing else there), flushed."""
    record.setdefault("loadavg", loadavg())
    record.setdefault("cores", os.cpu_count())
    record.setdefault("time", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def peer_arguments(doc, workloads, peer):
    """The command line every peer script shares; the caller adds its own options."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", choices=sorted(workloads), required=True)
    ap.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP)
    ap.add_argument("--topic", default="peers_json")
    ap.add_argument("--out-topic", default=f"peers_{peer}_out", help="W6's sink topic")
    ap.add_argument("--continuous", action="store_true", help="W6 latency mode: run until SIGTERM")
    return ap


def run_mode(ap, args, continuous, throughput, check=None):
    """W6 latency mode with --continuous, the row check with --check, else one throughput run."""
    if args.continuous:
        if args.workload != "W6":
            ap.error("--continuous is for W6")
        continuous(args)
    elif check is not None and args.check:
        check(args)
    else:
        throughput(args)


def rates(records, wall, cpu, query_wall, query_cpu):
    """Records, times and rates of a throughput run, whole and query only."""
    per = lambda seconds: round(records / seconds) if seconds else None
    return {
        "records": records,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "records_per_cpu_s": per(cpu),
        "query_wall_s": round(query_wall, 3),
        "query_cpu_s": round(query_cpu, 3),
        "query_records_per_s": per(query_wall),
        "query_records_per_cpu_s": per(query_cpu),
    }


def prepare_throughput(args):
    """The records the input topic holds; for W6, a fresh output topic of as many partitions."""
    if args.workload == "W6":
        partitions = partition_count(args.bootstrap, args.topic)
        create_topic(args.bootstrap, args.out_topic, partitions, recreate=True)
    return topic_records(args.bootstrap, args.topic)


def max_offsets_argument(ap):
    """--max-offsets-per-trigger, for the peers whose batches it sizes."""
    ap.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        default=None,
        help="records per micro-batch (default: W3/W3k 100000 as benches/kafka.rs, else unlimited)",
    )


def default_max_offsets(args):
    if args.max_offsets_per_trigger is None and args.workload in ("W3", "W3k"):
        args.max_offsets_per_trigger = 100_000


def jars(peer):
    d = os.path.join(CACHE, peer, "jars")
    found = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jar"))
    if not found:
        sys.exit(f"no jars in {d}: run benches/peers/setup.sh {peer}")
    return found


class Stopwatch:
    """Wall and JVM-tree CPU from construction (process start) and from `start_query()`."""

    def __init__(self):
        self.cpu = ProcessTreeCpu()
        self.wall0 = psutil.Process().create_time()
        self.query_wall0 = self.query_cpu0 = self.query_driver0 = None

    def start_query(self):
        self.query_cpu0 = self.cpu.seconds()
        self.query_driver0 = self.cpu.own_seconds()
        self.query_wall0 = time.time()

    def result(self, records):
        """Call while the JVM is still alive (before stopping the session)."""
        now, cpu, driver = time.time(), self.cpu.seconds(), self.cpu.own_seconds()
        # Whole run: process start (JVM launch, planning, JIT warm-up included) to the end;
        # query: from just before the query starts to its end, without JVM start-up.
        return {
            **rates(records, now - self.wall0, cpu, now - self.query_wall0, cpu - self.query_cpu0),
            # The Python driver (py4j calls only); not included in cpu_s.
            "driver_cpu_s": round(driver, 3),
            "query_driver_cpu_s": round(driver - self.query_driver0, 3),
        }
