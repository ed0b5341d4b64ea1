#!/bin/sh
# Starts one machine's part of the deployment from its bundle (`make host-bundle
# HOST=...` or `backup-agent bundle`): the one command an operator runs there, as root
# (or a member of the docker group who owns the bundle).
#   ./up.sh              every service of the machine, waiting until healthy
#   ./up.sh SERVICE...   only these (the disaster-recovery runbook starts MySQL first)
# Secret files are bind-mounted as they are: group 10001 (the agents' `backup` user)
# and mode 0640 in a 0700 directory. The verifier needs the Docker socket's group.
set -eu
cd "$(dirname "$0")"

secrets=compose/secrets
chmod 0700 "$secrets"
chmod 0640 "$secrets"/*
if ! chgrp 10001 "$secrets"/* 2>/dev/null; then
    for file in "$secrets"/*; do
        if [ "$(stat -c %g "$file")" != 10001 ]; then
            echo "up: $file must belong to group 10001 (run ./up.sh as root)" >&2
            exit 1
        fi
    done
fi
if [ -z "${DOCKER_GID:-}" ] && [ -S /var/run/docker.sock ]; then
    DOCKER_GID=$(stat -c %g /var/run/docker.sock)
    export DOCKER_GID
fi
exec docker compose up -d --wait --remove-orphans "$@"
