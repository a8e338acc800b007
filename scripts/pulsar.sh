#!/usr/bin/env bash
# A real Apache Pulsar standalone broker on 127.0.0.1, for the distributed backend's tests.
#
#   scripts/pulsar.sh install   fetch the broker's jars from Maven Central (cached in ~/.m2)
#   scripts/pulsar.sh start     install if needed, start, wait until it serves (one retry)
#   scripts/pulsar.sh stop      stop the broker started here, by its process id
#   scripts/pulsar.sh restart   kill it (SIGKILL) and start it again on the same data
#   scripts/pulsar.sh status    say whether it serves
#   scripts/pulsar.sh token     print the path of the file holding the clients' token
#
# Ports: PULSAR_PORT (default 16650, the binary protocol), PULSAR_TLS_PORT (default 16651, the
# binary protocol over TLS), PULSAR_WEB_PORT (default 18080, the admin API) and
# PULSAR_BOOKIE_PORT (default 13181, its storage), all on 127.0.0.1. State lives in PULSAR_DIR
# (default target/services/pulsar) and is wiped at each start; the broker's jars in PULSAR_LIB
# (default PULSAR_DIR/lib), so that several brokers can share one copy. Needs Java 17 or later
# and Maven.
#
# As a managed service is, the broker takes clients only with a token (a JWT signed with a
# secret key made at each start, for the role `codegen`, in PULSAR_DIR/conf/token), on both
# ports and on the admin API; the TLS port presents a certificate from scripts/certs.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${PULSAR_DIR:-$root/target/services/pulsar}"
port="${PULSAR_PORT:-16650}"
web_port="${PULSAR_WEB_PORT:-18080}"
bookie_port="${PULSAR_BOOKIE_PORT:-13181}"
tls_port="${PULSAR_TLS_PORT:-16651}"
timeout_s="${PULSAR_START_TIMEOUT:-120}"
tls_dir="${TLS_DIR:-$root/target/services/tls}"
lib="${PULSAR_LIB:-$dir/lib}"
pidfile="$dir/pulsar.pid"
log="$dir/pulsar.log"

