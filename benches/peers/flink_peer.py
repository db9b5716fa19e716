"""Flink SQL (PyFlink Table API, local mini-cluster in the gateway JVM) on the benchmark workloads.

Throughput (one JSON line on stdout): the pre-loaded topic from earliest with a bounded source
('scan.bounded.mode' = 'latest-offset'); the job ends by itself when every partition reaches the
end offset it had at start:

    python flink_peer.py --workload W2|W3|W3k|W6 [--topic peers_json] [--check]

--check runs the same tables in batch mode and reports the input and output row counts instead of
timing (Flink's chained job exposes no record count once it has finished).

Latency (W6, for latency.py): unbounded source, runs until SIGTERM; prints READY when submitted:

    python flink_peer.py --workload W6 --continuous --topic IN --out-topic OUT

Queries (benches/kafka.rs's, in Flink's dialect):
    W2   SELECT id, name FROM t WHERE MOD(v, 10) = 0                              -> blackhole
    W3   TUMBLE(ts, 10 s) (watermark ts - 1 s), COUNT(*), SUM(id), MAX(v)
         GROUP BY window, CAST(v AS STRING) (100 keys)                         -> blackhole
    W3k  W3 grouped by name (100 000 keys)
    W6   SELECT id, name, v, sent FROM t, as JSON                              -> Kafka topic
"""

import os
import signal
import threading

import common

COLUMNS = {
    "W2": "id BIGINT, name STRING, v BIGINT, city STRING",
    "W3": "id BIGINT, name STRING, v BIGINT, ts TIMESTAMP_LTZ(3),"
    " WATERMARK FOR ts AS ts - INTERVAL '1' SECOND",
    "W6": "id BIGINT, name STRING, v BIGINT, sent BIGINT",
}
COLUMNS["W3k"] = COLUMNS["W3"]

SINK_COLUMNS = {
    "W2": "id BIGINT, name STRING",
    "W3": "window_end TIMESTAMP(3), k STRING, n BIGINT, total BIGINT, top BIGINT",
    "W3k": "window_end TIMESTAMP(3), k STRING, n BIGINT, total BIGINT, top BIGINT",
    "W6": "id BIGINT, name STRING, v BIGINT, sent BIGINT",
}


def select(workload):
    if workload == "W2":
        return "SELECT id, name FROM t WHERE MOD(v, 10) = 0"
    if workload in ("W3", "W3k"):
        key = "CAST(v AS STRING)" if workload == "W3" else "name"
        return f"""SELECT window_end, {key} AS k, COUNT(*) AS n, SUM(id) AS total, MAX(v) AS top
                   FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
                   GROUP BY window_start, window_end, {key}"""
    return "SELECT id, name, v, sent FROM t"


def environment(args, batch=False):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    tmp = common.scratch_dir()
    os.environ["JVM_ARGS"] = f"-Djava.io.tmpdir={tmp}"  # read by pyflink's gateway launcher
    settings = EnvironmentSettings.in_batch_mode() if batch else EnvironmentSettings.in_streaming_mode()
    t_env = TableEnvironment.create(settings)
    config = t_env.get_config()
    # Local jar (setup.sh): pipeline.jars takes ';'-separated file:// URLs.
    config.set("pipeline.jars", ";".join("file://" + j for j in common.jars("flink")))
    config.set("parallelism.default", str(args.parallelism))
    config.set("io.tmp.dirs", tmp)
    return t_env


def create_tables(t_env, args, bounded):
    options = {
        "connector": "kafka",
        "topic": args.topic,
        "properties.bootstrap.servers": args.bootstrap,
        "properties.group.id": "weir-peers-flink",
        "scan.startup.mode": "earliest-offset",
        "format": "json",
        # Parses "2024-01-01T00:00:00.000Z" into TIMESTAMP_LTZ(3).
        "json.timestamp-format.standard": "ISO-8601",
    }
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    t_env.execute_sql(f"CREATE TABLE t ({COLUMNS[args.workload]}) WITH ({with_clause(options)})")
    if args.workload == "W6":
        sink = {
            "connector": "kafka",
            "topic": args.out_topic,
            "properties.bootstrap.servers": args.bootstrap,
            "format": "json",
        }
    else:
        sink = {"connector": "blackhole"}
    t_env.execute_sql(f"CREATE TABLE sink_t ({SINK_COLUMNS[args.workload]}) WITH ({with_clause(sink)})")


def with_clause(options):
    return ", ".join(f"'{k}' = '{v}'" for k, v in options.items())


def throughput(args):
    expected = common.prepare_throughput(args)
    watch = common.Stopwatch()
    t_env = environment(args)
    create_tables(t_env, args, bounded=True)
    watch.start_query()
    t_env.execute_sql(f"INSERT INTO sink_t {select(args.workload)}").wait()
    # The bounded source stops at the end offsets it found at start: all `expected` records.
    result = watch.result(expected)
    if args.workload == "W6":
        result["out_records"] = common.topic_records(args.bootstrap, args.out_topic)
    common.emit(
        {
            "peer": "flink",
            "version": flink_version(),
            "workload": args.workload,
            "topic": args.topic,
            "parallelism": args.parallelism,
            **result,
        }
    )


def check(args):
    t_env = environment(args, batch=True)
    create_tables(t_env, args, bounded=True)

    def count(sql):
        with t_env.execute_sql(f"SELECT COUNT(*) FROM ({sql})").collect() as rows:
            return list(rows)[-1][0]

    common.emit(
        {
            "peer": "flink",
            "check": args.workload,
            "topic_records": common.topic_records(args.bootstrap, args.topic),
            "input_rows": count("SELECT * FROM t"),
            "output_rows": count(select(args.workload)),
        }
    )


def continuous(args):
    t_env = environment(args)
    create_tables(t_env, args, bounded=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    job = t_env.execute_sql(f"INSERT INTO sink_t {select(args.workload)}").get_job_client()
    print("READY", flush=True)
    while not stop.wait(1.0):
        status = job.get_job_status().result().name
        if status not in ("RUNNING", "CREATED", "INITIALIZING"):
            raise SystemExit(f"the job is {status}")
    job.cancel().result()


def flink_version():
    from pyflink.version import __version__

    return __version__


def main():
    ap = common.peer_arguments(__doc__, COLUMNS, "flink")
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="count input and output rows (batch mode)")
    args = ap.parse_args()
    common.run_mode(ap, args, continuous, throughput, check)
    common.exit_ending_jvms()


if __name__ == "__main__":
    main()
