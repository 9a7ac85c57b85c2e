#!/usr/bin/env python3
"""Validates custom resources against the openAPIV3Schema of their CRD, offline, as strictly as
`kubectl apply` (field validation Strict): a field the schema does not know is an error, not
silently pruned. CEL rules (x-kubernetes-validations) are checked by tests/examples.rs.

usage: validate_cr.py CRD.yaml FILE.yaml...   (every document of the CRD's kind is checked;
other kinds are skipped; a file with none of the kind is an error)
"""
import copy
import sys

import jsonschema
import yaml


def strict(schema):
    """Closes every object schema that lists properties (unless it preserves unknown fields)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def with_object_meta(schema):
    """The fields every object has, which the API server adds to a CRD's root schema."""
    s = copy.deepcopy(schema)
    props = s.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                  "required": ["name"]})
    return s


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    with open(argv[1]) as f:
        crd = yaml.safe_load(f)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {f"{group}/{v['name']}": strict(with_object_meta(v["schema"]["openAPIV3Schema"]))
               for v in crd["spec"]["versions"] if v.get("served")}
    failed = checked = 0
    for path in argv[2:]:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == kind]
        if not docs:
            print(f"ERROR {path}: no {kind} in it")
            failed += 1
            continue
        for doc in docs:
            checked += 1
            name = (doc.get("metadata") or {}).get("name")
            schema = schemas.get(doc.get("apiVersion"))
            if schema is None:
                print(f"ERROR {path} {name}: {doc.get('apiVersion')} is not a served version of {kind}")
                failed += 1
                continue
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc),
                            key=lambda e: list(map(str, e.path)))
            for e in errors:
                print(f"ERROR {path} {kind}/{name}: .{'.'.join(map(str, e.path))}: {e.message}")
            if errors:
                failed += 1
            else:
                print(f"OK {path} {kind}/{name}")
    print(f"{checked - failed if checked >= failed else 0} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
