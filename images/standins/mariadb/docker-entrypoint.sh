#!/bin/bash
# Entrypoint of the MariaDB stand-in, modelled on the official mariadb/mysql images:
#   - `docker run IMAGE --innodb-buffer-pool-size=1G`: arguments starting with '-'
#     are passed to mariadbd (`mysqld` is accepted as an alias); any other command runs as is;
#   - first start (empty data directory): root password from MARIADB_ROOT_PASSWORD or
#     MYSQL_ROOT_PASSWORD (or *_ROOT_PASSWORD_FILE), or none with
#     MARIADB_ALLOW_EMPTY_ROOT_PASSWORD / MYSQL_ALLOW_EMPTY_PASSWORD; root@'%' (or
#     *_ROOT_HOST); optional MARIADB_DATABASE / MYSQL_DATABASE and MARIADB_USER /
#     MYSQL_USER with *_PASSWORD(_FILE); then /docker-entrypoint-initdb.d/*.sql,
#     *.sql.gz and *.sh in name order; a privilege-less `healthcheck` account for
#     HEALTHCHECK (credentials in $datadir/.healthcheck.cnf, mode 0600).
# Passwords reach the client through its environment (MYSQL_PWD) or stdin, never argv.
set -euo pipefail

log() { echo "[entrypoint] $*"; }
die() { echo "[entrypoint] error: $*" >&2; exit 1; }

# pick NAME [DEFAULT]: MARIADB_NAME, else MYSQL_NAME, each also as NAME_FILE.
pick() {
    local var file
    for var in "MARIADB_$1" "MYSQL_$1"; do
        file="${var}_FILE"
        if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
            die "both $var and $file are set; use one"
        fi
        if [ -n "${!var:-}" ]; then printf '%s' "${!var}"; return; fi
        if [ -n "${!file:-}" ]; then
            [ -r "${!file}" ] || die "$file: ${!file} is not readable"
            printf '%s' "$(<"${!file}")"
            return
        fi
    done
    printf '%s' "${2:-}"
}

sql_string() { # a value as a quoted SQL string literal
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\'/\\\'}
    printf "'%s'" "$s"
}
sql_name() { # an identifier in backquotes
    # shellcheck disable=SC2016 # literal backquotes
    printf '`%s`' "${1//\`/\`\`}"
}

if [ "${1:0:1}" = '-' ]; then
    set -- mariadbd "$@"
fi
if [ "$1" = mysqld ]; then
    shift
    set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ]; then
    exec "$@"
fi
for arg in "${@:2}"; do
    case $arg in
    --help | -'?' | --version | -V | --print-defaults) exec "$@" ;;
    esac
done

