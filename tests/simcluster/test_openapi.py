"""CRD schemas prune, default and validate custom resources like apiextensions-apiserver."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.simcluster.errors import Cause, Invalid
from app.simcluster.openapi import (
    apply_defaults,
    process_custom_object,
    prune,
    structural_errors,
    validate,
)

WIDGET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["a", "b"]},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def test_schema_violation_causes_match_the_real_422() -> None:
    causes = validate(
        WIDGET,
        {"apiVersion": "probe.example.com/v1", "kind": "Widget", "spec": {"size": 99, "mode": "z"}},
    )
    assert causes == [
        Cause(
            "FieldValueNotSupported",
            'Unsupported value: "z": supported values: "a", "b"',
            "spec.mode",
        ),
        Cause(
            "FieldValueInvalid",
            "Invalid value: 99: spec.size in body should be less than or equal to 10",
            "spec.size",
        ),
    ]
    error = Invalid("Widget", "probe.example.com", "w2", causes)
    assert error.message == (
        'Widget.probe.example.com "w2" is invalid: [spec.mode: Unsupported value: "z": '
        'supported values: "a", "b", spec.size: Invalid value: 99: spec.size in body should be '
        "less than or equal to 10]"
    )


def test_enum_violation_names_field_and_supported_values() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}
    assert validate(schema, {"n": 3}) == [
        Cause("FieldValueNotSupported", 'Unsupported value: 3: supported values: "1", "2"', "n")
    ]


def test_type_mismatch_reports_the_json_type() -> None:
    assert validate(WIDGET, {"spec": {"size": "string"}}) == [
        Cause(
            "FieldValueInvalid",
            'Invalid value: "string": spec.size in body must be of type integer: "string"',
            "spec.size",
        )
    ]


def test_whole_float_is_an_integer_but_fraction_is_not() -> None:
    assert validate(WIDGET, {"spec": {"size": 3.0}}) == []
    [cause] = validate(WIDGET, {"spec": {"size": 3.5}})
    assert cause.message == (
        'Invalid value: "number": spec.size in body must be of type integer: "number"'
    )


def test_null_needs_nullable() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string", "nullable": True}},
    }
    assert validate(schema, {"a": None, "b": None}) == [
        Cause(
            "FieldValueInvalid",
            'Invalid value: "null": a in body must be of type string: "null"',
            "a",
        )
    ]


def test_required_field_is_required_value() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"type": "integer"}},
            }
        },
        "required": ["spec"],
    }
    assert validate(schema, {}) == [Cause("FieldValueRequired", "Required value", "spec")]
    assert validate(schema, {"spec": {}}) == [
        Cause("FieldValueRequired", "Required value", "spec.size")
    ]


def test_string_length_and_pattern() -> None:
    schema = {
        "type": "object",
        "properties": {
            "x": {"type": "string", "minLength": 1},
            "y": {"type": "string", "maxLength": 2},
            "name": {"type": "string", "pattern": "^[a-z]+$"},
        },
    }
    assert validate(schema, {"x": "", "y": "abc", "name": "A1"}) == [
        Cause(
            "FieldValueInvalid",
            "Invalid value: \"A1\": name in body should match '^[a-z]+$'",
            "name",
        ),
        Cause(
            "FieldValueInvalid", 'Invalid value: "": x in body should be at least 1 chars long', "x"
        ),
        Cause(
            "FieldValueInvalid",
            'Invalid value: "abc": y in body should be at most 2 chars long',
            "y",
        ),
    ]


def test_exclusive_bounds_and_multiple_of() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "b": {"type": "integer", "maximum": 5, "exclusiveMaximum": True, "multipleOf": 2},
        },
    }
    assert validate(schema, {"a": 0, "b": 5}) == [
        Cause("FieldValueInvalid", "Invalid value: 0: a in body should be greater than 0", "a"),
        Cause("FieldValueInvalid", "Invalid value: 5: b in body should be a multiple of 2", "b"),
        Cause("FieldValueInvalid", "Invalid value: 5: b in body should be less than 5", "b"),
    ]


def test_array_items_use_indexed_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "ports": {
                        "type": "array",
                        "maxItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {"port": {"type": "integer", "maximum": 100}},
                        },
                    }
                },
            }
        },
    }
    causes = validate(schema, {"spec": {"ports": [{"port": 1}, {"port": 1000}]}})
    assert causes[0] == Cause(
        "FieldValueInvalid",
        "Invalid value: 1000: spec.ports[1].port in body should be less than or equal to 100",
        "spec.ports[1].port",
    )
    assert causes[1].field == "spec.ports"
    assert causes[1].message.endswith("spec.ports in body should have at most 1 items")


def test_object_property_counts() -> None:
    schema = {
        "type": "object",
        "properties": {
            "m": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}}
        },
    }
    assert validate(schema, {"m": {"a": "x"}}) == [
        Cause(
            "FieldValueInvalid",
            "Invalid value: 2: m in body should have at least 2 properties",
            "m",
        )
    ]


def test_additional_properties_schema_validates_values() -> None:
    schema = {
        "type": "object",
        "properties": {"m": {"type": "object", "additionalProperties": {"type": "integer"}}},
    }
    assert validate(schema, {"m": {"k": "v"}}) == [
        Cause(
            "FieldValueInvalid",
            'Invalid value: "string": m.k in body must be of type integer: "string"',
            "m.k",
        )
    ]


def test_int_or_string_accepts_both_and_rejects_others() -> None:
    schema = {"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": True}}}
    assert validate(schema, {"port": 80}) == []
    assert validate(schema, {"port": "http"}) == []
    assert validate(schema, {"port": True}) == [
        Cause(
            "FieldValueInvalid",
            'Invalid value: "boolean": port in body must be of type integer,string: "boolean"',
            "port",
        )
    ]


def test_date_time_format() -> None:
    schema = {
        "type": "object",
        "properties": {
            "t": {"type": "string", "format": "date-time"},
            "n": {"type": "integer", "format": "int32"},
        },
    }
    assert validate(schema, {"t": "2021-01-02T03:04:05Z", "n": 2**40}) == []
    assert validate(schema, {"t": "yesterday"}) == [
        Cause(
            "FieldValueInvalid",
            'Invalid value: "yesterday": t in body must be of type date-time: "yesterday"',
            "t",
        )
    ]


def test_any_of_failure_reports_composite_and_first_branch() -> None:
    schema = {"type": "object", "properties": {"v": {"anyOf": [{"minimum": 5}, {"maximum": 1}]}}}
    assert validate(schema, {"v": 3}) == [
        Cause(
            "FieldValueInvalid",
            'Invalid value: "": "v" must validate at least one schema (anyOf)',
            "",
        ),
        Cause(
            "FieldValueInvalid",
            "Invalid value: 3: v in body should be greater than or equal to 5",
            "v",
        ),
    ]


def test_list_type_set_and_map_report_duplicates() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["port"],
                "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
            },
        },
    }
    assert validate(schema, {"tags": ["a", "b", "a"], "ports": [{"port": 1}, {"port": 1}]}) == [
        Cause(
            "FieldValueDuplicate", 'Duplicate value: map[string]interface {}{"port":1}', "ports[1]"
        ),
        Cause("FieldValueDuplicate", 'Duplicate value: "a"', "tags[2]"),
    ]


def test_prune_drops_unknown_fields_but_keeps_meta_and_preserved() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Widget",
        "metadata": {"name": "w", "x": 1},
        "spec": {"size": 1, "bogus": True},
        "status": {"anything": {"goes": 1}},
        "extra": 1,
    }
    before = copy.deepcopy(obj)
    assert prune(WIDGET, obj) == {
        "apiVersion": "v1",
        "kind": "Widget",
        "metadata": {"name": "w", "x": 1},
        "spec": {"size": 1},
        "status": {"anything": {"goes": 1}},
    }
    assert obj == before


def test_prune_inside_arrays_and_embedded_resources() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object"}},
            },
        },
    }
    obj = {
        "items": [{"a": "x", "b": "y"}],
        "template": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"z": 1},
            "other": 1,
        },
    }
    assert prune(schema, obj) == {
        "items": [{"a": "x"}],
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
    }


def test_defaults_fill_missing_fields_recursively() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "ports": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"protocol": {"type": "string", "default": "TCP"}},
                        },
                    },
                    "labels": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"v": {"type": "string", "default": "x"}},
                        },
                    },
                },
            }
        },
    }
    assert apply_defaults(schema, {}) == {"spec": {"replicas": 1}}
    obj = {"spec": {"replicas": 3, "ports": [{}], "labels": {"k": {}}}}
    assert apply_defaults(schema, obj) == {
        "spec": {"replicas": 3, "ports": [{"protocol": "TCP"}], "labels": {"k": {"v": "x"}}}
    }
    assert obj == {"spec": {"replicas": 3, "ports": [{}], "labels": {"k": {}}}}


def test_default_values_are_copied_not_shared() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "default": {"x": []}}}}
    first = apply_defaults(schema, {})
    first["a"]["x"].append(1)
    assert apply_defaults(schema, {}) == {"a": {"x": []}}


def test_process_prunes_defaults_then_validates() -> None:
    schema = copy.deepcopy(WIDGET)
    schema["properties"]["spec"]["properties"]["size"]["default"] = 20
    obj, causes = process_custom_object(schema, {"metadata": {"name": "w"}, "spec": {"junk": 1}})
    assert obj == {"metadata": {"name": "w"}, "spec": {"size": 20}}
    assert causes == [
        Cause(
            "FieldValueInvalid",
            "Invalid value: 20: spec.size in body should be less than or equal to 10",
            "spec.size",
        )
    ]


def test_structural_errors_for_missing_types() -> None:
    path = "spec.versions[0].schema.openAPIV3Schema"
    assert structural_errors(
        {"properties": {"spec": {"properties": {"a": {"type": "array"}}}}}, path
    ) == [
        Cause(
            "FieldValueRequired",
            "Required value: must be specified",
            f"{path}.properties[spec].properties[a].items",
        ),
        Cause(
            "FieldValueRequired",
            "Required value: must not be empty for specified object fields",
            f"{path}.properties[spec].type",
        ),
        Cause(
            "FieldValueRequired", "Required value: must not be empty at the root", f"{path}.type"
        ),
    ]


def test_structural_errors_for_forbidden_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/definitions/x"},
            "b": {
                "type": "object",
                "properties": {"c": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "d": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
    }
    messages = {(c.field, c.message) for c in structural_errors(schema, "s")}
    assert ("s.properties[a].$ref", "Forbidden: $ref is not supported") in messages
    assert (
        "s.properties[b].additionalProperties",
        "Forbidden: additionalProperties and properties are mutual exclusive",
    ) in messages
    assert (
        "s.properties[d].uniqueItems",
        "Forbidden: uniqueItems cannot be set to true since "
        "the runtime complexity becomes quadratic",
    ) in messages


def test_well_formed_schema_is_structural() -> None:
    assert structural_errors(WIDGET) == []


def test_non_object_root_and_root_default() -> None:
    assert structural_errors({"type": "string", "default": "x"}, "s") == [
        Cause("FieldValueForbidden", "Forbidden: must not be set at the root", "s.default"),
        Cause("FieldValueInvalid", 'Invalid value: "string": must be object at the root', "s.type"),
    ]


_sizes = st.one_of(st.integers(-100, 100), st.text(max_size=3), st.booleans(), st.none())


@given(_sizes, st.sampled_from(["a", "b", "c"]))
def test_validate_accepts_exactly_in_range_integers(size: Any, mode: str) -> None:
    causes = validate(WIDGET, {"spec": {"size": size, "mode": mode}})
    size_ok = isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 10
    assert (not any(c.field == "spec.size" for c in causes)) == size_ok
    assert any(c.field == "spec.mode" for c in causes) == (mode == "c")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_prune_is_idempotent(obj: dict[str, Any]) -> None:
    once = prune(WIDGET, obj)
    assert prune(WIDGET, once) == once
