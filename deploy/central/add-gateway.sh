#!/bin/sh
# Add a gateway (or the platform) to the central broker's password file and print the
# credentials file a technician drops on the gateway.
#
#   deploy/central/add-gateway.sh SITE > SITE.env     # a gateway; its username is its site id
#   deploy/central/add-gateway.sh --platform > platform.env
#
# Running it again for the same name replaces that password (rotation). The broker reads the
# file again on SIGHUP: `docker compose kill -s SIGHUP mosquitto`.
# Environment: MOSQUITTO_PASSWD_FILE (default: mosquitto/config/passwd next to this script),
# CENTRAL_MQTT_HOST (the broker's name as gateways reach it; default: this host's name).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
passwd_file=${MOSQUITTO_PASSWD_FILE:-$here/mosquitto/config/passwd}
host=${CENTRAL_MQTT_HOST:-$(hostname -f 2>/dev/null || hostname)}

usage() { echo "usage: $0 SITE | --platform" >&2; exit 2; }
[ $# -eq 1 ] || usage
if [ "$1" = "--platform" ]; then
  user=platform
else
  user=$1
  # The username is substituted for %u in the ACL: it must be one plain topic level.
  if ! printf '%s' "$user" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'; then
    echo "error: site id '$user' must be 1-64 of A-Z a-z 0-9 _ - (one MQTT topic level)" >&2
    exit 2
  fi
  if [ "$user" = platform ]; then
    echo "error: 'platform' is the platform's account; use --platform" >&2
    exit 2
  fi
fi

if command -v mosquitto_passwd >/dev/null 2>&1; then
  passwd_cmd() { mosquitto_passwd "$passwd_file" "$user"; }
elif command -v docker >/dev/null 2>&1; then
  dir=$(cd "$(dirname "$passwd_file")" && pwd)
  name=$(basename "$passwd_file")
  passwd_cmd() {
    docker run --rm -i -v "$dir:/work" eclipse-mosquitto:2.0 mosquitto_passwd "/work/$name" "$user"
  }
else
  echo "error: needs mosquitto_passwd (Debian: mosquitto) or docker" >&2
  exit 1
fi

# 32 random bytes, URL-safe base64: no quoting needed in an env file.
password=$(head -c 32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_')
[ -n "$password" ] || { echo "error: could not make a password" >&2; exit 1; }

umask 077
[ -e "$passwd_file" ] || : > "$passwd_file"
existed=$(grep -c "^$user:" "$passwd_file" || true)
# The password goes through stdin (prompt and confirmation), never on a command line.
printf '%s\n%s\n' "$password" "$password" | passwd_cmd > /dev/null
if [ "$existed" != 0 ]; then
  echo "replaced the password of '$user' in $passwd_file" >&2
else
  echo "added '$user' to $passwd_file" >&2
fi
echo "reload the broker: docker compose kill -s SIGHUP mosquitto" >&2

if [ "$user" = platform ]; then
  cat <<END
# Harbourgrid central broker: the platform's account (reads all sites, sends acks/config).
CENTRAL_MQTT_HOST=$host
CENTRAL_MQTT_PORT=8883
CENTRAL_MQTT_USERNAME=platform
CENTRAL_MQTT_PASSWORD=$password
END
  exit 0
fi

cat <<END
# Harbourgrid gateway credentials for site '$user' on the central broker.
# Append to /etc/harbourgrid/hub.env (chmod 0640, root:harbourgrid) and set in hub.toml:
#   [hub]
#   site = "$user"
#   [mqtt]
#   enabled = true
#   host = "$host"
#   port = 8883
#   tls = true
#   ca_file = "/etc/harbourgrid/central-ca.crt"   # certs/ca.crt of the central stack
#   username = "$user"
#   password_env = "HUB_MQTT_PASSWORD"
HUB_MQTT_PASSWORD=$password
END
