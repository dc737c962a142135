#!/usr/bin/env bash
# The README's test command: sets up a fresh machine, then checks the schemas and the deployment
# files, builds, runs every test, and runs the console's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
python3 scripts/validate-schemas.py   # examples and flows against schemas/*.schema.json
bash scripts/check-deploy.sh          # docker-compose.yml, alert rules, Kubernetes files
swift build --build-tests
swift build --product connector       # the command tests and the browser test drive the built executable
# A run past the limit (about six minutes is usual) fails with the tests in progress and every
# thread's stack, instead of running silently into CI's own limit.
python3 scripts/watchdog.py "${TEST_TIME_LIMIT:-1800}" swift test --skip-build
python3 scripts/browser-test.py       # headless Chromium on `connector dev`'s console
