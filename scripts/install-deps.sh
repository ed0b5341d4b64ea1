#!/usr/bin/env bash
# Installs the system packages the agent, its tests and the compose stack need
# on Debian bookworm (or newer), as root. Idempotent.
#
# restic >= 0.17 is required; bookworm ships 0.14, so restic, rest-server and the
# Compose v2 plugin come from Debian trixie through a low-priority apt pin.
# Nothing else is taken from trixie, so the host's libc stays as it is.
#
# The S3 tests start a throwaway Ceph cluster (one monitor, one memstore OSD, one RADOS
# Gateway): bookworm's Ceph 16.2 packages, never trixie's (they would pull a newer libc
# and python3); faketime runs a second gateway with a skewed clock, openssl makes the
# test certificates.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root (sudo make deps)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# shellcheck source=/dev/null
. /etc/os-release

trixie_pkgs=(restic restic-rest-server docker-compose)
main_pkgs=(python3 python3-venv mariadb-server mariadb-client mariadb-backup sqlite3 prometheus docker.io debootstrap shellcheck ca-certificates openssl make)
ceph_pkgs=(ceph-mon ceph-osd radosgw ceph-common faketime)

if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
    src=/etc/apt/sources.list.d/debian.sources
    # Reuse the mirror and keyring of the first entry the host already uses.
    mirror=$(awk '/^URIs:/ {print $2; exit}' "$src")
    keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$src")
    cat >/etc/apt/sources.list.d/backup-agent-trixie.sources <<SRC
Types: deb
URIs: ${mirror}
Suites: trixie
Components: main
Signed-By: ${keyring}
SRC
    cat >/etc/apt/preferences.d/backup-agent-trixie <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    apt-get update -q
    # The trixie pin (100) keeps Ceph and everything else at bookworm's versions.
    apt-get install -y -q --no-install-recommends "${main_pkgs[@]}" "${ceph_pkgs[@]}"
    apt-get install -y -q --no-install-recommends -t trixie "${trixie_pkgs[@]}"
else
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${main_pkgs[@]}" "${ceph_pkgs[@]}" "${trixie_pkgs[@]}"
fi

# The tests start their own MariaDB servers and Ceph daemons; the packaged ones are not needed.
if command -v systemctl >/dev/null 2>&1; then
    for unit in mariadb ceph.target; do
        if systemctl is-active --quiet "$unit" 2>/dev/null; then
            systemctl disable --now "$unit" || true
        fi
    done
fi

restic version
# The S3 tests' recipe is Ceph 16 (bookworm's); trixie's Ceph 18 would need a newer libc.
ceph_version=$(ceph-mon --version)
echo "$ceph_version"
case $ceph_version in
"ceph version 16."*) ;;
*)
    if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
        echo "install-deps: Ceph 16 from bookworm expected, found: $ceph_version" >&2
        exit 1
    fi
    echo "install-deps: warning: the S3 tests are verified with Ceph 16, found: $ceph_version" >&2
    ;;
esac
