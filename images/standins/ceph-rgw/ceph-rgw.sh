#!/bin/bash
# Entrypoint of the S3 stand-in (images/standins/ceph-rgw): creates the single-node
# Ceph cluster on the first start, then runs its monitor, OSD and RADOS Gateway, and
# creates or updates the S3 users from the credentials files. Settings (environment):
#   RGW_PORT=7480          the gateway's port (HTTP)
#   METRICS_PORT=9283      Prometheus target: up while the gateway answers (s3-metrics.py)
#   OSD_SIZE_GB=20         size of the OSD's BlueStore file (sparse: grows as data comes)
#   S3_CREDENTIALS=/run/secrets/s3_*   AWS credentials files, one per user: s3_NAME
#                          makes user NAME (underscores become dashes), keys from [default]
#   S3_BUCKET_CREATORS=maintenance     users that may create buckets (the others may not)
# The container is healthy once the gateway answers and the users exist (file ready).
set -euo pipefail

dir=/var/lib/ceph-standin
conf=$dir/ceph.conf
port=${RGW_PORT:-7480}
size_gb=${OSD_SIZE_GB:-20}
say() { echo "ceph-rgw: $*"; }

rm -f "$dir/ready"
if [ ! -e "$dir/created" ]; then
    say "first start: creating the cluster in $dir"
    rm -rf "${dir:?}"/*
    fsid=$(cat /proc/sys/kernel/random/uuid)
    # Debian's default is a relative path, which the OSD resolves from its working directory.
    classes=$(echo /usr/lib/*/rados-classes)
    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:3300
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log to stderr = false
err to stderr = true
log file = /dev/null
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 1
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = $dir/mon.\$id

[osd]
osd data = $dir/osd.\$id
osd class dir = $classes
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $((size_gb * 1024 * 1024 * 1024))
bluestore block db create = false
bluestore block wal create = false
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728

[client]
ms mon client mode = crc

[client.rgw.a]
rgw frontends = beast endpoint=0.0.0.0:$port
rgw data = $dir/rgw.a
CONF
    mkdir -p "$dir/run" "$dir/rgw.a"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:3300]" "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap"
fi
mkdir -p "$dir/run"

ceph-mon -c "$conf" -i a -f &
if [ ! -e "$dir/created" ]; then
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph -c "$conf" --connect-timeout 60 osd new "$uuid")
    mkdir -p "$dir/osd.$id"
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid"
    echo "$id" >"$dir/osd-id"
fi
ceph-osd -c "$conf" -i "$(cat "$dir/osd-id")" -f &
for _ in $(seq 300); do
    up=$(ceph -c "$conf" --connect-timeout 10 osd stat -f json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])' 2>/dev/null || echo 0)
    [ "$up" -ge 1 ] && break
    sleep 0.5
done
touch "$dir/created"

radosgw -c "$conf" -n client.rgw.a -f &
for _ in $(seq 300); do
    python3 -c "import urllib.request as u, urllib.error as e
try: u.urlopen('http://127.0.0.1:$port/', timeout=2)
except e.HTTPError: pass" 2>/dev/null && break
    sleep 0.5
done

shopt -s nullglob
# shellcheck disable=SC2206 # a glob, split on purpose
files=(${S3_CREDENTIALS:-/run/secrets/s3_*})
s3-users.py "$conf" "${S3_BUCKET_CREATORS:-maintenance}" "${files[@]}"
s3-metrics.py "${METRICS_PORT:-9283}" "$port" &
touch "$dir/ready"
say "S3 on port $port, users: ${#files[@]}; /metrics on port ${METRICS_PORT:-9283}"

# Any daemon ending ends the container (compose restarts it).
wait -n
say "a daemon ended; stopping"
exit 1
