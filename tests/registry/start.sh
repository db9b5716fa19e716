#!/usr/bin/env bash
# Start Confluent-compatible schema registries (Apicurio Registry, in-memory H2) on loopback
# for the test suite, fetching them from Maven Central on first use.
#
#   eval "$(bash tests/registry/start.sh)"
#
# stdout carries only `export ...` lines; progress goes to stderr. Safe to run again: an
# instance that already answers on its port is left alone. See tests/registry/README.md.
#
# Environment (all optional):
#   WEIR_REGISTRY_PORT          port of the open registry              (38081)
#   WEIR_REGISTRY_VERSION       its Apicurio version                   (2.6.13.Final)
#   WEIR_REGISTRY_AUTH          1: also start the basic-auth registry  (1)
#   WEIR_REGISTRY_AUTH_PORT     its port                               (38082)
#   WEIR_REGISTRY_AUTH_VERSION  its Apicurio version (3.x: 2.x has no basic auth
#                               without an OIDC server)                (3.3.3)
#   WEIR_REGISTRY_USER_INFO     user:pass it accepts                   (weir:weir-secret)
#   WEIR_REGISTRY_CACHE         download and run folder                ($HOME/.cache/weir/registry)
#   WEIR_REGISTRY_JAVA          java binary to use (else the newest suitable one found)
#   WEIR_REGISTRY_TIMEOUT       seconds to wait for a start            (180)
set -euo pipefail

PORT="${WEIR_REGISTRY_PORT:-38081}"
VERSION="${WEIR_REGISTRY_VERSION:-2.6.13.Final}"
AUTH="${WEIR_REGISTRY_AUTH:-1}"
AUTH_PORT="${WEIR_REGISTRY_AUTH_PORT:-38082}"
AUTH_VERSION="${WEIR_REGISTRY_AUTH_VERSION:-3.3.3}"
USER_INFO="${WEIR_REGISTRY_USER_INFO:-weir:weir-secret}"
CACHE="${WEIR_REGISTRY_CACHE:-$HOME/.cache/weir/registry}"
TIMEOUT="${WEIR_REGISTRY_TIMEOUT:-180}"
API=/apis/ccompat/v7

