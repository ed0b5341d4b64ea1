#!/usr/bin/env bash
# Builds the project images from the repository root:
#   local/backup-agent:dev   images/agent/Dockerfile
#   local/backup-server:dev  images/backup-server/Dockerfile
# BASE: the base image (default: the Dockerfiles' debian:trixie-slim, which needs a
# registry; `make base-images` passes local/debian:trixie). The agent image also takes
# the stack's database image, whose clients it copies: the mysql service's image in the
# compose files (MYSQL_IMAGE, compose/.env; AIRGAP=1: the stand-in). Prints one line per
# image (VERBOSE=1: the whole build output; a failure prints its last lines).
# With BACKUP_STORE=s3 or rest+s3 it also builds the S3 stand-in (S3_IMAGE, default
# local/ceph-rgw:debian, images/standins/ceph-rgw), which no registry serves.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${1:-${BASE:-}}
AGENT_IMAGE=${AGENT_IMAGE:-local/backup-agent:dev}
SERVER_IMAGE=${SERVER_IMAGE:-local/backup-server:dev}

if ! docker info >/dev/null 2>&1; then
    echo "build-images: docker is not answering (start it with scripts/start-dockerd.sh)" >&2
    exit 1
fi

DB_IMAGE=$(scripts/compose.sh config --images mysql)

# shellcheck source=scripts/lib-build.sh
. scripts/lib-build.sh

build() { # build TAG DOCKERFILE [BUILD-ARG...]
    local tag=$1 file=$2
    shift 2
    # --network host: apt inside the build reaches the mirror the host uses.
    quiet_build "$tag" . --network host ${BASE:+--build-arg "BASE=$BASE"} "$@" -f "$file"
}

build "$AGENT_IMAGE" images/agent/Dockerfile --build-arg "DB_IMAGE=$DB_IMAGE"
build "$SERVER_IMAGE" images/backup-server/Dockerfile
s3_image=${S3_IMAGE:-local/ceph-rgw:debian}
if scripts/compose.sh config --images | grep -qxF "$s3_image"; then
    quiet_build "$s3_image" images/standins/ceph-rgw --network host ${BASE:+--build-arg "BASE=$BASE"}
fi
remove_stage_images
