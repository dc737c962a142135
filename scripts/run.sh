#!/usr/bin/env bash
# The README's run command: sets up a fresh machine, builds, and starts the connector.
# Until `connector dev` lands it starts the embedded broker with the connector's topics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --product connector
exec .build/debug/connector "${@:-broker}"
