"""Label and field selectors parse, print and match like apimachinery's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.simcluster.errors import BadRequest
from app.simcluster.selectors import (
    FieldSelector,
    LabelSelector,
    field_values,
    label_selector_from_spec,
    require_supported,
)


def _parse_error(text: str) -> str:
    with pytest.raises(BadRequest) as info:
        LabelSelector.parse(text)
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    return info.value.message


def test_unclosed_set_gives_the_real_servers_message() -> None:
    assert _parse_error("a in (b") == "unable to parse requirement: found '', expected: ',' or ')'"


def test_missing_operator_lists_the_binary_operators() -> None:
    assert _parse_error("a b") == (
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    )


def test_trailing_comma_needs_an_identifier() -> None:
    assert _parse_error("a=b,") == "found '', expected: identifier after ','"


def test_garbage_after_requirement() -> None:
    assert _parse_error("a=b c") == "found 'c', expected: ',' or 'end of string'"


def test_selector_starting_with_operator() -> None:
    assert _parse_error("=a") == "found '=', expected: !, identifier, or 'end of string'"


def test_non_integer_gt_value() -> None:
    assert _parse_error("a>x") == (
        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"
    )


def test_invalid_label_value_names_key_and_value() -> None:
    assert _parse_error("app=-x").startswith(
        'unable to parse requirement: invalid label value: "-x": at key: "app": a valid label'
    )


def test_invalid_label_key() -> None:
    assert _parse_error("a/b/c").startswith(
        'unable to parse requirement: invalid label key "a/b/c": a qualified name must'
    )


def test_canonical_string_sorts_requirements_and_values() -> None:
    selector = LabelSelector.parse("z notin (), x in (foo,,baz), y ,  !w, a==b, c!=d, n>1, m<2")
    assert str(selector) == "a==b,c!=d,m<2,n>1,!w,x in (,baz,foo),y,z notin ()"


def test_empty_selector_matches_everything() -> None:
    selector = LabelSelector.parse("")
    assert selector.matches({})
    assert selector.matches({"a": "b"})
    assert str(selector) == ""


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (x,y)", {"a": "y"}, True),
        ("a notin (x)", {}, True),
        ("a notin (x)", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a>1", {"a": "2"}, True),
        ("a>1", {"a": "x"}, False),
        ("a<1", {"a": "-5"}, True),
        ("a=", {"a": ""}, True),
        ("a=b,c", {"a": "b"}, False),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is expected


def test_in_and_notin_are_plain_values_inside_parentheses() -> None:
    assert LabelSelector.parse("a in (in,notin)").matches({"a": "notin"})


def test_spec_selector_combines_match_labels_and_expressions() -> None:
    selector = label_selector_from_spec(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert str(selector) == "app=web,!legacy,tier in (back,front)"
    assert selector.matches({"app": "web", "tier": "front"})
    assert not selector.matches({"app": "web", "tier": "front", "legacy": "1"})


def test_spec_selector_none_selects_nothing_and_empty_everything() -> None:
    assert not label_selector_from_spec(None).matches({})
    assert label_selector_from_spec({}).matches({"x": "y"})


def test_spec_selector_rejects_unknown_operator() -> None:
    with pytest.raises(BadRequest) as info:
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
    assert info.value.message == '"Gt" is not a valid pod selector operator'


def test_spec_selector_in_without_values() -> None:
    with pytest.raises(BadRequest) as info:
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "In"}]})
    assert info.value.message == "for 'in', 'notin' operators, values set can't be empty"


def test_field_selector_terms_and_matching() -> None:
    selector = FieldSelector.parse("status.phase!=Running,metadata.name==a")
    assert selector.fields() == {"status.phase", "metadata.name"}
    assert selector.matches({"metadata.name": "a", "status.phase": "Pending"})
    assert not selector.matches({"metadata.name": "a", "status.phase": "Running"})
    assert str(selector) == "metadata.name=a,status.phase!=Running"


def test_field_selector_escaped_value() -> None:
    selector = FieldSelector.parse(r"metadata.name=a\,b\=c\\d")
    assert selector.matches({"metadata.name": "a,b=c\\d"})
    assert str(selector) == r"metadata.name=a\,b\=c\\d"


def test_field_selector_without_operator_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        FieldSelector.parse("metadata.name")
    assert info.value.message == (
        "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    )


def test_field_selector_bad_escape() -> None:
    with pytest.raises(BadRequest) as info:
        FieldSelector.parse(r"a=b\q")
    assert info.value.message == "invalid field selector: invalid escape sequence: \\q"


def test_unsupported_field_on_custom_resource() -> None:
    selector = FieldSelector.parse("spec.size=3")
    with pytest.raises(BadRequest) as info:
        require_supported(selector, field_values("Widget", {}).keys())
    assert info.value.message == "field label not supported: spec.size"


def test_unsupported_field_message_depends_on_kind() -> None:
    selector = FieldSelector.parse("spec.x=1")
    with pytest.raises(BadRequest) as info:
        require_supported(selector, field_values("ConfigMap", {}).keys(), kind="ConfigMap")
    assert info.value.message == 'field label "spec.x" not supported for "ConfigMap"'


def test_pod_field_values() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]},
    }
    assert field_values("Pod", pod) == {
        "metadata.name": "p",
        "metadata.namespace": "ns",
        "spec.nodeName": "n1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "",
        "spec.serviceAccountName": "",
        "status.phase": "Running",
        "status.podIP": "10.0.0.1",
        "status.nominatedNodeName": "",
    }


def test_event_and_node_field_values() -> None:
    event = {
        "involvedObject": {"kind": "Pod", "name": "p"},
        "source": {"component": "kubelet"},
        "reason": "Started",
        "type": "Normal",
    }
    values = field_values("Event", event)
    assert values["involvedObject.kind"] == "Pod"
    assert values["involvedObject.uid"] == ""
    assert values["source"] == "kubelet"
    assert field_values("Node", {"metadata": {"name": "n"}}) == {
        "metadata.name": "n",
        "spec.unschedulable": "false",
    }
    assert set(field_values("Secret", {})) == {"metadata.name", "metadata.namespace", "type"}


_key = st.from_regex(
    # optional DNS-subdomain prefix (dot-separated labels), then a qualified name
    r"([a-z]([a-z0-9-]{0,4}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,4}[a-z0-9])?)?/)?"
    r"[a-z]([a-z0-9_.-]{0,8}[a-z0-9])?",
    fullmatch=True,
)
_value = st.from_regex(r"([a-z0-9]([a-z0-9_.-]{0,6}[a-z0-9])?)?", fullmatch=True)
_word = _value.filter(bool)
_requirement = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _key, _value),
    st.builds(lambda k, v: f"{k}!={v}", _key, _value),
    st.builds(lambda k, vs: f"{k} in ({','.join(vs)})", _key, st.lists(_word, min_size=1)),
    st.builds(lambda k, vs: f"{k} notin ({','.join(vs)})", _key, st.lists(_word, min_size=1)),
    st.builds(lambda k: k, _key),
    st.builds(lambda k: f"!{k}", _key),
    st.builds(lambda k, n: f"{k}>{n}", _key, st.integers(0, 1000)),
)


@given(st.lists(_requirement, max_size=5))
def test_label_selector_string_round_trips(parts: list[str]) -> None:
    selector = LabelSelector.parse(",".join(parts))
    again = LabelSelector.parse(str(selector))
    assert str(again) == str(selector)
    assert again == selector


@given(
    st.dictionaries(
        st.sampled_from(["metadata.name", "spec.nodeName", "type"]), st.text(max_size=8)
    )
)
def test_field_selector_string_round_trips(terms: dict[str, str]) -> None:
    from app.simcluster.selectors import escape_field_value

    text = ",".join(f"{k}={escape_field_value(v)}" for k, v in terms.items())
    selector = FieldSelector.parse(text)
    assert selector.matches(terms)
    assert str(FieldSelector.parse(str(selector))) == str(selector)


def test_negative_gt_value_fails_label_value_validation_like_go() -> None:
    assert _parse_error("a>-1").startswith('unable to parse requirement: invalid label value: "-1"')
