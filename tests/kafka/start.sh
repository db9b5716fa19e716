#!/usr/bin/env bash
# Starts (or reuses) a single-node Apache Kafka broker for the tests, from jars fetched
# from Maven Central. Progress goes to stderr; stdout carries only `export` lines:
#
#   eval "$(bash tests/kafka/start.sh)"
#
# Environment (all optional):
#   WEIR_KAFKA_DIR        state dir: data, logs, certs, config, pid   (~/.cache/weir/kafka-run)
#   WEIR_KAFKA_LIBS       jars dir                                    (~/.cache/weir/kafka-<v>/libs)
#   WEIR_KAFKA_PORT_BASE  PLAINTEXT port; CONTROLLER, SASL_PLAINTEXT and SASL_SSL use the
#                         next three                                  (39092)
#   WEIR_KAFKA_START_TIMEOUT  seconds to wait for the broker          (90)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
LIBS="${WEIR_KAFKA_LIBS:-$HOME/.cache/weir/kafka-$KAFKA_VERSION/libs}"
STATE="${WEIR_KAFKA_DIR:-$HOME/.cache/weir/kafka-run}"
PORT_BASE="${WEIR_KAFKA_PORT_BASE:-39092}"
START_TIMEOUT="${WEIR_KAFKA_START_TIMEOUT:-90}"

PLAINTEXT_PORT=$PORT_BASE
CONTROLLER_PORT=$((PORT_BASE + 1))
SASL_PORT=$((PORT_BASE + 2))
SASL_SSL_PORT=$((PORT_BASE + 3))

DATA="$STATE/data"
CERTS="$STATE/certs"
CONFIG="$STATE/server.properties"
LOG4J_CONFIG="$STATE/log4j2.properties"
TOOLS_LOG4J_CONFIG="$STATE/tools-log4j2.properties"
LOG="$STATE/broker.log"
PID_FILE="$STATE/broker.pid"
STORE_PASSWORD=changeit # test-only keystore/truststore password
# A fixed cluster id: any base64 16-byte Kafka Uuid will do.
CLUSTER_ID=d2Vpci10ZXN0LWthZmthMQ

