"""Name, label and ObjectMeta rules give the messages a v1.20 API server writes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.simcluster import names
from app.simcluster.errors import Cause

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_REGEX = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def test_subdomain_message_matches_the_real_server() -> None:
    assert names.dns1123_subdomain_errors("Bad_Name") == [SUBDOMAIN_MSG]


def test_valid_subdomain_has_no_errors() -> None:
    assert names.dns1123_subdomain_errors("example.com") == []
    assert names.dns1123_subdomain_errors("a") == []


def test_overlong_subdomain_reports_length_and_nothing_else() -> None:
    assert names.dns1123_subdomain_errors("a" * 254) == ["must be no more than 253 characters"]


def test_label_rejects_dots_and_reports_both_length_and_pattern() -> None:
    assert names.dns1123_label_errors("a.b") == [LABEL_MSG]
    assert names.dns1123_label_errors("-" * 64) == ["must be no more than 63 characters", LABEL_MSG]


def test_dns1035_label_must_start_with_a_letter() -> None:
    assert names.dns1035_label_errors("1abc") == [DNS1035_MSG]
    assert names.dns1035_label_errors("abc-1") == []


def test_length_counts_bytes_like_go() -> None:
    assert names.dns1123_label_errors("é" * 32)[0] == "must be no more than 63 characters"


def test_qualified_name_with_prefix_checks_both_parts() -> None:
    assert names.qualified_name_errors("example.com/MyName") == []
    assert names.qualified_name_errors("/name") == ["prefix part must be non-empty"]
    assert names.qualified_name_errors("Example.com/x") == ["prefix part " + SUBDOMAIN_MSG]
    assert names.qualified_name_errors("a/") == [
        "name part must be non-empty",
        "name part " + QNAME_REGEX,
    ]


def test_qualified_name_with_two_slashes() -> None:
    assert names.qualified_name_errors("a/b/c") == [
        "a qualified name "
        + QNAME_REGEX
        + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    ]


def test_label_value_may_be_empty_but_not_end_with_dash() -> None:
    assert names.label_value_errors("") == []
    assert names.label_value_errors("v-") == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
        "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    ]


def test_invalid_name_cause_quotes_the_value() -> None:
    causes = names.validate_object_meta(
        {"name": "Bad_Name", "namespace": "default"},
        namespaced=True,
        name_rule=names.dns1123_subdomain_errors,
    )
    assert causes == [
        Cause("FieldValueInvalid", f'Invalid value: "Bad_Name": {SUBDOMAIN_MSG}', "metadata.name")
    ]


def test_missing_name_without_generate_name_is_required() -> None:
    causes = names.validate_object_meta(
        {}, namespaced=False, name_rule=names.dns1123_subdomain_errors
    )
    assert causes == [
        Cause(
            "FieldValueRequired",
            "Required value: name or generateName is required",
            "metadata.name",
        )
    ]


def test_generate_name_prefix_may_end_with_dash() -> None:
    meta = {"generateName": "web-", "namespace": "default"}
    assert (
        names.validate_object_meta(meta, namespaced=True, name_rule=names.dns1123_subdomain_errors)
        == []
    )
    bad = {"generateName": "Web-", "namespace": "default"}
    [cause] = names.validate_object_meta(
        bad, namespaced=True, name_rule=names.dns1123_subdomain_errors
    )
    assert cause.field == "metadata.generateName"
    assert cause.message.startswith('Invalid value: "Web-": a lowercase RFC 1123 subdomain')


def test_cluster_scoped_object_may_carry_a_namespace() -> None:
    meta = {"name": "n1", "namespace": "default"}
    causes = names.validate_object_meta(
        meta, namespaced=False, name_rule=names.dns1123_label_errors
    )
    assert causes == []


def test_namespaced_object_needs_a_namespace() -> None:
    causes = names.validate_object_meta(
        {"name": "x"}, namespaced=True, name_rule=names.dns1123_subdomain_errors
    )
    assert causes == [Cause("FieldValueRequired", "Required value", "metadata.namespace")]


def test_bad_label_key_and_value_are_reported_at_metadata_labels() -> None:
    causes = names.validate_object_meta(
        {"name": "x", "labels": {"a/b/c": "ok", "k": "bad value"}},
        namespaced=False,
        name_rule=names.dns1123_subdomain_errors,
    )
    assert [c.field for c in causes] == ["metadata.labels", "metadata.labels"]
    assert causes[0].message.startswith('Invalid value: "a/b/c": a qualified name must')
    assert causes[1].message.startswith('Invalid value: "bad value": a valid label must')


def test_annotations_over_256_kib_are_too_long() -> None:
    causes = names.validate_object_meta(
        {"name": "x", "annotations": {"big": "x" * (256 * 1024)}},
        namespaced=False,
        name_rule=names.dns1123_subdomain_errors,
    )
    assert causes == [
        Cause(
            "FieldValueTooLong", "Too long: must have at most 262144 bytes", "metadata.annotations"
        )
    ]


def test_annotation_keys_are_checked_case_insensitively() -> None:
    causes = names.validate_annotations({"Example.COM/Key": "v"})
    assert causes == []


def test_negative_generation_is_invalid() -> None:
    causes = names.validate_object_meta(
        {"name": "x", "generation": -1},
        namespaced=False,
        name_rule=names.dns1123_subdomain_errors,
    )
    assert causes == [
        Cause(
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
            "metadata.generation",
        )
    ]


def test_go_float_formatting_matches_percent_v() -> None:
    assert [names.go_float(v) for v in (10.0, 1.5, 1e6, 100000.0, 1e-5, 0.0001)] == [
        "10",
        "1.5",
        "1e+06",
        "100000",
        "1e-05",
        "0.0001",
    ]


def test_go_quote_escapes_like_strconv_quote() -> None:
    assert names.go_quote('a"b\\\n\x01é') == '"a\\"b\\\\\\n\\x01é"'


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True))
def test_every_regex_conforming_label_is_valid(value: str) -> None:
    assert names.dns1123_label_errors(value) == []
    assert names.dns1123_subdomain_errors(value) == []
