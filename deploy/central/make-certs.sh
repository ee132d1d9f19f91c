#!/bin/sh
# A private CA and one server certificate for the central broker and InfluxDB, in certs/.
#   deploy/central/make-certs.sh central.example.org [more names or IPs...]
# The names are the ones gateways use to reach this host; `mosquitto` and `influxdb` (the compose
# service names) are always added so Grafana can verify InfluxDB inside the compose network.
# Gateways get certs/ca.crt (as [mqtt] ca_file). Keep certs/ca.key off the server once done.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 HOSTNAME [NAME|IP ...]" >&2; exit 2; }
out=$(cd "$(dirname "$0")" && pwd)/certs
mkdir -p "$out"
cd "$out"
umask 077
san="DNS:mosquitto,DNS:influxdb"
for name in "$@"; do
  if printf '%s' "$name" | grep -Eq '^[0-9.]+$|:'; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done
if [ ! -e ca.key ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=Harbourgrid central CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=$1" -keyout server.key -out server.csr
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
  "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile server.ext -out server.crt
rm -f server.csr server.ext
chmod 0644 ca.crt server.crt
# mosquitto and influxd read the key as their own users (uid 1883, and influxdb's) through the
# bind mount: it must be readable by them. Keep this host to its administrators.
chmod 0644 server.key
echo "wrote $out/ca.crt, server.crt, server.key for: $san" >&2
