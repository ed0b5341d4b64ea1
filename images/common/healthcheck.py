"""Container health check without curl: GET $HEALTHCHECK_URL, exit 0 if the server answers.

Any HTTP status below 500 counts (401 from an authenticated endpoint still proves the
server is up); a refused connection, a timeout or a 5xx makes the container unhealthy.
The agent image checks its metrics (127.0.0.1:9464), the backup-server image its
rest-server (127.0.0.1:8000); a compose service overrides HEALTHCHECK_URL as needed.
An https URL is checked against HEALTHCHECK_CAFILE (a rest-server over TLS: the check
also proves its certificate).
"""

import os
import ssl
import sys
import urllib.error
import urllib.request

url = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:9464/metrics")
context = ssl.create_default_context(cafile=os.environ.get("HEALTHCHECK_CAFILE") or None)
try:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
        status = response.status
except urllib.error.HTTPError as exc:
    status = exc.code
except OSError as exc:
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
if status >= 500:
    print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
    sys.exit(1)
