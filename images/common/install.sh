#!/bin/sh
# Shared build steps of images/agent and images/backup-server (one list, one method).
#   install.sh packages [EXTRA...]  Debian packages every agent image needs, plus EXTRA
#   install.sh agent SRC            the backup_agent package from SRC, the `backup` user
#                                   (uid 10001) and its writable directories
# Only Debian packages are installed: the build works with a Debian mirror and no
# PyPI, and the agent's dependencies come from the same release as restic.
set -eu
export DEBIAN_FRONTEND=noninteractive

# restic >= 0.17 (trixie: 0.18); python3-cronsim and the other libraries are the
# runtime dependencies of pyproject.toml; tzdata for the manifest's time zone;
# python3-cryptography lets pymysql do MySQL 8's caching_sha2_password without TLS.
COMMON="ca-certificates tzdata tini restic python3 python3-yaml python3-pymysql
python3-prometheus-client python3-docker python3-jsonschema python3-cronsim
python3-cryptography"

case "${1:-}" in
packages)
    shift
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting of the list is intended
    apt-get install -y -q --no-install-recommends $COMMON "$@"
    rm -rf /var/lib/apt/lists/*
    restic version
    ;;
agent)
    src=$2
    # pip and setuptools only for this step: --no-deps and --no-build-isolation keep
    # it offline (dependencies are the Debian packages above), then they are removed.
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3-pip python3-setuptools
    pip install --no-deps --no-build-isolation --no-cache-dir --no-compile \
        --break-system-packages --root-user-action=ignore "$src"
    apt-get purge -y -q --autoremove python3-pip python3-setuptools
    rm -rf /var/lib/apt/lists/* "$src"
    # Every import the agent needs must resolve without pip's dependency resolution.
    python3 -c 'import backup_agent.cli, cronsim, docker, jsonschema, prometheus_client, pymysql, yaml'
    backup-agent --version
    # Debian's base-passwd already has a system user `backup` (uid 34): renumber it
    # to 10001 (the uid the compose stack and volumes use) instead of adding another.
    if getent passwd backup >/dev/null; then
        groupmod -g 10001 backup
        usermod -u 10001 -g 10001 -d /var/lib/backup-agent backup
    else
        groupadd -g 10001 backup
        useradd -u 10001 -g 10001 -d /var/lib/backup-agent -s /usr/sbin/nologin backup
    fi
    # State (volume) and the private work directory (manifest's work_dir default).
    install -d -o backup -g backup -m 0750 /var/lib/backup-agent
    install -d -o backup -g backup -m 0700 /var/tmp/backup-agent
    install -d -m 0755 /etc/backup-agent
    ;;
*)
    echo "usage: install.sh packages [EXTRA...] | agent SRC" >&2
    exit 2
    ;;
esac
