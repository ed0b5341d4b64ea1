#!/usr/bin/env bash
# Creates the compose stack's secret files that are missing, with strong random
# values, and never prints them: `backup-agent secrets` for manifests/compose.yaml with
# every role on this one machine, run in the agent image (nothing to install on the
# host). Existing files are kept (delete one to rotate it, then restart the services
# that use it; a MySQL user keeps its password until changed in MySQL too).
# Directory: $SECRETS_DIR, default compose/secrets (git-ignored).
#
#   restic_password_<service>  each service's restic repository password
#   rest_<service>             each sidecar's rest-server user (user = service name)
#   rest_verifier              the verifier's user on the verifier endpoint
#   drill_key                  signs drill records (the verifier and maintenance only)
#   mysql_root_password        MySQL root (admin) password
#   mysql_backup.cnf           [client] option file of the least-privilege `backup` user
#   mysql_restore.cnf          [client] option file for restores (root)
#   grafana_admin_password     Grafana's admin password
#   dashboard_admin_password   the monitoring machine's Grafana (several machines)
#   ca.pem, ca.key             the CA of the backup server's TLS certificate
#   backup-server.pem, .key    that certificate (backup-server, backup-server-verifier)
#   recovery-kit.json          when the last recovery kit was exported (make recovery-kit)
#   s3_<user>                  S3 key pairs (AWS credentials files) of the S3 store's users,
#                              for BACKUP_STORE=s3 or rest+s3 (compose/s3.yml, s3-copy.yml):
#                              <service>_agent, verifier, maintenance, owner, copy
#
# Who can read them: compose bind-mounts secret files as they are on the host, so the
# host file's owner, group and mode are what the containers see. The files belong to
# whoever runs this script, group 10001 (the `backup` user and group of the agent
# images, uid 10001), mode 0640 (ca.key: 0600, mounted nowhere): the agents and
# rest-server read them through their primary group; MySQL, Grafana and Prometheus run
# as their own users with group_add 10001. Nobody else on the host can enter the
# directory (0700).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${SECRETS_DIR:-compose/secrets}
image=${AGENT_IMAGE:-local/backup-agent:dev}
mkdir -p "$dir"
chmod 0700 "$dir"
abs=$(cd "$dir" && pwd)
docker run --rm --network none --user "$(id -u):10001" \
    -v "$abs:$abs" -v "$PWD/manifests/compose.yaml:/etc/backup-agent/manifest.yaml:ro" \
    --entrypoint backup-agent "$image" --log-level warning secrets --dir "$abs" --s3
