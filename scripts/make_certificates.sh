#!/usr/bin/env bash
# A lab certificate authority and a SuperLink server certificate for a Flower deployment over TLS (openssl only).
#
#   bash scripts/make_certificates.sh OUT_DIR NAME_OR_IP [NAME_OR_IP ...]
#
# Every NAME_OR_IP goes into the server certificate's subjectAltName (IP addresses as IP:, the rest as DNS:), so list
# every address the SuperNodes and `flwr` will use to reach the SuperLink, e.g. `superlink.example.org 10.0.0.5` or,
# on one machine, `localhost 127.0.0.1`. Writes into OUT_DIR:
#   ca.crt ca.key            the lab CA (ca.crt goes to every SuperNode and into `root-certificates`; keep ca.key)
#   server.pem server.key    the SuperLink's certificate (signed by the CA) and key
# Existing files are kept unless FORCE=1. Validity: DAYS (default 365) days. ECDSA P-256 keys.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 OUT_DIR NAME_OR_IP [NAME_OR_IP ...]  (the SuperLink's DNS names / IPs for the certificate SAN)" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }
out=$1
shift
days=${DAYS:-365}
if [ -e "$out/server.pem" ] && [ "${FORCE:-0}" != "1" ]; then
  echo "$0: $out/server.pem exists; keeping it (FORCE=1 to make new certificates)"
  exit 0
fi
mkdir -p "$out"
umask 077

san=""
for name in "$@"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
    san="${san:+$san,}IP:$name"
  else
    san="${san:+$san,}DNS:$name"
  fi
done

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca.key"
openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" -subj "/CN=fedvssl-jax lab CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/server.key"
openssl req -new -key "$out/server.key" -subj "/CN=$1" -out "$out/server.csr"
ext="$out/server.ext"
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
    "$san" > "$ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -days "$days" \
    -sha256 -extfile "$ext" -out "$out/server.pem" 2>/dev/null
rm -f "$out/server.csr" "$ext" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.pem"
openssl verify -CAfile "$out/ca.crt" "$out/server.pem" >/dev/null
echo "certificates in $out: ca.crt (give to every SuperNode and flwr), server.pem + server.key (SuperLink); SAN $san"
