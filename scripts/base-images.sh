#!/usr/bin/env bash
# Air-gapped image builds: no container registry is reachable, only Debian mirrors.
# Creates the base image local/debian:trixie with debootstrap (once; FORCE_BASE=1
# rebuilds it), then builds the stand-ins for images that cannot be pulled:
#   local/mariadb:11.8       stand-in for mysql:8.4 / mariadb (images/standins/mariadb)
#   local/mariadb:10.11      the same on local/debian:bookworm: the physical drill of the
#                            hosts' MariaDB 10.11 (tests/integration/test_mysql_physical.py)
#   local/prometheus:debian  stand-in for prom/prometheus     (images/standins/prometheus)
#   local/alertmanager:debian stand-in for prom/alertmanager (images/standins/alertmanager)
#   local/ceph-rgw:debian    stand-in for an S3 store: Ceph's RADOS Gateway, single node
#                            (images/standins/ceph-rgw; BACKUP_STORE=s3 or rest+s3)
#   local/grafana-standin:dev TEST STAND-IN for grafana/grafana, not Grafana
#                            (tests/e2e/grafana-standin: Grafana's SQLite layout, 3 API calls)
# Idempotent; starts nothing (scripts/start-dockerd.sh does). The project images are
# built by scripts/build-images.sh (make base-images runs both).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-local/debian:trixie}
SUITE=trixie
# MariaDB 10.11 (bookworm's, the series of the hosts' servers): the physical drill
# prepares a copy only with a mariadb-backup of the backed-up server's series.
OLD_BASE_IMAGE=local/debian:bookworm
OLD_SUITE=bookworm

if ! docker info >/dev/null 2>&1; then
    echo "base-images: docker is not answering (start it with scripts/start-dockerd.sh)" >&2
    exit 1
fi

# The host's own mirror (first URIs: line), so the build works wherever apt does.
sources=/etc/apt/sources.list.d/debian.sources
mirror=$(awk '/^URIs:/ {print $2; exit}' "$sources" 2>/dev/null || true)
if [ -z "$mirror" ]; then
    echo "base-images: no URIs: line in $sources; cannot pick a Debian mirror" >&2
    exit 1
fi
# The security archive, if the host uses one: the URIs of a stanza whose Suites
# name a *-security suite.
security=$(awk 'BEGIN {RS=""} /Suites:[^\n]*-security/ {
    match($0, /URIs:[ \t]*[^ \t\n]+/); split(substr($0, RSTART, RLENGTH), f, /[ \t]+/); print f[2]; exit }' \
    "$sources" || true)

build_base() { # build_base SUITE IMAGE
    local SUITE=$1 BASE_IMAGE=$2
    command -v debootstrap >/dev/null || { echo "base-images: debootstrap missing (make deps)" >&2; exit 1; }
    local root started
    root=$(mktemp -d /var/tmp/base-image.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    started=$SECONDS
    echo "base-images: debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
        tail -n 20 "$root.log" >&2
        echo "base-images: debootstrap failed (log: $root.log)" >&2
        exit 1
    }
    rm -f "$root.log"
    # apt sources in deb822 form, like the official debian images.
    rm -f "$root/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" "$SUITE" "$SUITE"
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$security" "$SUITE"
        fi
    } >"$root/etc/apt/sources.list.d/debian.sources"
    # Slim like debian:*-slim: no docs, man pages or translations; apt keeps no caches.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
CFG
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar --numeric-owner -C "$root" -c . |
        docker import --change 'CMD ["bash"]' --message "debootstrap $SUITE minbase" - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    trap - EXIT
    echo "base-images: $BASE_IMAGE created in $((SECONDS - started)) s"
}

# shellcheck source=scripts/lib-build.sh
. scripts/lib-build.sh

build() { # build TAG CONTEXT [DOCKERFILE]: one image on the base image
    local tag=$1 dir=$2 file=${3:-}
    quiet_build "$tag" "$dir" --network host --build-arg "BASE=$BASE_IMAGE" ${file:+-f "$file"}
}

ensure_base() { # ensure_base SUITE IMAGE
    if [ -n "${FORCE_BASE:-}" ] || ! docker image inspect "$2" >/dev/null 2>&1; then
        build_base "$1" "$2"
    else
        echo "base-images: $2 exists (FORCE_BASE=1 rebuilds it)"
    fi
}

ensure_base "$SUITE" "$BASE_IMAGE"
ensure_base "$OLD_SUITE" "$OLD_BASE_IMAGE"
build local/mariadb:11.8 images/standins/mariadb
quiet_build local/mariadb:10.11 images/standins/mariadb --network host --build-arg "BASE=$OLD_BASE_IMAGE"
build local/prometheus:debian images/standins/prometheus
build local/alertmanager:debian images/standins/alertmanager
build "${S3_IMAGE:-local/ceph-rgw:debian}" images/standins/ceph-rgw
# From the repository root: it copies tests/grafana_db.py.
build local/grafana-standin:dev . tests/e2e/grafana-standin/Dockerfile