datadir=/var/lib/mysql
for arg in "${@:2}"; do
    case $arg in --datadir=*) datadir=${arg#--datadir=} ;; esac
done
run_as=()
if [ "$(id -u)" = 0 ]; then
    # Started as root: mariadbd switches to the mysql user itself.
    run_as=(--user=mysql)
    install -d -o mysql -g mysql "$datadir" /run/mysqld
fi

if [ ! -d "$datadir/mysql" ]; then
    root_password=$(pick ROOT_PASSWORD)
    allow_empty=$(pick ALLOW_EMPTY_ROOT_PASSWORD)
    [ -n "$allow_empty" ] || allow_empty=${MYSQL_ALLOW_EMPTY_PASSWORD:-}
    if [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
        die "database is uninitialized and no root password is set: use MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD, *_FILE) or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD"
    fi
    root_host=$(pick ROOT_HOST '%')
    database=$(pick DATABASE)
    user=$(pick USER)
    user_password=$(pick PASSWORD)
    if [ "$user" = root ]; then
        die "MARIADB_USER/MYSQL_USER=root: root is set up with the ROOT_PASSWORD variables"
    fi
    if [ -n "$user" ] && [ -z "$user_password" ]; then
        die "MARIADB_USER/MYSQL_USER is set without MARIADB_PASSWORD/MYSQL_PASSWORD"
    fi

    log "initializing $datadir"
    install_log=$(mktemp)
    mariadb-install-db "${run_as[@]}" --datadir="$datadir" "${@:2}" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
        --default-time-zone=SYSTEM --skip-log-bin --expire-logs-days=0 \
        --loose-innodb_buffer_pool_load_at_startup=0 --loose-innodb_buffer_pool_dump_at_shutdown=0 \
        >"$install_log" 2>&1 || { cat "$install_log" >&2; die "mariadb-install-db failed"; }
    rm -f "$install_log"

    # A temporary server on a private socket and no TCP port: nobody (not even the
    # health check) sees the server before initialization has finished.
    socket=/run/mysqld/init.sock
    "$@" "${run_as[@]}" --skip-networking --socket="$socket" --default-time-zone=SYSTEM \
        --skip-log-bin --loose-innodb_buffer_pool_load_at_startup=0 &
    pid=$!
    client=(mariadb --protocol=socket --socket="$socket" --user=root --batch --skip-column-names)
    for _ in $(seq 60); do
        if MYSQL_PWD='' "${client[@]}" -e 'SELECT 1' >/dev/null 2>&1; then break; fi
        kill -0 "$pid" 2>/dev/null || die "the temporary server exited during initialization"
        sleep 1
    done
    MYSQL_PWD='' "${client[@]}" -e 'SELECT 1' >/dev/null || die "the temporary server did not start in 60 s"

    health_password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077 && printf '[client]\nuser=healthcheck\npassword=%s\nprotocol=socket\nsocket=/run/mysqld/mysqld.sock\n' \
        "$health_password" >"$datadir/.healthcheck.cnf")

    # Users and databases, as the official images create them. SQL goes through stdin.
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
        # Only root@localhost and root@ROOT_HOST remain; no anonymous users.
        echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1', ''@'localhost';"
        printf "%s\n" "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
        printf "%s\n" "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS \\'\\'@\\'', @@hostname, '\\'');"
        echo "SET PASSWORD FOR 'root'@'localhost' = PASSWORD($(sql_string "$root_password"));"
        if [ "$root_host" != localhost ]; then
            echo "CREATE USER 'root'@$(sql_string "$root_host") IDENTIFIED BY $(sql_string "$root_password");"
            echo "GRANT ALL ON *.* TO 'root'@$(sql_string "$root_host") WITH GRANT OPTION;"
            echo "GRANT PROXY ON ''@'%' TO 'root'@$(sql_string "$root_host") WITH GRANT OPTION;"
        fi
        if [ -n "$database" ]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$database");"
        fi
        if [ -n "$user" ]; then
            echo "CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$user_password");"
            if [ -n "$database" ]; then
                echo "GRANT ALL ON $(sql_name "$database").* TO $(sql_string "$user")@'%';"
            fi
        fi
        # The health check's account: no privileges, socket only, random password.
        echo "CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY $(sql_string "$health_password");"
        echo "FLUSH PRIVILEGES;"
    } | MYSQL_PWD='' "${client[@]}" || die "setting up users and databases failed"

    # For the init scripts: `mysql_sql` / `mariadb_sql` run SQL from stdin as root.
    mariadb_sql() { MYSQL_PWD=$root_password "${client[@]}" ${database:+"--database=$database"} "$@"; }
    mysql_sql() { mariadb_sql "$@"; }
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case $f in
        *.sh)
            log "running $f"
            # shellcheck disable=SC1090 # sourced like the official images do
            if [ -x "$f" ]; then "$f"; else . "$f"; fi
            ;;
        *.sql)
            log "running $f"
            mariadb_sql <"$f" || die "$f failed"
            ;;
        *.sql.gz)
            log "running $f"
            gzip -dc "$f" | mariadb_sql || die "$f failed"
            ;;
        *) log "ignoring $f" ;;
        esac
    done

    kill -TERM "$pid"
    wait "$pid" || die "the temporary server did not stop cleanly"
    log "initialization finished"
fi

# The server needs none of the passwords in its environment.
unset MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD MARIADB_PASSWORD MYSQL_PASSWORD root_password user_password health_password
exec "$@" "${run_as[@]}"
