#!/usr/bin/python3
"""Create or update the stand-in's S3 users from AWS credentials files, with the key
pairs in them: usage s3-users.py CEPH_CONF CREATORS FILE...

FILE is named s3_NAME: user NAME (underscores become dashes) gets the [default] key
pair of the file. CREATORS (comma-separated) may create buckets; nobody else may. The
keys travel to radosgw-admin on stdin (metadata put), never on a command line.
"""

import configparser
import json
import subprocess
import sys
from pathlib import Path


def admin(conf: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["radosgw-admin", "-c", conf, "-n", "client.admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main(conf: str, creators: str, files: list[str]) -> None:
    allowed = {name.strip() for name in creators.split(",") if name.strip()}
    # The whole user record RGW expects, from a throwaway user (its keys go with it).
    admin(conf, "user", "create", "--uid", "template", "--display-name", "template")
    template = json.loads(admin(conf, "metadata", "get", "user:template"))
    admin(conf, "user", "rm", "--uid", "template")
    for path in files:
        uid = Path(path).name.removeprefix("s3_").replace("_", "-")
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        profile = parser["default"]
        doc = json.loads(json.dumps(template))
        doc.pop("ver", None)
        doc.pop("mtime", None)
        doc["key"] = f"user:{uid}"
        data = doc["data"]
        data.update(user_id=uid, display_name=uid, max_buckets=1000 if uid in allowed else -1)
        data["keys"] = [
            {
                "user": uid,
                "access_key": profile["aws_access_key_id"].strip(),
                "secret_key": profile["aws_secret_access_key"].strip(),
            }
        ]
        admin(conf, "metadata", "put", f"user:{uid}", stdin=json.dumps(doc))
        print(f"s3-users: {uid}{' (may create buckets)' if uid in allowed else ''}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
