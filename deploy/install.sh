#!/usr/bin/env bash
# Install or upgrade the Harbourgrid hub on a gateway (idempotent: safe to run again).
#
#   sudo ./install.sh --offline harbourgrid-hub-<version>-<arch>.tar.gz   # a bundle, no network
#   sudo ./install.sh                       # from a source checkout, dependencies from the registry
#   ./install.sh --dry-run ...              # print what it would do, change nothing
#
# Each version gets its own virtualenv, /opt/harbourgrid/venv-<version>; /opt/harbourgrid/venv is a
# symlink to the live one and the previous one is kept for rollback. An upgrade installs the new
# venv beside the running one, checks the config with the secrets of /etc/harbourgrid/hub.env,
# switches the symlink, restarts the service and waits for /healthz; when the new version is not
# healthy in time it switches back and restarts the old one. Config, secrets, registry files and
# buffered data (/var/lib/harbourgrid) are never touched by an upgrade.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=""           # --prefix DIR: install under DIR instead of / (image builds, tests)
OFFLINE=""          # --offline BUNDLE.tar.gz | extracted bundle dir | dir of wheels
PYTHON="${PYTHON:-python3}"
SYSTEMCTL="${SYSTEMCTL:-systemctl}"
HEALTH_URL=""       # default: from [http] in hub.toml
HEALTH_TIMEOUT=90
DRY_RUN=0
START=1
REMOTE_CONFIG=0     # --remote-config: let signed fleet configs write /etc/harbourgrid

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    cat <<USAGE
options:
  --offline B          install from bundle B (.tar.gz, checked against its SHA256SUMS), an extracted
                       bundle directory, or a directory of wheels
  --prefix DIR         install under DIR instead of / (no user, no chown)
  --no-start           install and enable, do not (re)start the service
  --health-url URL     what to poll after the restart (default: /healthz of [http] in hub.toml)
  --health-timeout S   how long the new version has to become healthy (default: $HEALTH_TIMEOUT)
  --remote-config      allow signed remote configuration (fleet): the unit drop-in that lets the
                       hub write /etc/harbourgrid, which becomes group-writable for harbourgrid
  --dry-run            print every step, change nothing
exit codes: 0 installed and healthy, 1 failed (nothing switched), 2 config invalid (not switched),
            4 new version unhealthy: rolled back to the previous one
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
        --offline) OFFLINE="${2:?--offline needs a bundle or directory}"; shift 2 ;;
        --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
        --no-start) START=0; shift ;;
        --health-url) HEALTH_URL="${2:?}"; shift 2 ;;
        --health-timeout) HEALTH_TIMEOUT="${2:?}"; shift 2 ;;
        --remote-config) REMOTE_CONFIG=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

PREFIX="${PREFIX%/}"
OPT="$PREFIX/opt/harbourgrid"
LINK="$OPT/venv"
ETC="$PREFIX/etc/harbourgrid"
STATE="$PREFIX/var/lib/harbourgrid"
UNIT_DIR="$PREFIX/etc/systemd/system"
UNIT="harbourgrid-hub.service"
PAYLOAD=""          # where install.sh, the unit, examples and dashboards come from
WHEELS=""
WORK=""

say() { printf '==> %s\n' "$*"; }
die() { echo "install.sh: $2" >&2; exit "$1"; }
run() { if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi; }
cleanup() { [ -n "$WORK" ] && rm -rf "$WORK"; return 0; }
trap cleanup EXIT

need_root() {
    if [ "$DRY_RUN" = 0 ] && [ -z "$PREFIX" ] && [ "$(id -u)" != 0 ]; then
        die 1 "run as root (sudo), or use --dry-run / --prefix"
    fi
}

# Sets PAYLOAD and WHEELS from --offline (or the checkout this script is in).
locate_payload() {
    if [ -z "$OFFLINE" ]; then
        PAYLOAD="$(dirname "$HERE")/deploy"
        [ -f "$PAYLOAD/hub.example.toml" ] || die 1 "no --offline bundle and not in a checkout"
        return
    fi
    local dir="$OFFLINE"
    if [ -f "$OFFLINE" ]; then
        WORK="$(mktemp -d)"
        say "unpacking $OFFLINE"
        tar -xzf "$OFFLINE" -C "$WORK"
        dir="$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -n1)"
    fi
    if [ -f "$dir/SHA256SUMS" ]; then
        say "checking $(wc -l <"$dir/SHA256SUMS") files against SHA256SUMS"
        (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS) || die 1 "bundle is corrupt"
        PAYLOAD="$dir"
        WHEELS="$dir/wheels"
    else
        PAYLOAD="$HERE"
        WHEELS="$dir"
    fi
    ls "$WHEELS"/harbourgrid_hub-*.whl >/dev/null 2>&1 || die 1 "no hub wheel in $WHEELS"
}

