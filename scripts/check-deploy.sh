#!/usr/bin/env bash
# Checks the deployment files with the real tools (scripts/setup.sh --test installs them):
# docker-compose.yml with docker-compose's parser, the Prometheus configuration and alert rules
# with promtool, the Kubernetes manifests with kubernetes-validate, and the KEDA resources (which
# kubernetes-validate has no schema for) with scripts/validate-keda.py.
set -euo pipefail
cd "$(dirname "$0")/.."
".build/deploy-tools/compose/bin/docker-compose" -f docker-compose.yml config --quiet
echo "deploy: docker-compose.yml is valid"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
.build/deploy-tools/kubernetes/bin/kubernetes-validate --strict --quiet deploy/kubernetes/connector.yaml deploy/kubernetes/keda.yaml
python3 scripts/validate-keda.py deploy/kubernetes/keda.yaml
# `docker compose up --scale worker=3 --scale egress=2`: the scaled services bind no host port
# and have no fixed container name.
".build/deploy-tools/compose/bin/docker-compose" -f docker-compose.yml config | python3 -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
fixed = [name for name in ("worker", "egress") if "ports" in services[name] or "container_name" in services[name]]
sys.exit(f"deploy: {fixed} would bind fixed host ports or names when scaled" if fixed else None)'
echo "deploy: worker and egress scale (no fixed host ports or names)"
# Kafka keeps its data on its volume (the image's default log directory is in /tmp).
".build/deploy-tools/compose/bin/docker-compose" -f docker-compose.yml config | python3 -c '
import sys, yaml
kafka = yaml.safe_load(sys.stdin)["services"]["kafka"]
mounts = [volume["target"] if isinstance(volume, dict) else volume.split(":")[1] for volume in kafka.get("volumes", [])]
logs = kafka.get("environment", {}).get("KAFKA_LOG_DIRS")
sys.exit(None if logs in mounts else f"deploy: kafka writes to {logs}, not to its volume {mounts}")'
echo "deploy: kafka keeps its data on its volume"
