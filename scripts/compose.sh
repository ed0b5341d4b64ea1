#!/usr/bin/env bash
# `docker compose` for the stack, from anywhere, with the same files every time:
#   compose/docker-compose.yml  (it includes the role files of compose/hosts/)
#   + compose/airgap.yml   when `make up` chose the stand-ins (marker compose/.airgap),
#                          or AIRGAP=1 (AIRGAP=0: never)
#   + compose/s3.yml       BACKUP_STORE=s3: the repositories on S3 (the Ceph RGW stand-in),
#                          manifest manifests/compose-s3.yaml
#   + compose/s3-copy.yml  BACKUP_STORE=rest+s3: rest-server, and a second copy on S3,
#                          manifest manifests/compose-s3-copy.yaml
#   + $STACK_FILES         extra override files, colon-separated (the e2e test's)
# and DOCKER_GID, the group of the Docker socket, which the verifier (the only service
# with Docker access) is given: compose refuses to run without it. Variables from
# compose/.env apply as usual.
#   scripts/compose.sh ps | logs | exec verifier backup-agent drill | down ...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

files=(-f "$root/compose/docker-compose.yml")
case ${AIRGAP:-} in
1) files+=(-f "$root/compose/airgap.yml") ;;
0) ;;
*) if [ -e "$root/compose/.airgap" ]; then files+=(-f "$root/compose/airgap.yml"); fi ;;
esac
# BACKUP_STORE from the environment, else from compose/.env (default: rest).
store=${BACKUP_STORE:-}
if [ -z "$store" ] && [ -e "$root/compose/.env" ]; then
    store=$(sed -n 's/^BACKUP_STORE=//p' "$root/compose/.env" | tail -n 1)
fi
case ${store:-rest} in
rest) ;;
s3)
    files+=(-f "$root/compose/s3.yml")
    export MANIFEST=${MANIFEST:-$root/manifests/compose-s3.yaml}  # the role files' config
    ;;
rest+s3)
    files+=(-f "$root/compose/s3-copy.yml")
    export MANIFEST=${MANIFEST:-$root/manifests/compose-s3-copy.yaml}
    ;;
*) echo "compose.sh: BACKUP_STORE must be rest, s3 or rest+s3, not '$store'" >&2; exit 2 ;;
esac
if [ -n "${STACK_FILES:-}" ]; then
    IFS=: read -ra extra <<<"$STACK_FILES"
    for file in "${extra[@]}"; do files+=(-f "$file"); done
fi

socket=${DOCKER_SOCKET:-/var/run/docker.sock}
if [ -z "${DOCKER_GID:-}" ] && [ -S "$socket" ]; then
    DOCKER_GID=$(stat -c %g "$socket")
    export DOCKER_GID
fi
# compose resolves a relative SECRETS_DIR against compose/hosts/; make it the caller's.
if [ -n "${SECRETS_DIR:-}" ]; then
    SECRETS_DIR=$(cd "$SECRETS_DIR" && pwd)
    export SECRETS_DIR
fi

exec docker compose "${files[@]}" "$@"