log() { printf '[kafka] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The jars are fetched once per pom.xml content (its hash is kept in .complete).
fetch_jars() {
  local pom_hash
  pom_hash="$(sha256sum <"$HERE/pom.xml")"
  [ "$(cat "$LIBS/.complete" 2>/dev/null)" = "$pom_hash" ] && return
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  command -v mvn >/dev/null || die "mvn is not installed (apt-get install maven)"
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  if ! mvn -B -f "$HERE/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$LIBS/.mvn.log" 2>&1; then
    tail -n 40 "$LIBS/.mvn.log" >&2
    die "mvn could not fetch the jars (full output: $LIBS/.mvn.log)"
  fi
  echo "$pom_hash" >"$LIBS/.complete"
}

# A self-signed certificate for 127.0.0.1/localhost. The broker uses broker.p12; Java
# clients trust truststore.p12; librdkafka trusts ca.pem (ssl.ca.location).
make_certs() {
  [ -f "$CERTS/ca.pem" ] && [ -f "$CERTS/truststore.p12" ] && return
  log "creating a self-signed certificate in $CERTS"
  rm -rf "$CERTS"
  mkdir -p "$CERTS"
  keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -dname CN=localhost -ext SAN=DNS:localhost,IP:127.0.0.1 \
    -storetype PKCS12 -keystore "$CERTS/broker.p12" \
    -storepass "$STORE_PASSWORD" -keypass "$STORE_PASSWORD" 2>/dev/null
  keytool -exportcert -rfc -alias broker -keystore "$CERTS/broker.p12" \
    -storepass "$STORE_PASSWORD" -file "$CERTS/ca.pem" 2>/dev/null
  keytool -importcert -noprompt -alias broker -file "$CERTS/ca.pem" \
    -storetype PKCS12 -keystore "$CERTS/truststore.p12" -storepass "$STORE_PASSWORD" 2>/dev/null
}

sasl_listener_config() {
  local name=$1
  cat <<EOF
listener.name.$name.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret" user_alice="alice-secret";
listener.name.$name.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.$name.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
}

write_config() {
  mkdir -p "$STATE"
  cat >"$CONFIG" <<EOF
# Written by tests/kafka/start.sh: a single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=PLAINTEXT://127.0.0.1:$PLAINTEXT_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PLAINTEXT_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$DATA

sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
$(sasl_listener_config sasl_plaintext)
$(sasl_listener_config sasl_ssl)
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$CERTS/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$STORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$STORE_PASSWORD

# One node: internal topics with replication 1 and one partition each.
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Small and fast for a 2-core test machine.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.backoff.ms=100
log.retention.check.interval.ms=1000
log.initial.task.delay.ms=0
log.message.timestamp.after.max.ms=9223372036854775807
group.initial.rebalance.delay.ms=0
EOF
  # The broker logs INFO to its stdout (broker.log); Java tools log WARN to stderr.
  log4j_config INFO SYSTEM_OUT >"$LOG4J_CONFIG"
  log4j_config WARN SYSTEM_ERR >"$TOOLS_LOG4J_CONFIG"
}

log4j_config() {
  cat <<EOF
status = warn
appender.console.type = Console
appender.console.name = CONSOLE
appender.console.target = $2
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $1
rootLogger.appenderRef.console.ref = CONSOLE
EOF
}

broker_java_opts() {
  printf '%s\n' -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG"
}

# SCRAM users are stored in the metadata log, so they are added when formatting.
format_storage() {
  [ -f "$DATA/meta.properties" ] && return
  log "formatting $DATA"
  if ! java "-Dlog4j2.configurationFile=$TOOLS_LOG4J_CONFIG" -cp "$LIBS/*" \
    kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$CONFIG" \
    --add-scram 'SCRAM-SHA-256=[name=alice,password=alice-secret]' \
    --add-scram 'SCRAM-SHA-512=[name=alice,password=alice-secret]' \
    --add-scram 'SCRAM-SHA-256=[name=admin,password=admin-secret]' \
    --add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]' \
    >"$STATE/format.log" 2>&1; then
    cat "$STATE/format.log" >&2
    die "formatting $DATA failed"
  fi
}

broker_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE")"
  ps -p "$pid" -o args= 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

# Sends an ApiVersions v0 request (client id "probe") to the PLAINTEXT listener and checks
# that a response with the same correlation id comes back: the broker handles requests.
broker_answers() {
  # shellcheck disable=SC2016 # $1 expands in the inner shell
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x05probe" >&3
    head -c 8 <&3 | od -An -tx1 | tr -d " \n"
  ' _ "$PLAINTEXT_PORT" 2>/dev/null | grep -q '^........0000002a$'
}

start_broker() {
  local opts
  mapfile -t opts < <(broker_java_opts)
  [ -f "$LOG" ] && mv "$LOG" "$LOG.prev"
  log "starting the broker (log: $LOG)"
  setsid java "${opts[@]}" -cp "$LIBS/*" kafka.Kafka "$CONFIG" \
    </dev/null >"$LOG" 2>&1 9>&- &
  echo $! >"$PID_FILE"
}

wait_until_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  until grep -q 'Kafka Server started' "$LOG" 2>/dev/null && broker_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$LOG" >&2 || true
      die "the broker exited during startup"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$LOG" >&2 || true
      die "the broker did not answer within ${START_TIMEOUT}s (pid $pid still running; stop it with tests/kafka/stop.sh)"
    fi
    sleep 0.5
  done
}

print_exports() {
  printf 'export %s=%q\n' \
    WEIR_TEST_KAFKA "127.0.0.1:$PLAINTEXT_PORT" \
    WEIR_TEST_KAFKA_SASL "127.0.0.1:$SASL_PORT" \
    WEIR_TEST_KAFKA_SASL_SSL "127.0.0.1:$SASL_SSL_PORT" \
    WEIR_TEST_KAFKA_CA "$CERTS/ca.pem" \
    WEIR_TEST_KAFKA_LIBS "$LIBS"
}

main() {
  local pid
  # One start at a time per state dir (fd 9 is closed for the broker itself).
  mkdir -p "$STATE"
  exec 9>"$STATE/start.lock"
  flock -w "$((START_TIMEOUT + 60))" 9 || die "another start.sh holds $STATE/start.lock"
  if pid="$(broker_pid)"; then
    if broker_answers; then
      log "broker already running (pid $pid)"
      print_exports
      return
    fi
    log "broker pid $pid is still starting; waiting"
  else
    command -v java >/dev/null || die "java is not installed (Kafka needs Java 17+)"
    fetch_jars
    make_certs
    write_config
    # A stopped broker's topics belong to earlier runs; a fresh cluster starts in seconds,
    # where thousands of old partitions take minutes to load.
    rm -rf "$DATA"
    format_storage
    start_broker
    pid="$(cat "$PID_FILE")"
  fi
  wait_until_ready "$pid"
  log "broker ready (pid $pid) after ${SECONDS}s"
  print_exports
}

main "$@"