log() { echo "registry: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$CACHE/run"
command -v curl >/dev/null || die "curl is needed (apt-get install -y curl)"

# HTTP status of GET /subjects on a port (000 when nothing answers).
status_of() {
    curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$1$API/subjects" 2>/dev/null || true
}

major_of() { echo "${1%%.*}"; }

# Java feature version of a java binary, read from its home's `release` file.
java_major() {
    local home rel v
    home="$(dirname "$(dirname "$(readlink -f "$1")")")"
    rel="$home/release"
    [ -f "$rel" ] || { echo 0; return; }
    v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$rel")"
    echo "${v:-0}"
}

# The oldest java binary of at least the given feature version (the one nearest to what that
# Apicurio line was built and tested with).
pick_java() {
    local need="$1" best="" best_v=999 c v
    if [ -n "${WEIR_REGISTRY_JAVA:-}" ]; then
        echo "$WEIR_REGISTRY_JAVA"
        return
    fi
    for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        v="$(java_major "$c")"
        if [ "$v" -ge "$need" ] && [ "$v" -lt "$best_v" ]; then
            best="$c"
            best_v="$v"
        fi
    done
    [ -n "$best" ] || return 1
    echo "$best"
}

# Unpacked Apicurio distribution folder of a version, fetched through Maven if missing.
fetch() {
    local v="$1" dir="$CACHE/apicurio-registry-app-$v"
    local rel="io/apicurio/apicurio-registry-app/$v/apicurio-registry-app-$v-all.tar.gz"
    if [ -f "$dir/.complete" ]; then
        echo "$dir"
        return
    fi
    local tgz=""
    if [ -f "$HOME/.m2/repository/$rel" ]; then
        tgz="$HOME/.m2/repository/$rel"
        log "using $tgz"
    else
        command -v mvn >/dev/null || die "mvn is needed to fetch Apicurio $v (apt-get install -y maven)"
        log "fetching io.apicurio:apicurio-registry-app:$v:tar.gz:all from Maven Central (~150 MB)"
        mvn -q -B -Dstyle.color=never dependency:get -Dmaven.repo.local="$CACHE/m2" -Dtransitive=false \
            -Dartifact="io.apicurio:apicurio-registry-app:$v:tar.gz:all" 2>&1 \
            | sed 's/\x1b\[[0-9;]*m//g' >&2 \
            || die "mvn could not fetch Apicurio $v"
        tgz="$CACHE/m2/$rel"
    fi
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    tar -xzf "$tgz" -C "$dir.tmp"
    touch "$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    # The unpacked tree is what runs; drop the downloaded archive (it is fetched again only if
    # the unpacked tree goes).
    case "$tgz" in "$CACHE"/*) rm -f "$tgz" ;; esac
    echo "$dir"
}

# Start one instance in the background; returns at once. Args: port version auth(0|1)
launch() {
    local port="$1" v="$2" auth="$3"
    local major need java dir jar
    major="$(major_of "$v")"
    if [ "$major" -ge 3 ]; then need=21; else need=17; fi
    java="$(pick_java "$need")" || die "Apicurio $v needs Java $need or newer; none found under /usr/lib/jvm or JAVA_HOME"
    dir="$(fetch "$v")"
    if [ -f "$dir/quarkus-run.jar" ]; then
        jar="$dir/quarkus-run.jar"                  # 3.x: Quarkus fast-jar layout
    else
        jar="$(ls "$dir"/*-runner.jar 2>/dev/null | head -n1)"   # 2.x: runner jar + lib/
    fi
    [ -n "$jar" ] && [ -f "$jar" ] || die "no runnable jar in $dir"

    local props=(
        -Dquarkus.http.host=127.0.0.1
        -Dquarkus.http.port="$port"
        # 3.x opens a management interface (health, metrics) on 0.0.0.0:9000 by default.
        -Dquarkus.management.host=127.0.0.1
        -Dquarkus.management.port="$((port + 10))"
        # One line per request in the log: which endpoints the clients called.
        -Dquarkus.http.access-log.enabled=true
        "-Dquarkus.http.access-log.pattern=%r -> %s"
        -Dquarkus.log.console.json=false
        -Dapicurio.storage.snapshot.location="$CACHE/run"
    )
    if [ "$auth" = 1 ]; then
        [ "$major" -ge 3 ] || die "basic auth needs Apicurio 3.x (WEIR_REGISTRY_AUTH_VERSION=$v)"
        local user="${USER_INFO%%:*}" pass="${USER_INFO#*:}"
        props+=(
            -Dquarkus.http.auth.basic=true
            -Dapicurio.authn.mechanism.priority=basic
            -Dquarkus.security.users.embedded.enabled=true
            -Dquarkus.security.users.embedded.plain-text=true
            "-Dquarkus.security.users.embedded.users.$user=$pass"
            "-Dquarkus.security.users.embedded.roles.$user=sr-admin"
        )
    fi
    local logf="$CACHE/run/registry-$port.log"
    log "starting Apicurio $v on 127.0.0.1:$port (java $(java_major "$java"): $java), log $logf"
    # C1 only and the serial GC: about half the start time of the defaults on 2 cores.
    (
        cd "$CACHE/run"
        exec setsid "$java" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx384m \
            "${props[@]}" -jar "$jar" </dev/null >"$logf" 2>&1
    ) &
    echo $! >"$CACHE/run/registry-$port.pid"
    date +%s >"$CACHE/run/registry-$port.started"
}

# Wait until an instance answers (200 open, 401 with auth). Args: port auth(0|1)
await() {
    local port="$1" auth="$2" want=200 pid t0 s
    [ "$auth" = 1 ] && want=401
    pid="$(cat "$CACHE/run/registry-$port.pid")"
    t0="$(date +%s)"
    while :; do
        s="$(status_of "$port")"
        [ "$s" = "$want" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$CACHE/run/registry-$port.log" >&2 || true
            die "the registry on port $port exited during start (log above)"
        fi
        if [ $(($(date +%s) - t0)) -ge "$TIMEOUT" ]; then
            tail -n 30 "$CACHE/run/registry-$port.log" >&2 || true
            die "the registry on port $port did not answer within ${TIMEOUT}s (pid $pid still running)"
        fi
        sleep 0.25
    done
    log "port $port answers (HTTP $s) after $(($(date +%s) - $(cat "$CACHE/run/registry-$port.started")))s"
    # Confluent's default compatibility is BACKWARD; Apicurio's is none.
    local cred=()
    [ "$auth" = 1 ] && cred=(-u "$USER_INFO")
    curl -sf -m 10 "${cred[@]}" -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
        -d '{"compatibility":"BACKWARD"}' "http://127.0.0.1:$port$API/config" >/dev/null \
        || log "warning: could not set the global compatibility to BACKWARD on port $port"
}

# Decide per instance: already up, start it, or refuse (port taken by something else).
plan() {
    local port="$1" auth="$2" want=200 s
    [ "$auth" = 1 ] && want=401
    s="$(status_of "$port")"
    if [ "$s" = "$want" ]; then
        log "port $port already answers as a registry (HTTP $s); leaving it"
        return 1
    fi
    if [ "$s" != 000 ]; then
        die "port $port answers HTTP $s on $API/subjects, not $want: something else is there (or a registry with other auth settings)"
    fi
    return 0
}

started=()
if plan "$PORT" 0; then
    launch "$PORT" "$VERSION" 0
    started+=("$PORT:0")
fi
if [ "$AUTH" = 1 ] && plan "$AUTH_PORT" 1; then
    launch "$AUTH_PORT" "$AUTH_VERSION" 1
    started+=("$AUTH_PORT:1")
fi
for s in "${started[@]}"; do
    await "${s%%:*}" "${s##*:}"
done

echo "export WEIR_TEST_SCHEMA_REGISTRY=http://127.0.0.1:$PORT$API"
if [ "$AUTH" = 1 ]; then
    echo "export WEIR_TEST_SCHEMA_REGISTRY_AUTH=http://127.0.0.1:$AUTH_PORT$API"
    echo "export WEIR_TEST_SCHEMA_REGISTRY_USER_INFO=$USER_INFO"
fi
