#!/usr/bin/env bash
# A PostgreSQL server on 127.0.0.1 for the distributed backend's tests, from Debian's packages.
#
#   scripts/postgres.sh install   apt-get install postgresql (when its programs are missing)
#   scripts/postgres.sh start     install if needed, initdb a data directory, start, wait
#   scripts/postgres.sh stop      stop the server started here, by its process id
#   scripts/postgres.sh restart   immediate shutdown and start again on the same data
#   scripts/postgres.sh status    say whether a server answers on the port (started here or not)
#   scripts/postgres.sh url       print the URL the tests use (CODEGEN_TEST_POSTGRES)
#
# Port: PG_PORT (default 15432). Data: PG_DIR (default target/services/postgres), made anew at
# each start. Run as root, the server runs as the `postgres` user (PostgreSQL refuses root).
# The database `codegen` is owned by the user `codegen` (password `codegen`). As a managed
# service is, the server is set up with `ssl = on` (a certificate from scripts/certs.sh) and
# takes connections over TCP only with TLS and a SCRAM password; the script itself talks to it
# over its Unix socket in the data folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${PG_DIR:-$root/target/services/postgres}"
port="${PG_PORT:-15432}"
data="$dir/data"
log="$dir/postgres.log"

bindir() {
    local pgbin
    for pgbin in /usr/lib/postgresql/*/bin; do
        if [ -x "$pgbin/initdb" ]; then echo "$pgbin"; return 0; fi
    done
    return 1
}

install() {
    if bindir >/dev/null; then return; fi
    echo "postgres: installing Debian's postgresql package"
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: PostgreSQL is not installed: run \`sudo apt-get install -y postgresql\`" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Runs a command as the server's user: `postgres` when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pid() {
    [ -f "$data/postmaster.pid" ] || return 1
    local p
    p="$(head -1 "$data/postmaster.pid")"
    kill -0 "$p" 2>/dev/null && echo "$p"
}

tls_dir="${TLS_DIR:-$root/target/services/tls}"

url() { echo "postgres://codegen:codegen@127.0.0.1:$port/codegen?sslmode=verify-full&sslrootcert=$tls_dir/ca.crt"; }

stop() {
    local p
    if p="$(pid)"; then
        # SIGINT is PostgreSQL's fast shutdown: sessions end, the data is consistent.
        kill -INT "$p"
        for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
        kill -0 "$p" 2>/dev/null && kill -9 "$p"
        echo "postgres: stopped ($p)"
    fi
}

# Starts the server on the data directory as it is and waits until it serves.
launch() {
    local bin="$1"
    # Loopback only, on a fixed port, no Unix socket outside the data directory.
    as_owner "$bin/postgres" -D "$data" -p "$port" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories="$dir" -c max_connections=200 \
        -c ssl=on -c ssl_cert_file="$dir/server.crt" -c ssl_key_file="$dir/server.key" \
        -c password_encryption=scram-sha-256 >>"$log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then return 0; fi
        sleep 0.5
    done
    echo "postgres: not serving after 30 s; last lines of $log:" >&2
    tail -20 "$log" >&2
    stop
    exit 1
}

# An immediate shutdown (SIGQUIT: sessions are cut, the next start recovers from the WAL, as
# after a crash), then a start on the same data: what a failover looks like to clients.
restart() {
    local bin p
    bin="$(bindir)"
    p="$(pid)" || { echo "error: no server started here to restart" >&2; exit 1; }
    kill -QUIT "$p"
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
    launch "$bin"
    echo "postgres: restarted, pid $(pid)"
}

start() {
    install
    local bin
    bin="$(bindir)"
    if pid >/dev/null && as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        echo "postgres: already serving at $(url)"
        return
    fi
    stop >/dev/null
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; fi
    as_owner "$bin/initdb" -D "$data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log"
    # The server's certificate, in a file only its user reads (PostgreSQL insists).
    TLS_DIR="$tls_dir" "$root/scripts/certs.sh" >/dev/null
    cp "$tls_dir/server.crt" "$tls_dir/server.key" "$dir/"
    chmod 600 "$dir/server.crt" "$dir/server.key"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir/server.crt" "$dir/server.key"; fi
    # The Unix socket trusts the server's own user; TCP needs TLS and a password, and nothing
    # else matches, so a connection without TLS is refused.
    cat >"$data/pg_hba.conf" <<HBA
local all postgres trust
hostssl all all 127.0.0.1/32 scram-sha-256
HBA
    launch "$bin"
    as_owner "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres \
        -c "CREATE ROLE codegen LOGIN PASSWORD 'codegen'" -c "CREATE DATABASE codegen OWNER codegen" >/dev/null
    echo "postgres: serving at $(url), pid $(pid)"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    restart) restart ;;
    stop) stop ;;
    url) url ;;
    status)
        if p="$(pid)"; then
            echo "postgres: running on 127.0.0.1:$port ($p)"
        elif b="$(bindir)" && as_owner "$b/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            # Started elsewhere (another checkout's script, or by hand): the tests can use it.
            echo "postgres: a server started elsewhere answers on 127.0.0.1:$port"
        else
            echo "postgres: not running"
            exit 1
        fi
        ;;
    *) echo "usage: $0 install|start|stop|restart|status|url" >&2; exit 2 ;;
esac
