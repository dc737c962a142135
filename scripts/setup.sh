#!/usr/bin/env bash
# Installs what the connector needs beyond the Swift toolchain: librdkafka-dev (Debian's 2.0.2),
# found through pkg-config, and Python's jsonschema and PyYAML for the schema check. Safe to run again; does nothing when it is already there.
set -euo pipefail

# Python's jsonschema validates the schema examples.
if ! python3 -c "import jsonschema" 2>/dev/null; then
    echo "setup: Python's jsonschema is missing; installing it with pip" >&2
    python3 -m pip install --quiet jsonschema
fi
# PyYAML reads the flow files the schema check validates.
if ! python3 -c "import yaml" 2>/dev/null; then
    echo "setup: Python's PyYAML is missing; installing it with pip" >&2
    python3 -m pip install --quiet pyyaml
fi

if pkg-config --exists rdkafka 2>/dev/null; then
    exit 0
fi
echo "setup: librdkafka-dev is missing; installing it with apt-get" >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq librdkafka-dev pkg-config >/dev/null
pkg-config --exists rdkafka || { echo "setup: librdkafka-dev installed but pkg-config cannot find rdkafka" >&2; exit 1; }
