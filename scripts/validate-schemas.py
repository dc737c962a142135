#!/usr/bin/env python3
"""Validates the schemas in schemas/ and their examples:

* inbound-event.v1: every schemas/examples/inbound-event.v1.*.json;
* outbound-command.v1: every schemas/outbound-examples/*.json (and one per action);
* flow.v1: flows/*.yaml and schemas/flow-examples/*.yaml, read with PyYAML;
* analytics-record.v1: every schemas/analytics-examples/*.json;
* delivery-result.v1: every schemas/delivery-examples/*.json;
* dead-letter.v1: every schemas/dead-letter-examples/*.json.

It also checks that each schema rejects a broken copy of its first example (an unknown top-level
field) and a few deliberately invalid documents below, so a schema that accepts anything does
not pass. Exits 1 on any problem."""
import copy
import json
import pathlib
import sys

from jsonschema import Draft202012Validator

try:
    import yaml
except ImportError:
    sys.exit("schemas: PyYAML is missing (needed to read the flow files); run scripts/setup.sh or: python3 -m pip install pyyaml")

repo = pathlib.Path(__file__).resolve().parent.parent
root = repo / "schemas"


def read_json(path):
    return json.loads(path.read_text())


def read_yaml(path):
    return yaml.safe_load(path.read_text())


# schema file -> (example files, reader)
suites = {
    "inbound-event.v1.schema.json": (sorted((root / "examples").glob("inbound-event.v1.*.json")), read_json),
    "outbound-command.v1.schema.json": (sorted((root / "outbound-examples").glob("*.json")), read_json),
    "flow.v1.schema.json": (sorted(repo.glob("flows/*.yaml")) + sorted((root / "flow-examples").glob("*.yaml")), read_yaml),
    "analytics-record.v1.schema.json": (sorted((root / "analytics-examples").glob("*.json")), read_json),
    "delivery-result.v1.schema.json": (sorted((root / "delivery-examples").glob("*.json")), read_json),
    "dead-letter.v1.schema.json": (sorted((root / "dead-letter-examples").glob("*.json")), read_json),
}

failures = 0
checked = 0
validators = {}


def fail(message):
    global failures
    print(message, file=sys.stderr)
    failures += 1


for schema_path in sorted(root.glob("*.schema.json")):
    if schema_path.name not in suites:
        fail(f"{schema_path.name}: no examples configured in scripts/validate-schemas.py")
for schema_name, (examples, reader) in suites.items():
    schema_path = root / schema_name
    if not schema_path.exists():
        fail(f"{schema_name}: missing")
        continue
    schema = read_json(schema_path)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    validators[schema_name] = validator
    if not examples:
        fail(f"{schema_name}: no examples")
        continue
    documents = []
    for example in examples:
        checked += 1
        try:
            document = reader(example)
        except Exception as error:  # a syntax error in an example is a failure like any other
            fail(f"{example.relative_to(repo)}: cannot be read: {error}")
            continue
        documents.append((example, document))
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        for error in errors:
            print(f"{example.relative_to(repo)}: /{'/'.join(map(str, error.absolute_path))}: {error.message}", file=sys.stderr)
        failures += bool(errors)
    if documents:
        broken = copy.deepcopy(documents[0][1])
        broken["unexpectedField"] = True
        if validator.is_valid(broken):
            fail(f"{schema_name}: accepts an unknown top-level field")

# Every action has an example.
outbound = root / "outbound-command.v1.schema.json"
if outbound.exists():
    actions = set(read_json(outbound)["properties"]["action"]["enum"])
    covered = {read_json(path).get("action") for path in suites["outbound-command.v1.schema.json"][0]}
    for action in sorted(actions - covered):
        fail(f"outbound-examples: no example for action {action}")

# execute nodes of the flow examples name files that exist.
for path in suites["flow.v1.schema.json"][0]:
    try:
        nodes = (read_yaml(path) or {}).get("nodes") or []
    except Exception:
        continue  # reported above
    for node in nodes:
        if isinstance(node, dict) and node.get("type") == "execute" and isinstance(node.get("flow"), str):
            if not (path.parent / node["flow"]).exists():
                fail(f"{path.relative_to(repo)}: node {node.get('id')}: executes {node['flow']}, which does not exist")

# Documents each schema must reject (and a few it must accept), checked inline.
def flow(*nodes, **top):
    return {"schema": "flow.v1", "name": "inline", "nodes": list(nodes), **top}


def command(action, body):
    return {
        "schema": "eightbyeight.outbound.v1", "commandId": "6b1c0e1e-4a39-4f7e-9a7e-2f0a1d4c2b10/0",
        "conversationId": "ID-0", "endpoint": "support", "tenantId": "acme",
        "causationEventId": "6b1c0e1e-4a39-4f7e-9a7e-2f0a1d4c2b10", "sequence": 0,
        "createdAt": 1713100000127, "receivedAt": 1713100000120, "action": action, "body": body,
    }


