#!/bin/sh
# Health check of the MariaDB stand-in: ping the server on its normal socket with the
# privilege-less account the entrypoint created (credentials in the data directory).
# The first-start initialization uses another socket, so it never counts as healthy.
# A data directory initialized elsewhere has no such file: ping over TCP instead,
# which exits 0 when the server answers, even with "access denied".
cnf=/var/lib/mysql/.healthcheck.cnf
if [ -r "$cnf" ]; then
    exec mariadb-admin --defaults-extra-file="$cnf" --connect-timeout=3 ping
fi
exec mariadb-admin --protocol=tcp --host=127.0.0.1 --port=3306 --connect-timeout=3 ping
