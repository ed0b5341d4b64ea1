# shellcheck shell=bash
# Sourced by scripts/base-images.sh and scripts/build-images.sh: one way to build an
# image quietly. The build's output goes to a log file; only a failure prints it (its
# last lines), so `make up` with every layer cached prints one line per image.
#   quiet_build TAG CONTEXT [DOCKER BUILD ARGS...]
# VERBOSE=1 shows the full output.

quiet_build() {
    local tag=$1 context=$2 started=$SECONDS log status
    shift 2
    if [ -n "${VERBOSE:-}" ]; then
        docker build "$@" -t "$tag" "$context"
        echo "build: $tag built in $((SECONDS - started)) s"
        return
    fi
    log=$(mktemp /tmp/build-log.XXXXXX)
    if docker build "$@" -t "$tag" "$context" >"$log" 2>&1; then
        echo "build: $tag ready in $((SECONDS - started)) s"
        rm -f "$log"
        return
    else
        status=$?
    fi
    tail -n 40 "$log" >&2
    echo "build: $tag FAILED (exit $status); the last 40 lines are above, the whole log is $log" >&2
    return "$status"
}

# Multi-stage builds leave their earlier stages behind as untagged images; the
# Dockerfiles label those stages so that exactly they can be removed.
remove_stage_images() {
    docker image prune --force --filter label=backup-agent.build-stage >/dev/null
}
