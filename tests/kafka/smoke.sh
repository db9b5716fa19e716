#!/usr/bin/env bash
# Checks a broker started by start.sh with Kafka's own Java tools: one record produced on
# PLAINTEXT is read back through SASL_PLAINTEXT and SASL_SSL with PLAIN, SCRAM-SHA-256 and
# SCRAM-SHA-512, and a wrong password is refused. Takes about 20 s (one JVM per check).
#
#   eval "$(bash tests/kafka/start.sh)" && bash tests/kafka/smoke.sh
set -euo pipefail

: "${WEIR_TEST_KAFKA:?run: eval \"\$(bash tests/kafka/start.sh)\"}"
STATE="${WEIR_KAFKA_DIR:-$HOME/.cache/weir/kafka-run}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TOPIC="smoke-$$-$RANDOM"

kafka_tool() {
  java -Xmx256m "-Dlog4j2.configurationFile=$STATE/tools-log4j2.properties" \
    -cp "$WEIR_TEST_KAFKA_LIBS/*" "$@"
}

# client_config PROTOCOL MECHANISM PASSWORD: a client properties file for user alice.
client_config() {
  local file="$WORK/$1-$2-$3.properties" module=scram.ScramLoginModule
  [ "$2" = PLAIN ] && module=plain.PlainLoginModule
  cat >"$file" <<EOF
security.protocol=$1
sasl.mechanism=$2
sasl.jaas.config=org.apache.kafka.common.security.$module required username="alice" password="$3";
ssl.truststore.type=PEM
ssl.truststore.location=$WEIR_TEST_KAFKA_CA
EOF
  echo "$file"
}

# consume BOOTSTRAP CONFIG: prints the first record of the topic.
consume() {
  kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$1" \
    --command-config "$2" --topic "$TOPIC" --from-beginning --max-messages 1 --timeout-ms 20000
}

main() {
  local failed=0 passed=0 protocol bootstrap mechanism
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$WEIR_TEST_KAFKA" \
    --create --topic "$TOPIC" --partitions 1 >/dev/null
  echo hello | kafka_tool org.apache.kafka.tools.ConsoleProducer \
    --bootstrap-server "$WEIR_TEST_KAFKA" --topic "$TOPIC"
  for protocol in SASL_PLAINTEXT SASL_SSL; do
    bootstrap=$WEIR_TEST_KAFKA_SASL
    [ "$protocol" = SASL_SSL ] && bootstrap=$WEIR_TEST_KAFKA_SASL_SSL
    for mechanism in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
      if [ "$(consume "$bootstrap" "$(client_config "$protocol" "$mechanism" alice-secret)" 2>/dev/null)" = hello ]; then
        echo "ok    $protocol $mechanism"; passed=$((passed + 1))
      else
        echo "FAIL  $protocol $mechanism"; failed=$((failed + 1))
      fi
    done
  done
  if consume "$WEIR_TEST_KAFKA_SASL_SSL" "$(client_config SASL_SSL SCRAM-SHA-512 wrong)" 2>&1 |
    grep -q SaslAuthenticationException; then
    echo "ok    wrong password refused"; passed=$((passed + 1))
  else
    echo "FAIL  wrong password not refused"; failed=$((failed + 1))
  fi
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$WEIR_TEST_KAFKA" \
    --delete --topic "$TOPIC"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

main "$@"
