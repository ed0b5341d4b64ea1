#!/usr/bin/env bash
# Starts the Docker engine in the background when it is not answering (CI machines
# and fresh hosts have no init system running it), then waits up to 60 s for it.
# Does nothing when `docker info` already works. Log: /var/log/dockerd.log.
set -euo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "start-dockerd: dockerd not found; run 'sudo make deps' first" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "start-dockerd: docker is not running and only root can start it" >&2
    exit 1
fi

log=${DOCKERD_LOG:-/var/log/dockerd.log}
# setsid: the daemon outlives this script and the make that ran it.
setsid dockerd >>"$log" 2>&1 </dev/null &

for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "start-dockerd: docker is running (log: $log)"
        exit 0
    fi
    sleep 1
done
echo "start-dockerd: dockerd did not answer within 60 s; see $log" >&2
exit 1
