#!/usr/bin/env bash
# Makes the peers runnable offline: one venv per peer (pyspark and apache-flink pin different
# py4j versions) and the Kafka connector jars fetched through Maven, all under
# $WEIR_PEERS_CACHE (default ~/.cache/weir/peers). Idempotent: a step already done is skipped.
#
#   bash benches/peers/setup.sh [spark|flink|all]      (default: all)
#
# Afterwards:
#   ~/.cache/weir/peers/spark/venv/bin/python   pyspark + confluent-kafka
#   ~/.cache/weir/peers/spark/jars/*.jar        spark-sql-kafka and what it needs beside pyspark
#   ~/.cache/weir/peers/flink/venv/bin/python   apache-flink + confluent-kafka
#   ~/.cache/weir/peers/flink/jars/*.jar        flink-sql-connector-kafka (shaded)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${WEIR_PEERS_CACHE:-$HOME/.cache/weir/peers}"
PYTHON="${PYTHON:-python3}"

# Exact versions; keep the poms in step (spark/pom.xml, flink/pom.xml).
PYSPARK_VERSION=4.1.1      # spark-sql-kafka-0-10_2.13:4.1.1 (4.1.4 is on PyPI, not on Maven Central)
APACHE_FLINK_VERSION=2.2.1 # flink-sql-connector-kafka:5.0.0-2.2
CONFLUENT_KAFKA_VERSION=2.16.1
PSUTIL_VERSION=7.2.2

log() { printf '[peers] %s\n' "$*" >&2; }

# make_venv DIR PACKAGE...: a venv with exactly these pins, redone when the pins change.
make_venv() {
  local dir="$1"
  shift
  local want="$*"
  if [ "$(cat "$dir/.complete" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "creating $dir with: $want"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --upgrade pip
  "$dir/bin/pip" install --quiet "$@"
  echo "$want" >"$dir/.complete"
}

# fetch_jars POM OUT [maven args...]: copy-dependencies once per pom content.
fetch_jars() {
  local pom="$1" out="$2"
  shift 2
  local hash
  hash="$(cat "$pom" | sha256sum)"
  if [ "$(cat "$out/.complete" 2>/dev/null)" = "$hash" ]; then
    return
  fi
  log "fetching jars of $pom into $out"
  rm -rf "$out"
  mkdir -p "$out"
  if ! mvn -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$out" "$@" >"$out/.mvn.log" 2>&1; then
    tail -n 30 "$out/.mvn.log" >&2
    log "mvn failed (full output: $out/.mvn.log)"
    exit 1
  fi
  echo "$hash" >"$out/.complete"
}

setup_spark() {
  make_venv "$CACHE/spark/venv" "pyspark==$PYSPARK_VERSION" \
    "confluent-kafka==$CONFLUENT_KAFKA_VERSION" "psutil==$PSUTIL_VERSION"
  # pyspark's jars/ already holds Scala, lz4, snappy, slf4j, zstd-jni and hadoop-client-*;
  # only the connector, its token provider, kafka-clients and commons-pool2 are missing.
  fetch_jars "$HERE/spark/pom.xml" "$CACHE/spark/jars" \
    -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2
  log "spark ready: $(ls "$CACHE/spark/jars" | tr '\n' ' ')"
}

setup_flink() {
  make_venv "$CACHE/flink/venv" "apache-flink==$APACHE_FLINK_VERSION" \
    "confluent-kafka==$CONFLUENT_KAFKA_VERSION" "psutil==$PSUTIL_VERSION"
  fetch_jars "$HERE/flink/pom.xml" "$CACHE/flink/jars"
  log "flink ready: $(ls "$CACHE/flink/jars" | tr '\n' ' ')"
}

case "${1:-all}" in
spark) setup_spark ;;
flink) setup_flink ;;
all)
  setup_spark
  setup_flink
  ;;
*)
  echo "usage: $0 [spark|flink|all]" >&2
  exit 2
  ;;
esac
