#!/usr/bin/env bash
# A certificate authority and a server certificate for 127.0.0.1, made with openssl for the test
# services (scripts/postgres.sh, scripts/pulsar.sh), which serve TLS with them.
#
#   scripts/certs.sh        make them when missing or expiring within a day; print the folder
#
# Folder: TLS_DIR (default target/services/tls): ca.crt (what clients trust), server.crt and
# server.key (PKCS#8, what the servers present). The server certificate names only the IP
# address 127.0.0.1, so a client that checks names refuses it for `localhost`: the tests use
# that to tell `verify-full` from `verify-ca`. Keys are P-256 and never leave the folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${TLS_DIR:-$root/target/services/tls}"

command -v openssl >/dev/null || { echo "error: openssl is missing: apt-get install -y openssl" >&2; exit 1; }

if [ -f "$dir/server.crt" ] && openssl x509 -checkend 86400 -noout -in "$dir/server.crt" >/dev/null 2>&1; then
    echo "$dir"
    exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
(
    cd "$dir"
    umask 077
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj "/CN=codegen test CA" -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext ca.srl
    chmod 644 ca.crt server.crt
)
echo "$dir"
