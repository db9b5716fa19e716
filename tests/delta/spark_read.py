"""Reads a Delta table with Apache Spark and Delta Lake's own Spark connector (delta-spark,
the reference implementation of the protocol), and prints what it sees as one JSON object:
{"version", "columns", "rows" (lists, in the columns' order), "partitions"}.

usage: spark_read.py TABLE_PATH   (WEIR_TEST_DELTA_SPARK_JARS: the connector's jars)
"""

import json
import os
import sys

from pyspark.sql import SparkSession


def session():
    return (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", os.environ["WEIR_TEST_DELTA_SPARK_JARS"])
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def main():
    path = sys.argv[1]
    spark = session()
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.read.format("delta").load(path)
    columns = frame.columns
    rows = [[row[c] for c in columns] for row in frame.collect()]
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]
    latest = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").collect()[0]
    out = {
        "version": latest["version"],
        "columns": columns,
        "rows": rows,
        "partitions": list(detail["partitionColumns"]),
    }
    print(json.dumps(out, default=str))
    spark.stop()


if __name__ == "__main__":
    main()
