#!/usr/bin/env bash
# Pulls the images that are not on this host yet, to learn whether a registry serves them:
#   scripts/registry-probe.sh IMAGE...
# Exit 0: every image is here now. Exit 3: no registry is reachable (the network
# failed, not the image); `make up` then uses the air-gapped stand-ins. Exit 1: any
# other failure, such as an image name the registry does not know, which must stop
# `make up` rather than quietly start stand-ins. The reason is one line on stderr.
# A pull is never cut short for being slow: a slow registry is still a registry.
set -euo pipefail

for image in "$@"; do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    if error=$(docker pull -q "$image" 2>&1 >/dev/null); then
        continue
    fi
    echo "docker pull $image: ${error//$'\n'/ }" >&2
    case $error in
    *"no such host"* | *"dial tcp"* | *"i/o timeout"* | *"network is unreachable"* | \
        *"connection refused"* | *"TLS handshake timeout"* | *"Client.Timeout"* | \
        *"server misbehaving"*)
        exit 3
        ;;
    *) exit 1 ;;
    esac
done
