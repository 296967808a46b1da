#!/usr/bin/env python3
"""check_schema.py SCHEMA [DEF] < JSON: validate JSON on stdin against SCHEMA (or its $defs/DEF)."""
import json
import sys

import jsonschema

schema = json.load(open(sys.argv[1]))
if len(sys.argv) > 2:
    schema = {"$ref": "#/$defs/" + sys.argv[2], "$defs": schema["$defs"]}
doc = json.load(sys.stdin)
try:
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
except jsonschema.ValidationError as e:
    print("schema violation:", e.message, "at", list(e.absolute_path), file=sys.stderr)
    sys.exit(1)