say = {"id": "hello", "type": "say", "text": "Hello"}
adaptive = {"contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"type": "AdaptiveCard", "version": "1.3", "body": [{"type": "TextBlock", "text": "Hi"}]}}
cases = [
    # (schema, description, document, should be valid)
    ("flow.v1.schema.json", "a node with an unknown type", flow({"id": "a", "type": "speak", "text": "Hi"}), False),
    ("flow.v1.schema.json", "a say node with an unknown field", flow({**say, "options": ["a"]}), False),
    ("flow.v1.schema.json", "a say node with nothing to say", flow({"id": "a", "type": "say"}), False),
    ("flow.v1.schema.json", "a condition with two operands",
     flow({"id": "a", "type": "if", "condition": {"intent": "help", "textContains": "help"}, "then": "b"}, say | {"id": "b"}), False),
    ("flow.v1.schema.json", "a condition with two comparisons",
     flow({"id": "a", "type": "if", "condition": {"context": "n", "greaterThan": 1, "lessThan": 5}, "then": "b"}, say | {"id": "b"}), False),
    ("flow.v1.schema.json", "an interrupt with an unknown input kind",
     flow(say, interrupts=[{"when": {"kind": "userMesage"}, "next": "hello"}]), False),
    ("flow.v1.schema.json", "a question of options without options",
     flow({"id": "a", "type": "question", "text": "Which?", "answer": "options"}), False),
    ("flow.v1.schema.json", "thinkingSeconds above 600", flow({"id": "a", "type": "typing", "thinkingSeconds": 601}), False),
    ("flow.v1.schema.json", "a button with both payload and url",
     flow({"id": "a", "type": "say", "buttons": [{"title": "x", "payload": "p", "url": "https://example.com"}]}), False),
    ("flow.v1.schema.json", "a value condition with one comparison",
     flow({"id": "a", "type": "if", "condition": {"slot": "amount", "lessThan": 5}, "then": "b"}, say | {"id": "b"}), True),
    ("analytics-record.v1.schema.json", "a record without its path",
     {k: v for k, v in read_json(root / "analytics-examples" / "masked-message.json").items() if k != "path"}, False),
    ("analytics-record.v1.schema.json", "an intent score above 1",
     {**read_json(root / "analytics-examples" / "masked-message.json"), "intentScore": 1.5}, False),
    ("outbound-command.v1.schema.json", "an unknown action", command("sendFax", {"authorType": "bot"}), False),
    ("outbound-command.v1.schema.json", "a message without content", command("sendMessage", {"authorType": "bot"}), False),
    ("outbound-command.v1.schema.json", "a message as the user", command("sendMessage", {"authorType": "user", "text": "Hi"}), False),
    ("outbound-command.v1.schema.json", "thinking for 0 seconds",
     command("thinking", {"authorType": "bot", "maxThinkingTimeSeconds": 0}), False),
    ("outbound-command.v1.schema.json", "an Adaptive Card message", command("sendMessage", {"authorType": "bot", "cards": [adaptive]}), True),
    ("outbound-command.v1.schema.json", "an Adaptive Card of another type",
     command("sendMessage", {"authorType": "bot", "cards": [{**adaptive, "content": {**adaptive["content"], "type": "HeroCard"}}]}), False),
    ("delivery-result.v1.schema.json", "an unknown outcome",
     {**read_json(root / "delivery-examples" / "delivered.json"), "outcome": "sent"}, False),
    ("delivery-result.v1.schema.json", "a result without its source",
     {k: v for k, v in read_json(root / "delivery-examples" / "delivered.json").items() if k != "source"}, False),
    ("dead-letter.v1.schema.json", "a dead letter that is also a replay mark",
     {**read_json(root / "dead-letter-examples" / "rejected-message.json"), "replayOf": "1/42", "replayedAs": "x"}, False),
    ("dead-letter.v1.schema.json", "a dead letter without its reason",
     {k: v for k, v in read_json(root / "dead-letter-examples" / "rejected-message.json").items() if k != "reason"}, False),
]
for schema_name, description, document, valid in cases:
    validator = validators.get(schema_name)
    if validator is None:
        continue  # reported above
    checked += 1
    if validator.is_valid(document) != valid:
        fail(f"{schema_name}: {'rejects' if valid else 'accepts'} {description}")

if failures:
    sys.exit(f"schemas: {failures} problem(s)")
print(f"schemas: {checked} documents checked ({sum(len(examples) for examples, _ in suites.values())} examples valid, "
      f"{sum(not valid for *_, valid in cases)} invalid documents rejected, {sum(valid for *_, valid in cases)} inline documents accepted)")
