"""Custom resources checked against their CRD's openAPIV3Schema (vendored in tests/schemas)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import yaml

from testing.paths import TESTS

SCHEMAS = TESTS / "schemas"
# kind -> (apiVersion, vendored schema file)
CRDS = {"PrometheusRule": ("monitoring.coreos.com/v1", "prometheusrule-v1.openapi.yaml")}


def _strict(schema: Any) -> Any:
    """The schema as the API server applies it with strict field validation: an object
    field the schema does not declare is an error (it would otherwise be pruned, and a
    misspelt field silently dropped)."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    _, name = CRDS[kind]
    schema: dict[str, Any] = yaml.safe_load((SCHEMAS / name).read_text())
    return _strict(copy.deepcopy(schema))  # type: ignore[no-any-return]


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of a custom resource `doc` (empty when valid)."""
    api_version, _ = CRDS[doc["kind"]]
    problems = [] if doc.get("apiVersion") == api_version else [f"apiVersion is not {api_version}"]
    validator = jsonschema.Draft7Validator(crd_schema(doc["kind"]))
    for error in validator.iter_errors(doc):
        where = "/".join(str(part) for part in error.path)
        problems.append(f"{error.message} at {where or '(root)'}")
    return problems