new_version() {
    if [ -n "$WHEELS" ]; then
        local wheel
        wheel="$(ls "$WHEELS"/harbourgrid_hub-*.whl | sort -V | tail -n1)"
        basename "$wheel" | cut -d- -f2
    else
        date -u +source-%Y%m%dT%H%M%S
    fi
}

# Builds $OPT/venv-$1 from scratch (never in place: the live venv keeps running meanwhile).
install_venv() {
    local venv="$OPT/venv-$1"
    say "installing hub $1 into $venv"
    run rm -rf "$venv"
    run mkdir -p "$OPT"
    run "$PYTHON" -m venv "$venv"
    if [ -n "$WHEELS" ]; then
        local wheel
        wheel="$(ls "$WHEELS"/harbourgrid_hub-*.whl | sort -V | tail -n1)"
        run "$venv/bin/pip" install --quiet --no-index --find-links "$WHEELS" "$wheel"
    else
        run "$venv/bin/pip" install --quiet "$(dirname "$HERE")"
    fi
}

create_user() {
    if [ -n "$PREFIX" ]; then
        say "--prefix: skipping user creation (would run: useradd --system harbourgrid)"
        return
    fi
    if ! id harbourgrid >/dev/null 2>&1; then
        say "creating system user harbourgrid"
        run useradd --system --home-dir /var/lib/harbourgrid --no-create-home \
            --shell /usr/sbin/nologin --groups dialout harbourgrid
    fi
    run usermod --append --groups dialout harbourgrid
}

copy_if_absent() {  # copy_if_absent SRC DEST MODE
    if [ -e "$2" ]; then
        say "keeping existing $2"
    else
        say "installing $2"
        run install -m "$3" "$1" "$2"
    fi
}

install_files() {
    run mkdir -p "$ETC" "$STATE" "$UNIT_DIR"
    copy_if_absent "$PAYLOAD/hub.example.toml" "$ETC/hub.toml" 0644
    copy_if_absent "$PAYLOAD/harbourgrid-hub.env.example" "$ETC/hub.env" 0640
    if [ -d "$ETC/registry" ]; then
        say "keeping existing $ETC/registry"
    else
        run cp -r "$PAYLOAD/registry" "$ETC/registry"
    fi
    local dashboards="$PAYLOAD/dashboards"
    [ -d "$dashboards" ] || dashboards="$(dirname "$PAYLOAD")/dashboards"
    if [ -d "$dashboards" ]; then
        say "installing Grafana dashboards to $OPT/dashboards"
        run rm -rf "$OPT/dashboards"
        run cp -r "$dashboards" "$OPT/dashboards"
    fi
    run install -m 0644 "$PAYLOAD/$UNIT" "$UNIT_DIR/$UNIT"
    # Signed upgrades: the unprivileged hub hands a verified bundle to this root path unit.
    run install -m 0644 "$PAYLOAD/harbourgrid-upgrade.path" "$PAYLOAD/harbourgrid-upgrade.service" \
        "$UNIT_DIR/"
    run mkdir -p "$ETC/trusted_keys"
    if [ "$REMOTE_CONFIG" = 1 ]; then
        say "remote configuration allowed: $UNIT_DIR/$UNIT.d/fleet.conf"
        run mkdir -p "$UNIT_DIR/$UNIT.d"
        run install -m 0644 "$PAYLOAD/harbourgrid-hub-fleet.conf" "$UNIT_DIR/$UNIT.d/fleet.conf"
    fi
    if [ -z "$PREFIX" ]; then
        run chown root:harbourgrid "$ETC/hub.env"
        run chown harbourgrid:harbourgrid "$STATE"
        run chmod 0750 "$STATE"
        if [ "$REMOTE_CONFIG" = 1 ]; then
            run chgrp harbourgrid "$ETC" "$ETC/registry"
            run chmod g+w "$ETC" "$ETC/registry"
        fi
    fi
}

