#!/usr/bin/env bash
# The README's run command: sets up a fresh machine, builds, and starts `connector dev` (the
# embedded Kafka cluster, the three services and the 8x8 simulator with its console).
# Other arguments run another subcommand, e.g. `scripts/run.sh lag --watch --bootstrap-file F`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --product connector
exec .build/debug/connector "${@:-dev}"
