#!/usr/bin/env bash
# Makes sure the system packages are there before `make test` or `make up`:
# installs them (scripts/install-deps.sh) when something is missing and we are root,
# or says in one line what to run otherwise. Quiet when all is present.
set -euo pipefail

missing=()
for tool in restic restic-rest-server mariadbd mariadb-install-db mariadb mariadb-backup mbstream sqlite3 promtool prometheus docker dockerd debootstrap shellcheck \
    ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph faketime openssl; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if command -v restic >/dev/null 2>&1; then
    # restic >= 0.17 is required; bookworm's own 0.14 does not count.
    version=$(restic version | awk '{print $2}')
    if [ "$(printf '%s\n0.17.0\n' "$version" | sort -V | head -n1)" != "0.17.0" ]; then
        missing+=("restic>=0.17 (found $version)")
    fi
fi
if docker compose version >/dev/null 2>&1; then :; else missing+=("docker compose"); fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    echo "ensure-deps: installing missing system packages (${missing[*]})"
    exec bash "$(dirname "$0")/install-deps.sh"
fi
echo "ensure-deps: missing ${missing[*]}: run 'sudo make deps' first" >&2
exit 1
