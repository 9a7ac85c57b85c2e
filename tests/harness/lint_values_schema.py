#!/usr/bin/env python3
"""Lints a chart's values.schema.json: every property has a description, and every object that
lists its properties refuses others (additionalProperties: false), so a typo in values fails.
Objects without a property list are Kubernetes types passed through (resources, affinity, ...).

usage: lint_values_schema.py values.schema.json
"""
import json
import sys


def walk(node, path, problems):
    if not isinstance(node, dict):
        return
    if "properties" in node and node.get("additionalProperties") is not False:
        problems.append(f"{path or '/'}: lists properties but does not set additionalProperties: false")
    for name, prop in node.get("properties", {}).items():
        p = f"{path}/{name}"
        if not prop.get("description"):
            problems.append(f"{p}: no description")
        walk(prop, p, problems)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            walk(node[key], f"{path}[{key}]", problems)
    for key in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            walk(sub, f"{path}<{key}{i}>", problems)


def main(argv):
    with open(argv[1]) as f:
        schema = json.load(f)
    problems = []
    walk(schema, "", problems)
    for p in problems:
        print(f"ERROR {argv[1]}: {p}")
    print(f"{argv[1]}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
