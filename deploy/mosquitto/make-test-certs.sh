#!/usr/bin/env bash
# A throw-away CA, a broker certificate and one client certificate per device, for trying the
# broker example or for tests. Production fleets use their own PKI; the shape is the same.
#
#   deploy/mosquitto/make-test-certs.sh OUT_DIR BROKER_NAME DEVICE_ID [DEVICE_ID...]
#
# OUT_DIR gets ca.crt (give it to broker and devices), ca.key (keep it off the devices),
# broker.crt/.key (SAN: BROKER_NAME, localhost, 127.0.0.1) and <device>.crt/.key (CN=device).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
OUT=$1 BROKER=$2
shift 2
DAYS=${DAYS:-825}
mkdir -p "$OUT"
cd "$OUT"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f ca.crt ]; then
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -subj "/CN=edge-agent test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out ca.crt
fi

sign() {  # name subject extensions
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$DAYS" -extfile <(printf '%s\n' "$3") -out "$1.crt" 2>/dev/null
  rm -f "$1.csr"
}

sign broker "/CN=$BROKER" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$BROKER,DNS:localhost,IP:127.0.0.1"

for device in "$@"; do
  [[ "$device" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ && "$device" != broker && "$device" != ca ]] || { echo "bad device id: $device" >&2; exit 2; }
  sign "$device" "/CN=$device" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done
chmod 0644 ./*.crt
echo "certificates in $(pwd): ca.crt broker.crt $(printf '%s.crt ' "$@")"
