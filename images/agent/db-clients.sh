#!/bin/sh
# The database image's own client programs, for the agent image (images/agent/Dockerfile).
# Debian packages only MariaDB's clients, whose mysqldump cannot dump MySQL 8 the way
# Oracle's does; the stack's database image ships the right ones, of its own version.
#   db-clients.sh export DIR          in the database image: copies mysqldump, mysql,
#                                     mysqlbinlog, mariadb-dump, mariadb, mariadb-binlog,
#                                     and the physical backup tools mariadb-backup, mbstream,
#                                     xtrabackup, xbstream (those it has) to DIR/bin and
#                                     the shared libraries they need, except glibc's, to DIR/lib
#   db-clients.sh install DIR [BIN]   in the agent image: a wrapper per program in BIN
#                                     (default /usr/local/bin, ahead of Debian's in PATH) that
#                                     runs it with DIR/lib, then checks each one starts
# POSIX sh and coreutils only: the database image may be Oracle Linux or Debian.
set -eu

PROGRAMS="mysqldump mysql mysqlbinlog mariadb-dump mariadb mariadb-binlog mariadb-backup mbstream xtrabackup xbstream"

die() {
    echo "db-clients: $*" >&2
    exit 1
}

# Shared libraries of a program, one path per line, glibc's own left out (the agent
# image's newer glibc serves them). Fails on a library the image does not have.
libraries() {
    if command -v ldd >/dev/null 2>&1; then
        deps=$(ldd "$1" 2>&1) || true
    else # what ldd does, without it
        deps=$(LD_TRACE_LOADED_OBJECTS=1 "$1" 2>&1) || true
    fi
    case $deps in
    *"not found"*) die "$1 needs a library its own image lacks: $deps" ;;
    *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
    esac
    echo "$deps" | while read -r name arrow path _; do
        if [ "$arrow" != "=>" ] || [ -z "$path" ]; then continue; fi
        case $name in
        ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | \
            libresolv.so* | libutil.so* | libanl.so*) ;;
        *) echo "$path" ;;
        esac
    done
}

export_clients() {
    dest=$1
    mkdir -p "$dest/bin" "$dest/lib"
    for name in $PROGRAMS; do
        path=$(command -v "$name") || continue
        cp -L "$path" "$dest/bin/$name"
        libs=$(libraries "$path") || exit 1
        for lib in $libs; do
            cp -L "$lib" "$dest/lib/"
        done
        echo "db-clients: $name from $path"
    done
    if [ ! -e "$dest/bin/mysqldump" ] && [ ! -e "$dest/bin/mariadb-dump" ]; then
        die "the database image has neither mysqldump nor mariadb-dump in its PATH"
    fi
}

install_clients() {
    src=$1 bin=${2:-/usr/local/bin}
    [ -d "$src/bin" ] || die "$src/bin: no exported clients"
    for prog in "$src"/bin/*; do
        name=${prog##*/}
        printf '#!/bin/sh\n# %s of the database image (images/agent/db-clients.sh)\nLD_LIBRARY_PATH=%s exec %s "$@"\n' \
            "$name" "$src/lib" "$prog" >"$bin/$name"
        chmod 0755 "$bin/$name"
        # Proves the program runs here, with these libraries and this glibc (the
        # xbstream unpackers have no --version).
        case $name in
        mbstream | xbstream) "$bin/$name" --help >/dev/null ;;
        *) "$bin/$name" --version ;;
        esac || die "$name of the database image does not run in this image"
    done
}

case "${1:-}" in
export) export_clients "${2:?export DIR}" ;;
install) install_clients "${2:?install DIR [BIN]}" "${3:-}" ;;
*)
    echo "usage: db-clients.sh export DIR | install DIR [BIN]" >&2
    exit 2
    ;;
esac