install() {
    command -v java >/dev/null || { echo "error: java is missing: apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }
    command -v mvn >/dev/null || { echo "error: mvn is missing: apt-get install -y maven" >&2; exit 1; }
    if [ -f "$lib/.complete" ]; then return; fi
    mkdir -p "$dir"
    echo "pulsar: fetching the broker's jars into $lib (cached in ~/.m2)"
    rm -rf "$lib"
    mvn -B -q -s "$root/scripts/maven-settings.xml" -f "$root/scripts/pulsar/pom.xml" \
        dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime
    touch "$lib/.complete"
}

# base64url without padding, as JWTs are written.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# A secret key and an HS256 token for the role `codegen`, which the broker checks.
write_token() {
    command -v openssl >/dev/null || { echo "error: openssl is missing: apt-get install -y openssl" >&2; exit 1; }
    (
        umask 077
        openssl rand 32 >"$dir/conf/secret.key"
        local header payload key signature
        header="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)"
        payload="$(printf '{"sub":"codegen"}' | b64url)"
        key="$(od -An -tx1 -v "$dir/conf/secret.key" | tr -d ' \n')"
        signature="$(printf '%s.%s' "$header" "$payload" \
            | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | b64url)"
        printf '%s.%s.%s\n' "$header" "$payload" "$signature" >"$dir/conf/token"
    )
}

write_config() {
    mkdir -p "$dir/conf"
    TLS_DIR="$tls_dir" "$root/scripts/certs.sh" >/dev/null
    write_token
    cat >"$dir/conf/standalone.conf" <<CONF
clusterName=standalone
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
brokerServicePort=$port
brokerServicePortTls=$tls_port
webServicePort=$web_port
tlsCertificateFilePath=$tls_dir/server.crt
tlsKeyFilePath=$tls_dir/server.key
tlsTrustCertsFilePath=$tls_dir/ca.crt
# Clients show a token (a JWT signed with the secret key); the broker's own client too.
authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=file://$dir/conf/secret.key
authorizationEnabled=false
superUserRoles=codegen
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=file://$dir/conf/token
# The bookie reads this file too: bind it to the loopback interface only.
listeningInterface=lo
allowLoopback=true
# A test broker's data is wiped at each start and stays small: keep writing on a nearly full
# disk (the default turns the bookie read-only at 95% use, and every topic then fails).
diskUsageThreshold=0.999
diskUsageWarnThreshold=0.998
diskUsageLwmThreshold=0.997
metadataStoreUrl=
configurationMetadataStoreUrl=
loadManagerClassName=org.apache.pulsar.broker.loadbalance.NoopLoadManager
loadBalancerEnabled=false
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
delayedDeliveryEnabled=true
delayedDeliveryTickTimeMillis=100
# Dispatch a new message to a waiting consumer at once (the default waits up to 10 ms).
managedLedgerNewEntriesCheckDelayInMillis=0
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
journalSyncData=false
# Write the journal as soon as no other entry waits, rather than waiting up to 2 ms to group
# entries: a publish is confirmed in about 1 ms instead of 3.
journalFlushWhenQueueEmpty=true
functionsWorkerEnabled=false
transactionCoordinatorEnabled=false
brokerDeleteInactiveTopicsEnabled=false
CONF
    cat >"$dir/conf/log4j2.properties" <<CONF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{ISO8601} %-5level [%t] %c{1} - %msg%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
CONF
}

serves() {
    [ -f "$dir/conf/token" ] || return 1
    curl -fsS --max-time 2 -H "Authorization: Bearer $(cat "$dir/conf/token")" \
        "http://127.0.0.1:$web_port/admin/v2/namespaces/public" 2>/dev/null | grep -q 'public/default'
}

running_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid="$(cat "$pidfile")"
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Starts the broker; with `keep`, on the data of the last run (as after a crash).
launch() {
    local wipe=(--wipe-data)
    if [ "${1:-}" = keep ]; then
        wipe=()
    else
        rm -rf "$dir/data"
        mkdir -p "$dir/data"
    fi
    # JVM flags as in the distribution's bin/pulsar.
    setsid java -Xms256m -Xmx1g -XX:+UseG1GC \
        --add-opens java.base/java.io=ALL-UNNAMED \
        --add-opens java.base/java.util.zip=ALL-UNNAMED \
        --add-opens java.base/java.nio=ALL-UNNAMED \
        --add-opens java.base/jdk.internal.misc=ALL-UNNAMED \
        --add-opens java.base/sun.net=ALL-UNNAMED \
        --add-opens java.base/jdk.internal.platform=ALL-UNNAMED \
        --add-opens java.management/sun.management=ALL-UNNAMED \
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
        -Dio.netty.tryReflectionSetAccessible=true \
        -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver \
        -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver \
        -Dlog4j.configurationFile="$dir/conf/log4j2.properties" \
        -Dpulsar.log.dir="$dir" \
        -cp "$lib/*" org.apache.pulsar.PulsarStandaloneStarter \
        --config "$dir/conf/standalone.conf" -nfw -nss "${wipe[@]}" \
        --metadata-dir "$dir/data/meta" --bookkeeper-dir "$dir/data/bk" \
        --bookkeeper-port "$bookie_port" \
        >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

wait_ready() {
    local pid="$1" waited=0
    while [ "$waited" -lt "$timeout_s" ]; do
        if serves; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "pulsar: the broker exited; last lines of $log:" >&2; tail -20 "$log" >&2; return 1; }
        sleep 1
        waited=$((waited + 1))
    done
    echo "pulsar: not serving after ${timeout_s}s (see $log and $dir/broker.log)" >&2
    return 1
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "pulsar: stopped ($pid)"
    fi
    rm -f "$pidfile"
}

# SIGKILL, as a crashed broker, then a start on the same data, configuration and token.
restart() {
    local pid
    pid="$(running_pid)" || { echo "error: no broker started here to restart" >&2; exit 1; }
    kill -9 "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    launch keep
    wait_ready "$(cat "$pidfile")" || exit 1
    echo "pulsar: restarted, pid $(cat "$pidfile")"
}

start() {
    if running_pid >/dev/null && serves; then
        echo "pulsar: already serving on 127.0.0.1:$port"
        return
    fi
    stop >/dev/null
    # A broker this script did not start (another checkout's, or one left running) holds the
    # ports: a second one would die at start with an obscure error from its storage.
    local taken
    for taken in "$port" "$tls_port" "$web_port" "$bookie_port"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$taken") 2>/dev/null; then
            echo "error: 127.0.0.1:$taken is in use by another process (a broker started elsewhere?): stop it, or choose other ports with PULSAR_PORT, PULSAR_TLS_PORT, PULSAR_WEB_PORT and PULSAR_BOOKIE_PORT" >&2
            exit 1
        fi
    done
    install
    write_config
    for try in 1 2; do
        stop >/dev/null
        launch
        if wait_ready "$(cat "$pidfile")"; then
            echo "pulsar: serving on pulsar://127.0.0.1:$port and pulsar+ssl://127.0.0.1:$tls_port (admin http://127.0.0.1:$web_port; token in $dir/conf/token), pid $(cat "$pidfile")"
            return
        fi
        echo "pulsar: start $try failed" >&2
    done
    stop
    exit 1
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) restart ;;
    status) if serves; then echo "pulsar: serving on 127.0.0.1:$port"; else echo "pulsar: not serving"; exit 1; fi ;;
    token) echo "$dir/conf/token" ;;
    *) echo "usage: $0 install|start|stop|restart|status|token" >&2; exit 2 ;;
esac
