#!/usr/bin/env python3
"""Validates every example in schemas/examples/ against its schema (the file name up to the
example's name: inbound-event.v1.message-user.json -> inbound-event.v1.schema.json), and checks
that each schema rejects a broken copy of its first example, so a schema that accepts anything
does not pass."""
import copy
import json
import pathlib
import sys

from jsonschema import Draft202012Validator

root = pathlib.Path(__file__).resolve().parent.parent / "schemas"
failures = 0
checked = 0
for schema_path in sorted(root.glob("*.schema.json")):
    name = schema_path.name[: -len(".schema.json")]
    schema = json.loads(schema_path.read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    examples = sorted((root / "examples").glob(f"{name}.*.json"))
    if not examples:
        print(f"{schema_path.name}: no examples", file=sys.stderr)
        failures += 1
    for example in examples:
        checked += 1
        errors = list(validator.iter_errors(json.loads(example.read_text())))
        for error in errors:
            print(f"{example.name}: {'/'.join(map(str, error.absolute_path))}: {error.message}", file=sys.stderr)
        failures += bool(errors)
    if examples:
        broken = copy.deepcopy(json.loads(examples[0].read_text()))
        broken["unexpectedField"] = True
        if validator.is_valid(broken):
            print(f"{schema_path.name}: accepts an unknown top-level field", file=sys.stderr)
            failures += 1
if failures:
    sys.exit(f"schemas: {failures} problem(s)")
print(f"schemas: {checked} examples valid")
