#!/usr/bin/env bash
# Install or upgrade the Harbourgrid hub on a gateway (idempotent: safe to run again).
#
#   sudo deploy/install.sh                       # hub from the package registry (pip)
#   sudo deploy/install.sh --offline ./wheels    # from a wheel bundle, no network
#   deploy/install.sh --dry-run                  # print what it would do, change nothing
#
# Puts the hub into /opt/harbourgrid/venv, creates the `harbourgrid` system user (in `dialout`
# for serial ports), copies the example config and secrets file to /etc/harbourgrid only when
# they are absent, installs and enables the systemd unit. An existing config is never touched.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(dirname "$HERE")"
PREFIX=""           # --prefix DIR: install under DIR instead of / (packaging, tests)
OFFLINE=""          # --offline DIR: pip install --no-index --find-links DIR
PACKAGE="harbourgrid-hub"
PYTHON="${PYTHON:-python3}"
DRY_RUN=0
START=1

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    cat <<USAGE
options:
  --offline DIR   install from the wheels in DIR (no network)
  --package SPEC  what pip installs (default: $PACKAGE; a path to a wheel or source tree works)
  --prefix DIR    install under DIR instead of / (no user, no systemctl)
  --no-start      enable the service but do not (re)start it
  --dry-run       print every step, change nothing
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
        --offline) OFFLINE="${2:?--offline needs a directory}"; shift 2 ;;
        --package) PACKAGE="${2:?--package needs a spec}"; shift 2 ;;
        --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

PREFIX="${PREFIX%/}"
OPT="$PREFIX/opt/harbourgrid"
VENV="$OPT/venv"
ETC="$PREFIX/etc/harbourgrid"
STATE="$PREFIX/var/lib/harbourgrid"
UNIT_DIR="$PREFIX/etc/systemd/system"
UNIT="harbourgrid-hub.service"

say() { printf '==> %s\n' "$*"; }

# Run a command, or print it on --dry-run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

need_root() {
    if [ "$DRY_RUN" = 0 ] && [ -z "$PREFIX" ] && [ "$(id -u)" != 0 ]; then
        echo "install.sh: run as root (sudo), or use --dry-run / --prefix" >&2
        exit 1
    fi
}

check_offline() {
    if [ -n "$OFFLINE" ] && [ "$DRY_RUN" = 0 ] && ! ls "$OFFLINE"/*.whl >/dev/null 2>&1; then
        echo "install.sh: no *.whl in $OFFLINE (make one with: pip wheel -w DIR .)" >&2
        exit 1
    fi
}

install_venv() {
    if [ -x "$VENV/bin/python" ]; then
        say "virtualenv $VENV exists: upgrading in place"
    else
        say "creating virtualenv $VENV"
        run mkdir -p "$OPT"
        run "$PYTHON" -m venv "$VENV"
    fi
    if [ -n "$OFFLINE" ]; then
        say "installing $PACKAGE from wheels in $OFFLINE (offline)"
        run "$VENV/bin/pip" install --no-index --find-links "$OFFLINE" --upgrade "$PACKAGE"
    else
        say "installing $PACKAGE from the package registry"
        run "$VENV/bin/pip" install --upgrade pip
        run "$VENV/bin/pip" install --upgrade "$PACKAGE"
    fi
    if [ -d "$SRC/dashboards" ]; then
        say "copying Grafana dashboards to $OPT/dashboards"
        run mkdir -p "$OPT/dashboards"
        run cp "$SRC"/dashboards/*.json "$OPT/dashboards/"
    fi
}

create_user() {
    if [ -n "$PREFIX" ]; then
        say "--prefix: skipping user creation (would run: useradd --system harbourgrid)"
        return
    fi
    if id harbourgrid >/dev/null 2>&1; then
        say "user harbourgrid exists"
    else
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

install_config() {
    run mkdir -p "$ETC" "$STATE"
    copy_if_absent "$SRC/deploy/hub.example.toml" "$ETC/hub.toml" 0644
    copy_if_absent "$HERE/harbourgrid-hub.env.example" "$ETC/hub.env" 0640
    if [ -d "$ETC/registry" ]; then
        say "keeping existing $ETC/registry"
    elif [ -d "$SRC/deploy/registry" ]; then
        say "installing example registry files to $ETC/registry"
        run cp -r "$SRC/deploy/registry" "$ETC/registry"
    fi
    if [ -z "$PREFIX" ]; then
        run chown root:harbourgrid "$ETC/hub.env"
        run chown harbourgrid:harbourgrid "$STATE"
        run chmod 0750 "$STATE"
    fi
}

install_unit() {
    say "installing systemd unit $UNIT_DIR/$UNIT"
    run mkdir -p "$UNIT_DIR"
    run install -m 0644 "$HERE/$UNIT" "$UNIT_DIR/$UNIT"
    if [ -n "$PREFIX" ]; then
        say "--prefix: not calling systemctl (would run: systemctl enable $UNIT)"
        return
    fi
    run systemctl daemon-reload
    run systemctl enable "$UNIT"
    if [ "$START" = 1 ]; then
        # Refuse to (re)start on a config that does not validate: the running hub keeps going.
        if run "$VENV/bin/hub" check-config "$ETC/hub.toml"; then
            run systemctl restart "$UNIT"
        else
            echo "install.sh: fix $ETC/hub.toml (and secrets in $ETC/hub.env), then:" \
                "systemctl restart $UNIT" >&2
        fi
    fi
}

main() {
    need_root
    check_offline
    [ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"
    install_venv
    create_user
    install_config
    install_unit
    say "done: edit $ETC/hub.toml and $ETC/hub.env; status: systemctl status $UNIT"
}

main
