"""weir on the peers' workloads, through the `weir` binary, so that it is measured as Spark and
Flink are: same broker, same topic, same queries, CPU of the whole process.

Throughput (one JSON line on stdout): the pre-loaded topic from earliest, trigger availableNow,
stops by itself when everything up to the end offsets at start has been read:

    python weir_peer.py --workload W2|W3|W3k|W6 [--topic peers_json] [--weir target/release/weir]

Latency (W6, for latency.py): the same Kafka -> Kafka query with the default trigger, running
until SIGTERM; prints READY when started:

    python weir_peer.py --workload W6 --continuous --topic IN --out-topic OUT

Queries (benches/kafka.rs's):
    W2   SELECT id, name FROM t WHERE v % 10 = 0                                  -> memory sink
    W3   10 s tumbling window on ts (watermark ts - 1 s), count(*), sum(id), max(v)
         GROUP BY window, CAST(v AS VARCHAR) (100 keys), append mode           -> memory sink
    W3k  W3 grouped by name (100 000 keys)
    W6   SELECT id, name, v, sent FROM t, as JSON                              -> Kafka topic
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import common

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

COLUMNS = {
    "W2": "id BIGINT, name VARCHAR, v BIGINT, city VARCHAR",
    "W3": "id BIGINT, name VARCHAR, v BIGINT, ts TIMESTAMP",
    "W3k": "id BIGINT, name VARCHAR, v BIGINT, ts TIMESTAMP",
    "W6": "id BIGINT, name VARCHAR, v BIGINT, sent BIGINT",
}


def script(args, checkpoint, bounded):
    """The SQL weir runs."""
    source_options = f"'subscribe' '{args.topic}', 'format' 'json', 'kafka.bootstrap.servers' '{args.bootstrap}'"
    if bounded:
        source_options += ", 'startingOffsets' 'earliest'"
        if args.max_offsets_per_trigger:
            source_options += f", 'maxOffsetsPerTrigger' '{args.max_offsets_per_trigger}'"
    if args.workload in ("W3", "W3k"):
        source_options += ", 'watermark' 'ts - INTERVAL ''1'' SECOND'"
    table = f"CREATE EXTERNAL TABLE t ({COLUMNS[args.workload]}) STORED AS KAFKA OPTIONS ({source_options});"
    trigger = "'trigger' 'availableNow', " if bounded else ""
    if args.workload == "W2":
        sink = "CREATE EXTERNAL TABLE out (id BIGINT, name VARCHAR) STORED AS MEMORY;"
        select = "SELECT id, name FROM t WHERE v % 10 = 0"
    elif args.workload in ("W3", "W3k"):
        key = "CAST(v AS VARCHAR)" if args.workload == "W3" else "name"
        sink = "CREATE EXTERNAL TABLE out (window_end TIMESTAMP, k VARCHAR, n BIGINT, total BIGINT, top BIGINT) STORED AS MEMORY;"
        select = (
            f"SELECT window_end, {key}, count(*), sum(id), max(v) FROM "
            f"tumble(t, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, {key}"
        )
    else:
        sink = (
            f"CREATE EXTERNAL TABLE out (id BIGINT, name VARCHAR, v BIGINT, sent BIGINT) STORED AS KAFKA "
            f"OPTIONS ('subscribe' '{args.out_topic}', 'format' 'json', 'kafka.bootstrap.servers' '{args.bootstrap}'"
            f"{args.sink_options});"
        )
        select = "SELECT id, name, v, sent FROM t"
    query = f"CREATE STREAMING QUERY w WITH ({trigger}'checkpoint' '{checkpoint}') AS INSERT INTO out {select};"
    return "\n".join([table, sink, query])


def run_weir(args, sql_path):
    """Starts `weir run`; its summaries and progress lines (standard error) go to stdout."""
    return subprocess.Popen(
        [args.weir, "run", sql_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )


BATCH_LINE = re.compile(r"query w batch (\d+): (\d+) rows")


def throughput(args):
    expected = common.prepare_throughput(args)
    with tempfile.TemporaryDirectory() as tmp:
        sql_path = os.path.join(tmp, "w.sql")
        with open(sql_path, "w") as f:
            f.write(script(args, os.path.join(tmp, "cp"), bounded=True))
        started = time.time()
        weir = run_weir(args, sql_path)
        out, _ = weir.communicate()
        wall = time.time() - started
        if weir.returncode:
            sys.exit(f"weir failed: {out}")
    cpu = child_cpu_seconds()
    records = sum(int(m.group(2)) for m in BATCH_LINE.finditer(out))
    batches = len(BATCH_LINE.findall(out))
    assert records == expected, f"read {records} records, the topic holds {expected}; weir said:\n{out}"
    # weir starts in milliseconds: its whole run is its query.
    result = common.rates(records, wall, cpu, wall, cpu)
    if args.workload == "W6":
        result["out_records"] = common.topic_records(args.bootstrap, args.out_topic)
    common.emit(
        {
            "peer": "weir",
            "version": version(args),
            "workload": args.workload,
            "topic": args.topic,
            "batches": batches,
            "max_offsets_per_trigger": args.max_offsets_per_trigger,
            **result,
        }
    )


def child_cpu_seconds():
    """CPU seconds (user + sys) of this process's children that were waited for: weir."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def continuous(args):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with tempfile.TemporaryDirectory() as tmp:
        sql_path = os.path.join(tmp, "w.sql")
        with open(sql_path, "w") as f:
            f.write(script(args, os.path.join(tmp, "cp"), bounded=False))
        weir = run_weir(args, sql_path)
        for line in weir.stdout:
            if "Started streaming query" in line:
                break
        else:
            sys.exit("weir did not start")
        print("READY", flush=True)
        durations = []
        reader = threading.Thread(target=lambda: collect(weir.stdout, durations), daemon=True)
        reader.start()
        while not stop.wait(0.5):
            if weir.poll() is not None:
                sys.exit("weir stopped")
        weir.send_signal(signal.SIGINT)
        weir.wait(60)
    report_batches(durations)


