#!/usr/bin/env bash
# Every test tier, as `make test` (and CI) runs them: the end-to-end tests, which mostly
# wait on schedules and containers, run beside the unit, integration and fault tiers,
# so that the whole run takes about as long as the longer of the two. The end-to-end
# output is printed when both are done; the exit status fails if either failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
pytest=${PYTEST:-.venv/bin/pytest}
log=$(mktemp /tmp/backup-agent-e2e.XXXXXX)
trap 'rm -f "$log"' EXIT

"$pytest" tests/e2e -p no:cacheprovider >"$log" 2>&1 &
e2e=$!
"$pytest" tests/unit tests/integration tests/faults -p no:cacheprovider
rest=$?
wait "$e2e"
ended=$?
echo "--- end-to-end tests (tests/e2e) ---"
cat "$log"
echo "unit, integration and faults: exit $rest; end-to-end: exit $ended"
[ "$rest" -eq 0 ] && [ "$ended" -eq 0 ]
