"""Container health check without curl: GET $HEALTHCHECK_URL, exit 0 if the server answers.

Any HTTP status below 500 counts (401 from an authenticated endpoint still proves the
server is up); a refused connection, a timeout or a 5xx makes the container unhealthy.
The agent image checks its metrics (127.0.0.1:9464), the backup-server image its
rest-server (127.0.0.1:8000); a compose service overrides HEALTHCHECK_URL as needed.
"""

import os
import sys
import urllib.error
import urllib.request

url = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:9464/metrics")
try:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - fixed local URL
        status = response.status
except urllib.error.HTTPError as exc:
    status = exc.code
except OSError as exc:
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
if status >= 500:
    print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
    sys.exit(1)
