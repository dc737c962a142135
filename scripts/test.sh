#!/usr/bin/env bash
# The README's test command: sets up a fresh machine, then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 scripts/validate-schemas.py   # examples and flows against schemas/*.schema.json
swift build --build-tests
swift build --product connector   # the command tests drive the built executable
swift test --skip-build
