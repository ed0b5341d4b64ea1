#!/usr/bin/env bash
# `make up`: checks for a Docker engine, decides between registry images and the
# air-gapped stand-ins, builds the project images, creates missing secrets, starts the
# stack and waits until every service is healthy, then says where things are.
#
#   AIRGAP=1 / AIRGAP=0   skip the registry probe and use / do not use the stand-ins
#   SKIP_BUILD=1          use the images as they are (no docker build)
# The choice is remembered in compose/.airgap for scripts/compose.sh (make ps, logs...).
set -euo pipefail
cd "$(dirname "$0")/.."
make=${MAKE:-make}

say() { echo "up: $*"; }

# 1. A Docker engine and Compose v2.
if ! command -v docker >/dev/null 2>&1; then
    say "Docker is not installed: run 'sudo make deps' (Debian's docker.io and docker compose)" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        bash scripts/start-dockerd.sh
    else
        say "the Docker engine is not answering: start it (sudo systemctl start docker, or sudo bash scripts/start-dockerd.sh) or add yourself to the docker group" >&2
        exit 1
    fi
fi
if ! docker compose version >/dev/null 2>&1; then
    say "Docker Compose v2 (docker compose) is missing: run 'sudo make deps'" >&2
    exit 1
fi

# 2. Registry or air gap: the third-party images, the database's first, are pulled
# unless present; an unreachable registry means stand-ins, any other failure stops.
airgap=${AIRGAP:-}
if [ -z "$airgap" ]; then
    airgap=0
    images=$(AIRGAP=0 scripts/compose.sh config --images | grep -v '^local/' | sort -u)
    say "pulling what is missing of: ${images//$'\n'/ }"
    # shellcheck disable=SC2046 # one image name per word
    if reason=$(scripts/registry-probe.sh $(grep mysql <<<"$images"; grep -v mysql <<<"$images") 2>&1); then
        :
    elif [ $? -eq 3 ]; then
        airgap=1
        say "no container registry reachable ($reason)."
    else
        say "$reason" >&2
        say "a registry answered but the pull failed: fix that (an image name in compose/.env?)," >&2
        say "or set AIRGAP=1 to use the stand-ins" >&2
        exit 1
    fi
fi
if [ "$airgap" = 1 ]; then
    say "building the air-gapped images and using the stand-ins of compose/airgap.yml:"
    say "  MariaDB 11.8 standing in for mysql:8.4, Debian's Prometheus and Alertmanager for"
    say "  prom/prometheus and prom/alertmanager,"
    say "  and for Grafana a TEST STAND-IN (tests/e2e/grafana-standin): not Grafana, no UI."
    touch compose/.airgap
    [ -n "${SKIP_BUILD:-}" ] || "$make" --no-print-directory base-images
else
    rm -f compose/.airgap
    [ -n "${SKIP_BUILD:-}" ] || "$make" --no-print-directory images
fi
export AIRGAP=$airgap

# 3. Secrets (only the missing ones are created; nothing is printed).
bash scripts/secrets.sh

# 4. Start and wait for every health check (and the one-shot repository init).
scripts/compose.sh up -d --wait --remove-orphans

# 5. Where things are.
url() { # url SERVICE PORT: the published address, as http://HOST:PORT
    local address
    address=$(scripts/compose.sh port "$1" "$2" 2>/dev/null | head -n 1)
    echo "http://${address/0.0.0.0/localhost}"
}
echo
say "the stack is up:"
if [ "$airgap" = 1 ]; then
    say "  Grafana TEST STAND-IN: $(url grafana 3000)  (API only: /api/health, /api/search)"
else
    say "  Grafana:    $(url grafana 3000)  (user admin, password in compose/secrets/grafana_admin_password)"
fi
say "  Prometheus: $(url prometheus 9090)"
say "  Alertmanager: $(url alertmanager 9093)  (add receivers in compose/alertmanager/alertmanager.yml)"
say "  make plan          next runs and restore points"
say "  make snapshots     what the repository holds"
say "  make restore-test  restore drills now (verifier)"
