"""Spark Structured Streaming (pyspark, local mode) on the benchmark workloads.

Throughput (one JSON line on stdout): the pre-loaded topic from earliest, trigger availableNow,
stops by itself when everything up to the end offsets at start has been read:

    python spark_peer.py --workload W2|W3|W3k|W6 [--topic peers_json] [--check]

--check writes into a memory sink instead of noop and adds its row count (output_rows).

Latency (W6, for latency.py): the same Kafka -> Kafka query with the default trigger (a new
micro-batch as soon as the previous one ends), running until SIGTERM; prints READY when started:

    python spark_peer.py --workload W6 --continuous --topic IN --out-topic OUT

Queries (benches/kafka.rs's, in Spark's dialect):
    W2   SELECT id, name FROM t WHERE v % 10 = 0                                  -> noop sink
    W3   10 s tumbling window on ts (watermark ts - 1 s), count(*), sum(id), max(v)
         GROUP BY window, CAST(v AS STRING) (100 keys), append mode            -> noop sink
    W3k  W3 grouped by name (100 000 keys)
    W6   SELECT id, name, v, sent FROM t, as JSON                              -> Kafka topic
"""

import os
import signal
import tempfile
import threading

import common

SCHEMAS = {
    "W2": "id BIGINT, name STRING, v BIGINT, city STRING",
    "W3": "id BIGINT, name STRING, v BIGINT, ts TIMESTAMP",
    "W3k": "id BIGINT, name STRING, v BIGINT, ts TIMESTAMP",
    "W6": "id BIGINT, name STRING, v BIGINT, sent BIGINT",
}


def session(args):
    from pyspark.sql import SparkSession

    # Keep the driver on loopback (Spark otherwise binds the first non-loopback interface).
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    tmp = common.scratch_dir()
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .appName(f"weir-peer-{args.workload}")
        # Local jars (setup.sh); spark.jars.packages would need Ivy at run time.
        .config("spark.jars", ",".join(common.jars("spark")))
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp}")
        .config("spark.local.dir", tmp)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        .config("spark.sql.streaming.numRecentProgressUpdates", "100000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def source(spark, args, bounded):
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("subscribe", args.topic)
        .option("startingOffsets", "earliest")
    )
    if args.max_offsets_per_trigger and bounded:
        reader = reader.option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
    parsed = reader.load().selectExpr(
        f"from_json(CAST(value AS STRING), '{SCHEMAS[args.workload]}') AS j"
    ).selectExpr("j.*")
    if args.workload in ("W3", "W3k"):
        parsed = parsed.withWatermark("ts", "1 second")
    parsed.createOrReplaceTempView("t")


def query(spark, args):
    if args.workload == "W2":
        return spark.sql("SELECT id, name FROM t WHERE v % 10 = 0"), "noop"
    if args.workload in ("W3", "W3k"):
        key = "CAST(v AS STRING)" if args.workload == "W3" else "name"
        df = spark.sql(
            f"""SELECT window.end AS window_end, k, count(*) AS n, sum(id) AS total, max(v) AS top
                FROM (SELECT *, {key} AS k FROM t)
                GROUP BY window(ts, '10 seconds'), k"""
        )
        return df, "noop"
    return spark.sql(
        "SELECT to_json(named_struct('id', id, 'name', name, 'v', v, 'sent', sent)) AS value FROM t"
    ), "kafka"


def start(spark, args, checkpoint, bounded):
    df, sink = query(spark, args)
    if args.check and sink == "noop":
        sink = "memory"
    writer = df.writeStream.format(sink).outputMode("append").option("checkpointLocation", checkpoint)
    if sink == "kafka":
        writer = writer.option("kafka.bootstrap.servers", args.bootstrap).option("topic", args.out_topic)
    if sink == "memory":
        writer = writer.queryName("check_out")
    if bounded:
        writer = writer.trigger(availableNow=True)
    return writer.start()


def throughput(args):
    expected = common.prepare_throughput(args)
    watch = common.Stopwatch()
    spark = session(args)
    with tempfile.TemporaryDirectory(dir=common.scratch_dir()) as tmp:
        source(spark, args, bounded=True)
        watch.start_query()
        q = start(spark, args, os.path.join(tmp, "cp"), bounded=True)
        q.awaitTermination()
        records = sum(p["numInputRows"] for p in q.recentProgress)
        result = watch.result(records)
        batches = len(q.recentProgress)
        if args.check and args.workload != "W6":
            result["output_rows"] = spark.sql("SELECT count(*) FROM check_out").first()[0]
        spark.stop()
    assert records == expected, f"read {records} records, the topic holds {expected}"
    if args.workload == "W6":
        result["out_records"] = common.topic_records(args.bootstrap, args.out_topic)
    common.emit(
        {
            "peer": "spark",
            "version": spark_version(),
            "workload": args.workload,
            "topic": args.topic,
            "cores": args.cores,
            "batches": batches,
            "max_offsets_per_trigger": args.max_offsets_per_trigger,
            **result,
        }
    )


def continuous(args):
    spark = session(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(dir=common.scratch_dir()) as tmp:
        source(spark, args, bounded=False)
        q = start(spark, args, os.path.join(tmp, "cp"), bounded=False)
        print("READY", flush=True)
        while not stop.wait(1.0):
            if not q.isActive:
                raise SystemExit(f"the query stopped: {q.exception()}")
        progress = q.recentProgress
        q.stop()
        spark.stop()
    batches = [p for p in progress if p["numInputRows"]]
    common.log(
        f"spark W6: {len(progress)} batches, {len(batches)} with input, "
        f"median batch {median([p['durationMs']['triggerExecution'] for p in batches])} ms"
    )


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def spark_version():
    import pyspark

    return pyspark.__version__


def main():
    ap = common.peer_arguments(__doc__, SCHEMAS, "spark")
    ap.add_argument("--check", action="store_true", help="memory sink instead of noop; count its rows")
    ap.add_argument("--cores", type=int, default=2, help="local[N]")
    ap.add_argument("--shuffle-partitions", type=int, default=2)
    ap.add_argument("--driver-memory", default="2g")
    common.max_offsets_argument(ap)
    args = ap.parse_args()
    common.default_max_offsets(args)
    common.run_mode(ap, args, continuous, throughput)
    common.exit_ending_jvms()


if __name__ == "__main__":
    main()
