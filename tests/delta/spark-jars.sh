#!/usr/bin/env bash
# Copies Delta Lake's Spark connector (delta-spark, delta-storage) from Maven Central into
# target/delta-spark-jars and prints `WEIR_TEST_DELTA_SPARK_JARS=<comma-separated jars>` for
# `eval`. The Spark reader test needs pyspark 4.0.x beside it (python3 -m pip install
# pyspark==4.0.1); Spark's own jars come with pyspark.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/delta-spark-jars
mkdir -p "$out"
mvn -q -B -f tests/delta/pom.xml dependency:copy-dependencies \
  -DincludeArtifactIds=delta-spark_2.13,delta-storage -DoutputDirectory="$PWD/$out" >&2
jars=$(ls "$PWD/$out"/*.jar | paste -sd, -)
echo "WEIR_TEST_DELTA_SPARK_JARS=$jars"
