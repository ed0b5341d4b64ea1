#!/usr/bin/env bash
# Creates the compose stack's secret files that are missing, with strong random
# values, and never prints them. Existing files are kept (delete one to rotate it,
# then restart the services that use it; a MySQL user keeps its password until
# changed in MySQL too). Directory: $SECRETS_DIR, default compose/secrets (git-ignored).
#
#   restic_password          restic repository password
#   mysql_root_password      MySQL root (admin) password
#   mysql_backup.cnf         [client] option file of the least-privilege `backup` user
#   mysql_restore.cnf        [client] option file for restores (root)
#   grafana_admin_password   Grafana's admin password
#   rest_<agent>             rest-server credentials, one line user:password per agent
#   s3_<user>                S3 key pairs (AWS credentials files) of the S3 store's users
#                            (BACKUP_STORE=s3 or rest+s3: compose/s3.yml, s3-copy.yml)
#   drill_key                signs drill records (the verifier and maintenance only)
#
# Who can read them: compose bind-mounts secret files as they are on the host, so the
# host file's owner, group and mode are what the containers see. The files stay owned
# by whoever runs this script, get group 10001 (the `backup` user and group of the
# agent images, uid 10001) and mode 0640: the agents and rest-server read them through
# their primary group; MySQL and Grafana run as their own users with group_add 10001.
# Nobody else on the host can enter the directory (0700). Without the right to chgrp
# (not root, not in group 10001), the group is set from a throwaway container of the
# agent image (the Docker engine is root anyway).
set -euo pipefail
shopt -s lastpipe  # `... | create NAME` runs create in this shell (it records names)
cd "$(dirname "$0")/.."

dir=${SECRETS_DIR:-compose/secrets}
group=10001
agents=(mysql_agent grafana_agent files_agent verifier)
s3_users=(maintenance mysql_agent grafana_agent files_agent verifier owner copy)

random() { # 64 hex digits (256 bits): safe in option files, SQL and user:password lines
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -hex 32
    else
        python3 -c 'import secrets; print(secrets.token_hex(32))'
    fi
}

# create NAME: write stdin to DIR/NAME unless it exists (atomically, private until done).
created=()
create() {
    local path=$dir/$1
    if [ -e "$path" ]; then
        cat >/dev/null
        return
    fi
    (umask 077 && cat >"$path.tmp") && mv -f "$path.tmp" "$path"
    created+=("$1")
}

mkdir -p "$dir"
chmod 0700 "$dir"

random | create restic_password
random | create mysql_root_password
random | create grafana_admin_password
random | create drill_key
printf '[client]\nuser=backup\npassword=%s\n' "$(random)" | create mysql_backup.cnf
# Restores load dumps with DEFINER clauses, routines and events: the admin account.
printf '[client]\nuser=root\npassword=%s\n' "$(cat "$dir/mysql_root_password")" | create mysql_restore.cnf
for agent in "${agents[@]}"; do
    printf '%s:%s\n' "${agent//_/-}" "$(random)" | create "rest_$agent"
done
for user in "${s3_users[@]}"; do  # access key: 20 upper-case hex digits, as AWS's look
    printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
        "$(random | cut -c1-20 | tr 'a-f' 'A-F')" "$(random)" | create "s3_$user"
done

files=(restic_password mysql_root_password grafana_admin_password drill_key mysql_backup.cnf mysql_restore.cnf)
files+=("${agents[@]/#/rest_}" "${s3_users[@]/#/s3_}")
paths=("${files[@]/#/$dir/}")
chmod 0640 "${paths[@]}"
if ! chgrp "$group" "${paths[@]}" 2>/dev/null; then
    image=${AGENT_IMAGE:-local/backup-agent:dev}
    abs=$(cd "$dir" && pwd)
    docker run --rm --network none --user 0 --entrypoint chgrp -v "$abs:/secrets" "$image" \
        "$group" "${files[@]/#//secrets/}"
fi

if [ "${#created[@]}" -gt 0 ]; then
    echo "secrets: created ${created[*]} in $dir (group $group, mode 0640)"
else
    echo "secrets: all present in $dir"
fi
