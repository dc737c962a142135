#!/usr/bin/env bash
# Installs what the connector needs beyond the Swift toolchain, saying what it installs; does
# nothing for what is already there.
#
#   scripts/setup.sh          to run:  librdkafka-dev (Debian's 2.0.2), found through pkg-config,
#                             and libmimalloc-dev (the connector's memory allocator)
#   scripts/setup.sh --test   to test: also Python's jsonschema, PyYAML and websocket-client,
#                             Debian's chromium (the console's browser test), prometheus
#                             (promtool checks the alert rules) and gdb (a hung test run's
#                             stacks, scripts/watchdog.py), and, in .build/deploy-tools,
#                             docker-compose (checks docker-compose.yml) and kubernetes-validate,
#                             each in a Python virtual environment of its own
#   scripts/setup.sh --bench  to benchmark: also wrk (IngressBenchmark's load tool) and perf
#                             (the profiles in BENCHMARKS.md), without the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
testing=false
benchmarking=false
if [ "${1:-}" = "--test" ]; then testing=true; fi
if [ "${1:-}" = "--bench" ]; then benchmarking=true; fi

apt_packages=()
if ! pkg-config --exists rdkafka 2>/dev/null; then
    echo "setup: librdkafka-dev is missing; installing it with apt-get" >&2
    apt_packages+=(librdkafka-dev pkg-config)
fi
if [ ! -e /usr/include/mimalloc.h ]; then
    echo "setup: libmimalloc-dev is missing (the connector's memory allocator); installing it with apt-get" >&2
    apt_packages+=(libmimalloc-dev)
fi
if $testing; then
    if ! command -v chromium >/dev/null 2>&1; then
        echo "setup: chromium is missing (the console's browser test); installing it with apt-get" >&2
        apt_packages+=(chromium)
    fi
    if ! command -v gdb >/dev/null 2>&1; then
        echo "setup: gdb is missing (scripts/watchdog.py prints a hung test run's stacks with it); installing it with apt-get" >&2
        apt_packages+=(gdb)
    fi
    if ! command -v promtool >/dev/null 2>&1; then
        echo "setup: promtool is missing (checks the alert rules); installing Debian's prometheus with apt-get" >&2
        apt_packages+=(prometheus)
    fi
    # Debian's own Python refuses pip installs (PEP 668) and makes virtual environments only
    # with python3-venv: there its packages come from apt; another Python's (pyenv) from pip.
    if python3 -c 'import sys; sys.exit(0 if sys.prefix == "/usr" else 1)' 2>/dev/null; then
        for module in jsonschema:python3-jsonschema yaml:python3-yaml websocket:python3-websocket ensurepip:python3-venv; do
            if ! python3 -c "import ${module%%:*}" 2>/dev/null; then
                echo "setup: Python's ${module%%:*} is missing; installing ${module#*:} with apt-get" >&2
                apt_packages+=("${module#*:}")
            fi
        done
    fi
fi
if $benchmarking; then
    if ! command -v wrk >/dev/null 2>&1; then
        echo "setup: wrk is missing (IngressBenchmark's load tool); installing it with apt-get" >&2
        apt_packages+=(wrk)
    fi
    if ! command -v perf >/dev/null 2>&1; then
        echo "setup: perf is missing (profiles in BENCHMARKS.md); installing linux-perf with apt-get" >&2
        apt_packages+=(linux-perf)
    fi
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
pkg-config --exists rdkafka || { echo "setup: librdkafka-dev installed but pkg-config cannot find rdkafka" >&2; exit 1; }
[ -e /usr/include/mimalloc.h ] || { echo "setup: libmimalloc-dev installed but /usr/include/mimalloc.h is missing" >&2; exit 1; }
$testing || exit 0

for module in jsonschema:jsonschema yaml:pyyaml websocket:websocket-client; do
    if ! python3 -c "import ${module%%:*}" 2>/dev/null; then
        echo "setup: Python's ${module#*:} is missing; installing it with pip" >&2
        python3 -m pip install --quiet "${module#*:}"
    fi
done

# docker-compose 1.x (the Compose file parser on PyPI) pins old jsonschema and PyYAML, and
# kubernetes-validate needs new ones: each lives in a virtual environment of its own. The
# docker-compose PyYAML build needs Cython before 3.
tools=.build/deploy-tools
if [ ! -x "$tools/compose/bin/docker-compose" ]; then
    echo "setup: installing docker-compose with pip into $tools/compose" >&2
    mkdir -p "$tools"
    python3 -m venv "$tools/compose"
    constraints="$(mktemp)"
    echo "cython<3" > "$constraints"
    PIP_CONSTRAINT="$constraints" "$tools/compose/bin/pip" install --quiet docker-compose
    rm -f "$constraints"
fi
if [ ! -x "$tools/kubernetes/bin/kubernetes-validate" ]; then
    echo "setup: installing kubernetes-validate with pip into $tools/kubernetes" >&2
    mkdir -p "$tools"
    python3 -m venv "$tools/kubernetes"
    "$tools/kubernetes/bin/pip" install --quiet kubernetes-validate
fi
