#!/usr/bin/env python3
"""check_schemas.py - validate JSON documents against the schemas in schemas/ with python3-jsonschema.

  check_schemas.py examples SCHEMAS_DIR       every schemas/examples/valid/* must pass, every invalid/* must fail
  check_schemas.py doc SCHEMA_FILE DOC_FILE   one document must pass

The schema for an example is chosen by the part of its file name before the first dot:
variant-v1 -> predicate-variant-v1, checkpoint-v1 -> predicate-checkpoint-v1, policy -> policy,
model-signing-v1.0 -> predicate-model-signing-v1.0.
"""
import json
import os
import sys

import jsonschema

SCHEMA_FOR = {
    "variant-v1": "predicate-variant-v1.schema.json",
    "checkpoint-v1": "predicate-checkpoint-v1.schema.json",
    "policy": "policy.schema.json",
    "model-signing-v1": "predicate-model-signing-v1.0.schema.json",
}


def validator(path):
    with open(path) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def examples(root):
    bad = 0
    count = 0
    for kind, must_pass in (("valid", True), ("invalid", False)):
        d = os.path.join(root, "examples", kind)
        for name in sorted(os.listdir(d)):
            prefix = name.split(".")[0]
            if prefix not in SCHEMA_FOR:
                print(f"FAIL {kind}/{name}: no schema for prefix {prefix}")
                bad += 1
                continue
            v = validator(os.path.join(root, SCHEMA_FOR[prefix]))
            with open(os.path.join(d, name)) as f:
                doc = json.load(f)
            errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
            count += 1
            if must_pass and errors:
                print(f"FAIL {kind}/{name}: {errors[0].message} at {list(errors[0].path)}")
                bad += 1
            elif not must_pass and not errors:
                print(f"FAIL {kind}/{name}: accepted but must be rejected")
                bad += 1
            else:
                why = f" ({errors[0].message[:80]})" if errors else ""
                print(f"ok   {kind}/{name}{why}")
    if count < 6:
        print("FAIL: too few examples")
        bad += 1
    return bad


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "examples":
        sys.exit(1 if examples(sys.argv[2]) else 0)
    if len(sys.argv) == 4 and sys.argv[1] == "doc":
        v = validator(sys.argv[2])
        with open(sys.argv[3]) as f:
            doc = json.load(f)
        errors = list(v.iter_errors(doc))
        for e in errors:
            print(f"FAIL {sys.argv[3]}: {e.message} at {list(e.path)}")
        sys.exit(1 if errors else 0)
    print(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    main()