def report_batches(batches):
    """Logs the batches that read something: how many rows, how long they took, and the p50 of
    each phase (plan, read, run, sink, commit)."""
    if not batches:
        return
    at = lambda values, q: values[min(len(values) - 1, int(q * len(values)))]
    column = lambda i: sorted(b[i] for b in batches)
    times = column(1)
    common.log(
        "weir W6 batches: "
        + json.dumps(
            {
                "batches": len(batches),
                "rows_p50": at(column(0), 0.5),
                "batch_ms_p50": at(times, 0.5),
                "batch_ms_p90": at(times, 0.9),
                "batch_ms_p99": at(times, 0.99),
                "batch_ms_max": times[-1],
                "plan_ms_p50": at(column(2), 0.5),
                "read_ms_p50": at(column(3), 0.5),
                "run_ms_p50": at(column(4), 0.5),
                "sink_ms_p50": at(column(5), 0.5),
                "commit_ms_p50": at(column(6), 0.5),
            }
        )
    )


def collect(lines, batches):
    pattern = re.compile(
        r"query w batch \d+: (\d+) rows in ([0-9.]+) ms \(plan ([0-9.]+), read ([0-9.]+), "
        r"run ([0-9.]+), sink ([0-9.]+), commit ([0-9.]+)"
    )
    for line in lines:
        m = pattern.search(line)
        if m and int(m.group(1)) > 0:
            batches.append((int(m.group(1)), *(float(m.group(i)) for i in range(2, 8))))


def version(args):
    out = subprocess.run([args.weir, "--version"], stdout=subprocess.PIPE, text=True).stdout
    return out.strip().split()[-1] if out else "?"


def main():
    ap = common.peer_arguments(__doc__, COLUMNS, "weir")
    ap.add_argument(
        "--sink-option",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="W6: another option of the Kafka sink table, such as transactional false",
    )
    ap.add_argument("--weir", default=os.path.join(ROOT, "target", "release", "weir"))
    common.max_offsets_argument(ap)
    args = ap.parse_args()
    args.sink_options = "".join(f", '{key}' '{value}'" for key, value in args.sink_option)
    if not os.path.exists(args.weir):
        ap.error(f"{args.weir} does not exist: cargo build --release --bin weir")
    common.default_max_offsets(args)
    common.run_mode(ap, args, continuous, throughput)


if __name__ == "__main__":
    main()
