# shellcheck shell=bash
# First start of the MySQL container only (/docker-entrypoint-initdb.d): creates the
# backup user of /run/secrets/mysql_backup.cnf ([client] user=..., password=...) with
# the least privileges a consistent dump and binlog shipping need:
#   SELECT, SHOW VIEW, TRIGGER, EVENT on the application database, and routines:
#   MariaDB: SELECT ON mysql.proc   MySQL 8: SHOW_ROUTINE ON *.*
#   binlog shipping (point-in-time recovery): REPLICATION SLAVE (read the binlogs) and
#   BINLOG MONITOR (MariaDB) / REPLICATION CLIENT (MySQL 8) to list them; Oracle's
#   mysqldump also needs RELOAD to record the dump's binlog position (--source-data)
#   the heartbeat: INSERT, UPDATE on the one-row table backup_heartbeat, created here
# Sourced (not executed) by the entrypoint of the official mysql/mariadb images and of
# the MariaDB stand-in, so their SQL helper is available (docker_process_sql in the
# official images, mysql_sql in the stand-in). The password goes to the server in SQL
# on stdin, never on a command line, and is never printed.

backup_cnf=/run/secrets/mysql_backup.cnf
backup_db=${MYSQL_DATABASE:-agama}

if [ ! -r "$backup_cnf" ]; then
    echo "initdb: $backup_cnf is not readable by uid $(id -u) (scripts/secrets.sh sets group 10001, mode 0640)" >&2
    exit 1
fi
# `key = value` of the option file, surrounding quotes removed.
cnf_value() {
    sed -n "/^[[:space:]]*$1[[:space:]]*=/{s/^[^=]*=[[:space:]]*//;p;q;}" "$backup_cnf" |
        sed -e 's/[[:space:]]*$//' -e "s/^[\"']\\(.*\\)[\"']\$/\\1/"
}
backup_user=$(cnf_value user)
backup_password=$(cnf_value password)
if [ -z "$backup_user" ] || [ -z "$backup_password" ]; then
    echo "initdb: $backup_cnf needs user= and password= in its [client] section" >&2
    exit 1
fi
sql_quote() { # a value as an SQL string literal
    local s=${1//\\/\\\\}
    printf "'%s'" "${s//\'/\\\'}"
}

if command -v mariadbd >/dev/null 2>&1; then
    routines="GRANT SELECT ON mysql.proc TO $(sql_quote "$backup_user")@'%';"
    binlogs="GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO $(sql_quote "$backup_user")@'%';"
else
    routines="GRANT SHOW_ROUTINE ON *.* TO $(sql_quote "$backup_user")@'%';"
    binlogs="GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* TO $(sql_quote "$backup_user")@'%';"
fi
if declare -F docker_process_sql >/dev/null; then
    run_sql=docker_process_sql
else
    run_sql=mysql_sql
fi

db=\`${backup_db//\`/\`\`}\`
echo "initdb: creating backup user '$backup_user' (SELECT, SHOW VIEW, TRIGGER, EVENT on $backup_db, routines, binlog shipping, heartbeat)"
"$run_sql" <<SQL
CREATE DATABASE IF NOT EXISTS $db;
CREATE TABLE IF NOT EXISTS $db.backup_heartbeat (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB;
CREATE USER IF NOT EXISTS $(sql_quote "$backup_user")@'%' IDENTIFIED BY $(sql_quote "$backup_password");
GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON $db.* TO $(sql_quote "$backup_user")@'%';
GRANT INSERT, UPDATE ON $db.backup_heartbeat TO $(sql_quote "$backup_user")@'%';
$routines
$binlogs
SQL
unset backup_password routines binlogs