# check-config with the secrets the service will have (EnvironmentFile=/etc/harbourgrid/hub.env).
check_config() {
    local venv="$1"
    [ "$DRY_RUN" = 1 ] && { printf '+ %s/bin/hub check-config %s\n' "$venv" "$ETC/hub.toml"; return 0; }
    (
        set -a
        # shellcheck disable=SC1091
        [ -r "$ETC/hub.env" ] && . "$ETC/hub.env"
        set +a
        "$venv/bin/hub" check-config "$ETC/hub.toml"
    )
}

current_target() { [ -L "$LINK" ] && readlink "$LINK" || true; }

switch_to() {  # switch_to venv-<version>: atomic symlink swap
    say "switching $LINK -> $1"
    run ln -sfn "$1" "$LINK.new"
    run mv -T "$LINK.new" "$LINK"
}

health_url() {
    if [ -n "$HEALTH_URL" ]; then echo "$HEALTH_URL"; return; fi
    "$LINK/bin/python" - "$ETC/hub.toml" <<'PY'
import sys, tomllib
http = tomllib.load(open(sys.argv[1], "rb")).get("http", {})
if http.get("enabled", True) is False:
    sys.exit(0)  # no local HTTP server: nothing to poll
host = http.get("host", "127.0.0.1")
host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
print(f"http://{host}:{http.get('port', 8080)}/healthz")
PY
}

wait_healthy() {
    local url deadline
    url="$(health_url)"
    if [ -z "$url" ]; then
        say "[http] is disabled in hub.toml: no /healthz to wait for (pass --health-url to check one)"
        return 0
    fi
    deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
    say "waiting up to ${HEALTH_TIMEOUT}s for $url"
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if "$LINK/bin/python" -c 'import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=3).status == 200 else 1)' "$url" \
            2>/dev/null; then
            return 0
        fi
        sleep 1  # polling a service we just restarted
    done
    return 1
}

prune() {  # keep the live venv and the one before it
    local keep_a="$1" keep_b="$2" dir
    for dir in "$OPT"/venv-*; do
        [ -d "$dir" ] || continue
        case "$(basename "$dir")" in "$keep_a"|"$keep_b") ;; *) say "removing old $dir"; run rm -rf "$dir" ;; esac
    done
}

# A pre-A/B install has a real directory at $LINK: make it the previous version.
adopt_legacy_venv() {
    if [ -d "$LINK" ] && [ ! -L "$LINK" ]; then
        say "moving the existing $LINK to $OPT/venv-legacy (rollback target)"
        run mv "$LINK" "$OPT/venv-legacy"
        switch_to "venv-legacy"
    fi
}

main() {
    need_root
    locate_payload
    [ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"
    local version previous target
    version="$(new_version)"
    target="venv-$version"
    adopt_legacy_venv
    previous="$(current_target)"
    if [ "$previous" = "$target" ]; then
        say "hub $version is already the live version: reinstalling it in place"
        previous=""
    fi
    install_venv "$version"
    create_user
    install_files
    if ! check_config "$OPT/$target"; then
        echo "install.sh: $ETC/hub.toml does not validate with $ETC/hub.env (see above);" \
            "nothing switched: the running hub is untouched" >&2
        exit 2
    fi
    switch_to "$target"
    run "$SYSTEMCTL" daemon-reload
    run "$SYSTEMCTL" enable "$UNIT" harbourgrid-upgrade.path
    if [ "$START" = 0 ] || [ "$DRY_RUN" = 1 ]; then
        say "installed hub $version (not started)"
        return
    fi
    run "$SYSTEMCTL" restart "$UNIT"
    if wait_healthy; then
        prune "$target" "$previous"
        say "hub $version is running and healthy"
        return
    fi
    if [ -z "$previous" ]; then
        die 1 "hub $version did not become healthy and there is no previous version to go back to"
    fi
    echo "install.sh: hub $version not healthy within ${HEALTH_TIMEOUT}s: rolling back to $previous" >&2
    switch_to "$previous"
    run "$SYSTEMCTL" restart "$UNIT"
    wait_healthy || echo "install.sh: the previous version is not healthy either" >&2
    exit 4
}

main
