#!/usr/bin/env python3
"""Checks the KEDA resources of deploy/kubernetes/keda.yaml, which kubernetes-validate has no
schema for: each ScaledObject and TriggerAuthentication against the fields of KEDA's CRDs
(keda.sh/v1alpha1) that they use, unknown fields rejected; each ScaledObject scales a Deployment
of deploy/kubernetes/connector.yaml on that service's own consumer group and topic. Exits 1 on
any problem."""
import pathlib
import sys

import yaml
from jsonschema import Draft202012Validator

repo = pathlib.Path(__file__).resolve().parent.parent
strings = {"type": "object", "additionalProperties": {"type": "string"}}
metadata = {"type": "object", "required": ["name", "namespace"], "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}}
schemas = {
    "ScaledObject": {
        "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"}, "metadata": metadata,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                                       "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "apiVersion": {"type": "string"}}},
                    "minReplicaCount": {"type": "integer", "minimum": 0}, "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1}, "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"}, "name": {"type": "string"}, "metadata": strings,
                            "authenticationRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                                                  "properties": {"name": {"type": "string"}, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}},
                        }}},
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"}, "metadata": metadata,
            "spec": {"type": "object", "additionalProperties": False, "properties": {
                "secretTargetRef": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["parameter", "name", "key"],
                    "properties": {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}},
            }},
        },
    },
}
groups = {"worker": ("connector-worker", "eightbyeight.inbound.v1"), "egress": ("connector-egress", "eightbyeight.outbound.v1")}

failures = 0
def fail(message):
    global failures
    print(f"{sys.argv[1]}: {message}", file=sys.stderr)
    failures += 1

documents = [d for d in yaml.safe_load_all(pathlib.Path(sys.argv[1]).read_text()) if d]
deployments = {d["metadata"]["name"] for d in yaml.safe_load_all((repo / "deploy/kubernetes/connector.yaml").read_text()) if d and d.get("kind") == "Deployment"}
authentications = {d["metadata"]["name"] for d in documents if d.get("kind") == "TriggerAuthentication"}
checked = 0
for document in documents:
    kind = document.get("kind")
    if kind not in schemas:
        continue
    checked += 1
    for error in Draft202012Validator(schemas[kind]).iter_errors(document):
        fail(f"{kind} {document.get('metadata', {}).get('name')}: /{'/'.join(map(str, error.absolute_path))}: {error.message}")
    if kind == "ScaledObject":
        target = document["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail(f"ScaledObject {target}: no Deployment {target} in connector.yaml")
        for trigger in document["spec"]["triggers"]:
            if trigger.get("type") == "kafka" and target in groups:
                group, topic = groups[target]
                if trigger["metadata"].get("consumerGroup") != group or trigger["metadata"].get("topic") != topic:
                    fail(f"ScaledObject {target}: scales on {trigger['metadata'].get('consumerGroup')}/{trigger['metadata'].get('topic')}, not {group}/{topic}")
            reference = trigger.get("authenticationRef", {}).get("name")
            if reference and reference not in authentications:
                fail(f"ScaledObject {target}: authenticationRef {reference} is not defined")
if checked == 0:
    fail("no KEDA resources found")
if failures:
    sys.exit(1)
print(f"{sys.argv[1]}: {checked} KEDA resources valid")
