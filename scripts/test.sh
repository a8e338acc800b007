#!/usr/bin/env bash
# Every test, on a fresh machine: installs what is missing, starts the services the tests need,
# runs formatting, lints and every test, and stops what it started.
#
#   scripts/test.sh
#
# Installs (with apt-get, as root or through sudo) protoc (the Pulsar client's build), Java 17
# and Maven (the Pulsar standalone broker, fetched from Maven Central into ~/.m2), openssl (the
# services' TLS certificates and the broker's token), PostgreSQL,
# Chromium with chromedriver (the console's browser test) and Prometheus (the telemetry test
# starts its own on 127.0.0.1); and rustfmt and clippy with rustup. Starts PostgreSQL and
# Pulsar on 127.0.0.1 (scripts/postgres.sh, scripts/pulsar.sh) unless they already run, and
# stops those it started, also when a step fails. Reads the API corpus from ../shared/corpus
# beside the repository.
# CI runs this same script (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "== $*"; }

if [ ! -d ../shared/corpus/openapi ]; then
    echo "error: ../shared/corpus/openapi is missing: the corpus tests read the shared API descriptions from there" >&2
    exit 1
fi

command -v cargo >/dev/null 2>&1 || {
    echo "error: cargo is missing: install the Rust toolchain (https://rustup.rs), then run this again" >&2
    exit 1
}
if ! command -v rustfmt >/dev/null 2>&1 || ! command -v cargo-clippy >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        step "rustup component add rustfmt clippy"
        rustup component add rustfmt clippy
    else
        echo "error: rustfmt or clippy is missing: install them with your toolchain (rustup component add rustfmt clippy)" >&2
        exit 1
    fi
fi

# Debian's packages the tests need, when their programs are missing.
packages=()
command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || packages+=(maven)
command -v curl >/dev/null 2>&1 || packages+=(curl)
# The test services' certificates and the broker's token (scripts/certs.sh, scripts/pulsar.sh).
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
# The console's browser test (tests/console.rs) drives headless Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
# The telemetry test (tests/telemetry.rs) has a real Prometheus scrape the workers.
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "error: missing ${packages[*]}: install them with \`apt-get install ${packages[*]}\` as root" >&2
        exit 1
    fi
    step "apt-get install ${packages[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

cargo --version
rustfmt --version

# One build from scratch: incremental caches (6 GB in one run) would never be read again.
export CARGO_INCREMENTAL=0

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --features codegen-runtime/pulsar -- -D warnings"
cargo clippy --workspace --all-targets --features codegen-runtime/pulsar -- -D warnings
step "cargo clippy -p codegen-runtime --all-targets -- -D warnings (the default build, without Pulsar)"
cargo clippy -p codegen-runtime --all-targets -- -D warnings

step "services: PostgreSQL and Apache Pulsar on 127.0.0.1"
started=()
stop_services() {
    local service
    for service in "${started[@]}"; do
        scripts/"$service".sh stop || true
    done
}
trap stop_services EXIT
for service in postgres pulsar; do
    if scripts/"$service".sh status >/dev/null 2>&1; then
        echo "$service: already running, left running afterwards"
    else
        started+=("$service")
        scripts/"$service".sh start
    fi
done

step "cargo test --workspace --features codegen-runtime/pulsar"
cargo test --workspace --features codegen-runtime/pulsar
