#!/bin/bash
# Entrypoint of the rest-server service (images/backup-server): builds rest-server's
# htpasswd file from the agents' credential files, then runs rest-server in
# append-only mode. Extra arguments are passed on to restic-rest-server.
#
# Credential files: one per agent, one line `user:password` (the same file the agent
# reads as repository.credentials_file). Found as /run/secrets/rest_* (docker secrets),
# or every regular file in $REST_CREDENTIALS_DIR when that is set. Passwords are hashed
# with bcrypt (htpasswd -B, read from stdin) and never printed or put on a command line.
# The file is rebuilt at every start: restart the service to change credentials.
set -euo pipefail

htpasswd_file=${REST_HTPASSWD_FILE:-/run/rest-server/htpasswd}
cost=${REST_BCRYPT_COST:-10}

die() { echo "rest-server: $*" >&2; exit 1; }

if [ -n "${REST_CREDENTIALS_DIR:-}" ]; then
    [ -d "$REST_CREDENTIALS_DIR" ] || die "REST_CREDENTIALS_DIR=$REST_CREDENTIALS_DIR is not a directory"
    candidates=("$REST_CREDENTIALS_DIR"/*)
else
    candidates=(/run/secrets/rest_*)
fi
files=()
for f in "${candidates[@]}"; do
    [ -f "$f" ] && files+=("$f")
done
[ "${#files[@]}" -gt 0 ] ||
    die "no credential files (/run/secrets/rest_* or \$REST_CREDENTIALS_DIR); refusing to run without authentication"

umask 077
tmp=$(mktemp "$htpasswd_file.XXXXXX")
trap 'rm -f "$tmp"' EXIT
declare -A seen=()
for f in "${files[@]}"; do
    [ -r "$f" ] || die "$f: not readable by uid $(id -u) (make the secret file readable by it)"
    line=
    IFS= read -r line <"$f" || [ -n "$line" ] || die "$f: empty; expected one line user:password"
    line=${line%$'\r'}
    case $line in *:*) ;; *) die "$f: expected one line user:password" ;; esac
    user=${line%%:*}
    password=${line#*:}
    [[ $user =~ ^[A-Za-z0-9._-]+$ ]] || die "$f: user name must be letters, digits, '.', '_' or '-'"
    [ -n "$password" ] || die "$f: empty password for user $user"
    [ -z "${seen[$user]:-}" ] || die "$f: user $user is also defined in ${seen[$user]}"
    seen[$user]=$f
    # printf is a builtin: the password goes through a pipe, never through argv.
    printf '%s\n' "$password" | htpasswd -niB -C "$cost" "$user" | grep -v '^$' >>"$tmp" ||
        die "$f: htpasswd failed for user $user"
done
unset line password
mv -f "$tmp" "$htpasswd_file"
trap - EXIT
echo "rest-server: ${#seen[@]} user(s) from credential files: ${!seen[*]}"

# --prometheus-no-auth: Prometheus scrapes /metrics without the agents' credentials.
# --log -: every request on stdout (docker logs), so that refused deletions (HTTP 403
# in append-only mode: someone with an agent's credentials tried) are on record.
exec restic-rest-server \
    --path /srv/restic \
    --listen :8000 \
    --append-only \
    --log - \
    --prometheus --prometheus-no-auth \
    --htpasswd-file "$htpasswd_file" \
    "$@"
