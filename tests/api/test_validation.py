"""Mutation input is checked before anything is written: each rule refuses a bad value with
the field path and code a client can show next to the field, and no input makes a check raise.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import validation as v
from app.resources import DevboxReleaseSpec, DevboxSpec
from app.schema.errors import UserError, UserErrorCode
from app.settings import Settings

LIMITS = v.Limits.from_settings(Settings())
P = ["input"]


def codes(errors: list[UserError]) -> list[tuple[list[str] | None, UserErrorCode]]:
    return [(e.field, e.code) for e in errors]


@pytest.mark.parametrize("name", ["box", "a", "my-box-2", "a" * 63])
def test_good_names_pass(name: str) -> None:
    assert v.name_errors(name, [*P, "name"]) == []


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", UserErrorCode.REQUIRED),
        ("a" * 64, UserErrorCode.TOO_LONG),
        ("Box", UserErrorCode.INVALID),
        ("1box", UserErrorCode.INVALID),  # DNS-1035: a Service name must start with a letter
        ("box-", UserErrorCode.INVALID),
        ("-box", UserErrorCode.INVALID),
        ("my_box", UserErrorCode.INVALID),
        ("box.one", UserErrorCode.INVALID),
        ("bö", UserErrorCode.INVALID),
    ],
)
def test_bad_names_are_refused_with_the_field_path(name: str, code: UserErrorCode) -> None:
    assert codes(v.name_errors(name, [*P, "name"])) == [(["input", "name"], code)]


def test_messages_quote_long_input_only_in_part() -> None:
    (error,) = v.name_errors("A" * 60, [*P, "name"])
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("resource", "value", "code"),
    [
        ("cpu", "", UserErrorCode.REQUIRED),
        ("cpu", "lots", UserErrorCode.INVALID),
        ("cpu", "-1", UserErrorCode.INVALID),
        ("cpu", "1n", UserErrorCode.INVALID),  # the CRD's pattern has no n/u suffixes
        ("cpu", "50m", UserErrorCode.OUT_OF_RANGE),
        ("cpu", "17", UserErrorCode.OUT_OF_RANGE),
        ("cpu", "1e999999999", UserErrorCode.OUT_OF_RANGE),
        ("memory", "4GB", UserErrorCode.INVALID),
        ("memory", "1Mi", UserErrorCode.OUT_OF_RANGE),
        ("memory", "65Gi", UserErrorCode.OUT_OF_RANGE),
        ("storage", "100Mi", UserErrorCode.OUT_OF_RANGE),
        ("storage", "1Ei", UserErrorCode.OUT_OF_RANGE),
        ("storage", "1" * 65, UserErrorCode.INVALID),
    ],
)
def test_sizes_outside_the_configured_limits_are_refused(
    resource: str, value: str, code: UserErrorCode
) -> None:
    values = {"cpu": None, "memory": None, "storage": None, resource: value}
    errors = v.resources_errors(
        values["cpu"], values["memory"], values["storage"], [*P, "resources"], LIMITS
    )
    assert codes(errors) == [(["input", "resources", resource], code)]


def test_out_of_range_message_names_the_limits() -> None:
    (error,) = v.resources_errors(None, "65Gi", None, [*P, "resources"], LIMITS)
    assert "256Mi" in error.message
    assert "64Gi" in error.message


def test_limits_come_from_the_settings() -> None:
    limits = v.Limits.from_settings(Settings(max_cpu="2"))
    assert limits.max_cpu == Decimal(2)
    assert codes(v.resources_errors("3", None, None, P, limits)) == [
        (["input", "cpu"], UserErrorCode.OUT_OF_RANGE)
    ]
    assert v.resources_errors("2", "2Gi", "10Gi", P, limits) == []


def port(number: int, name: str | None = None) -> v.PortInput:
    return v.PortInput(name=name, port=number)


def test_good_ports_pass() -> None:
    ports = [port(8000, "http"), port(5432, "postgres"), port(9000)]
    assert v.ports_errors(ports, [*P, "ports"], ssh_port=2222) == []


@pytest.mark.parametrize(
    ("ports", "where", "code"),
    [
        ([port(0, "zero")], ["0", "port"], UserErrorCode.OUT_OF_RANGE),
        ([port(65536, "big")], ["0", "port"], UserErrorCode.OUT_OF_RANGE),
        ([port(80, "a"), port(80, "b")], ["1", "port"], UserErrorCode.DUPLICATE),
        ([port(80, "web"), port(81, "web")], ["1", "name"], UserErrorCode.DUPLICATE),
        ([port(8000, "http"), port(2222, "ssh2")], ["1", "port"], UserErrorCode.RESERVED),
        ([port(22, "ssh")], ["0", "port"], UserErrorCode.RESERVED),
        ([port(80, "")], ["0", "name"], UserErrorCode.REQUIRED),
        ([port(80, "a-very-long-name")], ["0", "name"], UserErrorCode.TOO_LONG),
        ([port(80, "Web")], ["0", "name"], UserErrorCode.INVALID),
        ([port(80, "123")], ["0", "name"], UserErrorCode.INVALID),  # IANA: needs a letter
        ([port(80, "a--b")], ["0", "name"], UserErrorCode.INVALID),
        ([port(80, "-web")], ["0", "name"], UserErrorCode.INVALID),
    ],
)
def test_bad_ports_are_refused_at_their_index(
    ports: list[v.PortInput], where: list[str], code: UserErrorCode
) -> None:
    errors = v.ports_errors(ports, [*P, "ports"], ssh_port=2222)
    assert codes(errors) == [(["input", "ports", *where], code)]


def test_too_many_ports_are_refused() -> None:
    ports = [port(1000 + i) for i in range(v.MAX_PORTS + 1)]
    assert codes(v.ports_errors(ports, [*P, "ports"], ssh_port=22)) == [
        (["input", "ports"], UserErrorCode.TOO_LONG)
    ]


def env(name: str, value: str = "x") -> v.EnvInput:
    return v.EnvInput(name=name, value=value)


def test_good_env_passes() -> None:
    assert v.env_errors([env("PATH"), env("_x1"), env("lower")], [*P, "env"]) == []


@pytest.mark.parametrize(
    ("variables", "where", "code"),
    [
        ([env("")], ["0", "name"], UserErrorCode.REQUIRED),
        ([env("1ABC")], ["0", "name"], UserErrorCode.INVALID),
        ([env("MY-VAR")], ["0", "name"], UserErrorCode.INVALID),
        ([env("A=B")], ["0", "name"], UserErrorCode.INVALID),
        ([env("X" * 257)], ["0", "name"], UserErrorCode.TOO_LONG),
        ([env("A"), env("A")], ["1", "name"], UserErrorCode.DUPLICATE),
        ([env("DEVBOX_NAME")], ["0", "name"], UserErrorCode.RESERVED),
        ([env("devbox_user")], ["0", "name"], UserErrorCode.RESERVED),
        ([env("BIG", "v" * 32769)], ["0", "value"], UserErrorCode.TOO_LONG),
    ],
)
def test_bad_env_is_refused_at_its_index(
    variables: list[v.EnvInput], where: list[str], code: UserErrorCode
) -> None:
    assert codes(v.env_errors(variables, [*P, "env"])) == [(["input", "env", *where], code)]


def test_too_many_env_vars_are_refused() -> None:
    variables = [env(f"V{i}") for i in range(v.MAX_ENV + 1)]
    assert codes(v.env_errors(variables, [*P, "env"])) == [
        (["input", "env"], UserErrorCode.TOO_LONG)
    ]


@pytest.mark.parametrize("version", ["v1", "1.2", "v1.2.3", "v1.2.3-rc.1", "2.0.0+build.7"])
def test_good_versions_pass(version: str) -> None:
    assert v.version_errors(version, [*P, "version"]) == []


@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("", UserErrorCode.REQUIRED),
        ("latest", UserErrorCode.INVALID),
        ("v1.2.3.4", UserErrorCode.INVALID),
        ("v1 ", UserErrorCode.INVALID),
        ("1." + "1" * 130, UserErrorCode.TOO_LONG),
    ],
)
def test_bad_versions_are_refused(version: str, code: UserErrorCode) -> None:
    assert codes(v.version_errors(version, [*P, "version"])) == [(["input", "version"], code)]


def test_long_notes_are_refused() -> None:
    assert codes(v.notes_errors("n" * 4097, [*P, "notes"])) == [
        (["input", "notes"], UserErrorCode.TOO_LONG)
    ]


@pytest.mark.parametrize(
    ("key", "code"), [("", UserErrorCode.INVALID), ("k" * 256, UserErrorCode.TOO_LONG)]
)
def test_bad_idempotency_keys_are_refused(key: str, code: UserErrorCode) -> None:
    assert codes(v.idempotency_key_errors(key, [*P, "idempotencyKey"])) == [
        (["input", "idempotencyKey"], code)
    ]


def test_an_absent_idempotency_key_is_fine() -> None:
    assert v.idempotency_key_errors(None, P) == []
    assert v.idempotency_key_errors("k" * 255, P) == []


@pytest.mark.parametrize(
    ("commit", "code"),
    [
        ("", UserErrorCode.REQUIRED),
        ("../etc", UserErrorCode.INVALID),
        ("c" * 64, UserErrorCode.INVALID),
    ],
)
def test_bad_commit_ids_are_refused(commit: str, code: UserErrorCode) -> None:
    assert codes(v.commit_id_errors(commit, [*P, "commitId"])) == [(["input", "commitId"], code)]


@pytest.mark.parametrize("seconds", [-1, v.IDLE_TIMEOUT_MAX + 1])
def test_idle_timeouts_out_of_range_are_refused(seconds: int) -> None:
    assert codes(v.idle_timeout_errors(seconds, [*P, "idleTimeoutSeconds"])) == [
        (["input", "idleTimeoutSeconds"], UserErrorCode.OUT_OF_RANGE)
    ]


# ---------------------------------------------------------------------- properties

text = st.text(max_size=80)


@given(
    name=text,
    cpu=text,
    memory=text,
    storage=text,
    ports=st.lists(
        st.builds(
            v.PortInput,
            name=st.none() | text,
            port=st.integers(-(2**40), 2**40),
            protocol=st.sampled_from(["TCP", "UDP"]),
            public=st.booleans(),
        ),
        max_size=25,
    ),
    variables=st.lists(st.builds(v.EnvInput, name=text, value=text), max_size=5),
    ssh_port=st.integers(1, 65535),
    version=text,
    key=st.none() | text,
)
def test_arbitrary_input_never_raises_and_what_passes_the_crd_accepts(
    name: str,
    cpu: str,
    memory: str,
    storage: str,
    ports: list[v.PortInput],
    variables: list[v.EnvInput],
    ssh_port: int,
    version: str,
    key: str | None,
) -> None:
    errors = v.collect(
        v.name_errors(name, P),
        v.resources_errors(cpu, memory, storage, P, LIMITS),
        v.ports_errors(ports, P, ssh_port=ssh_port),
        v.env_errors(variables, P),
        v.idempotency_key_errors(key, P),
    )
    assert all(isinstance(e, UserError) and e.field for e in errors)
    if not errors:
        # The CRD's own schema (the pydantic model it is generated from) accepts it too.
        DevboxSpec.model_validate(
            {
                "runtimeRef": {"name": "python", "namespace": "devbox-system"},
                "owner": "alice",
                "resources": {"cpu": cpu, "memory": memory, "storage": storage},
                "ports": [
                    {"name": p.name or v.default_port_name(p.port), "port": p.port} for p in ports
                ],
                "env": [{"name": e.name, "value": e.value} for e in variables],
            }
        )
    if not v.version_errors(version, P):
        DevboxReleaseSpec.model_validate({"devbox": "box", "version": version})
