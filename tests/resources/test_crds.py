"""The CRDs are generated from the models, structural, committed, and agree with the models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.resources import (
    GROUP,
    KINDS,
    SYSTEM_NAMESPACE,
    VERSION,
    Devbox,
    DevboxRelease,
    Resource,
    Runtime,
    Visibility,
    crdgen,
    dns1123_label_errors,
)
from app.simcluster import openapi

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "k8s" / "crds"
RUNTIME_DIR = ROOT / "k8s" / "runtimes"

JSON = dict[str, Any]


def _schema(model: type[Resource]) -> JSON:
    schema: JSON = crdgen.crd_for(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _causes(model: type[Resource], obj: JSON) -> list[Any]:
    """What the API server's schema validation says (metadata is the server's business)."""
    return list(openapi.validate(_schema(model), {k: v for k, v in obj.items() if k != "metadata"}))


# --- the committed manifests ------------------------------------------------------------------


def test_committed_crds_match_the_models() -> None:
    diff = crdgen.check(CRD_DIR)
    assert diff == "", (
        "k8s/crds is out of date; run: python -m app.resources.crdgen --write k8s/crds\n" + diff
    )


def test_committed_crds_load_as_the_generated_objects() -> None:
    for crd in crdgen.all_crds():
        path = CRD_DIR / crdgen.file_name(crd)
        assert yaml.safe_load(path.read_text()) == crd


def test_check_reports_a_stale_file_and_write_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--write", str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    stale = tmp_path / "devbox.dev_devboxes.yaml"
    stale.write_text(stale.read_text().replace("shortNames:\n    - dbx", "shortNames:\n    - db"))
    capsys.readouterr()
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-    - db\n" in out
    assert "+    - dbx\n" in out
    assert crdgen.main(["--write", str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    (tmp_path / "devbox.dev_runtimes.yaml").unlink()
    assert "devbox.dev_runtimes.yaml" in crdgen.check(tmp_path)


def test_generation_is_deterministic() -> None:
    assert crdgen.expected_files() == crdgen.expected_files()


def test_files_carry_the_do_not_edit_header() -> None:
    for path in CRD_DIR.glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# generated from app/resources — do not edit")
        assert "python -m app.resources.crdgen --write k8s/crds" in first


# --- shape of the CRDs ------------------------------------------------------------------------


def _crd(kind: str) -> JSON:
    (crd,) = [c for c in crdgen.all_crds() if c["spec"]["names"]["kind"] == kind]
    return crd


@pytest.mark.parametrize(
    ("kind", "plural", "short", "columns"),
    [
        ("Devbox", "devboxes", "dbx", ["Runtime", "State", "Phase", "Node", "Age"]),
        ("Runtime", "runtimes", "rt", ["Class", "Title", "Version", "Visibility", "Image", "Age"]),
        ("DevboxRelease", "devboxreleases", "dbr", ["Devbox", "Version", "Phase", "Image", "Age"]),
    ],
)
def test_crd_names_versions_and_columns(
    kind: str, plural: str, short: str, columns: list[str]
) -> None:
    crd = _crd(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP == "devbox.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "plural": plural,
        "singular": kind.lower(),
        "kind": kind,
        "listKind": f"{kind}List",
        "shortNames": [short],
        "categories": ["devbox"],
    }
    (version,) = spec["versions"]
    assert version["name"] == VERSION == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    printed = version["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    assert printed[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in printed:
        if column["name"] == "Image":
            assert column["priority"] == 1
        # Every column points at a field the schema has.
        if not column["jsonPath"].startswith(".metadata."):
            _node_at(version["schema"]["openAPIV3Schema"], column["jsonPath"])


def _node_at(schema: JSON, json_path: str) -> JSON:
    node = schema
    for part in json_path.strip(".").split("."):
        node = node["properties"][part]
    return node


def test_devbox_columns_point_at_the_fields_the_brief_names() -> None:
    columns = {
        c["name"]: c["jsonPath"]
        for c in _crd("Devbox")["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns == {
        "Runtime": ".spec.runtimeRef.name",
        "State": ".spec.state",
        "Phase": ".status.phase",
        "Node": ".status.nodeName",
        "Age": ".metadata.creationTimestamp",
    }


FORBIDDEN = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "const", "uniqueItems"}


def _walk(node: JSON, path: str) -> list[tuple[str, JSON]]:
    nodes = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        nodes.extend(_walk(child, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        nodes.extend(_walk(node["items"], f"{path}[*]"))
    if isinstance(node.get("additionalProperties"), dict):
        nodes.extend(_walk(node["additionalProperties"], f"{path}{{*}}"))
    return nodes


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
def test_schema_is_structural(model: type[Resource]) -> None:
    schema = _schema(model)
    for path, node in _walk(schema, model.__name__):
        assert isinstance(node.get("type"), str), f"{path} has no type"
        assert not FORBIDDEN & set(node), f"{path} uses {FORBIDDEN & set(node)}"
        if node["type"] == "object" and path != f"{model.__name__}.metadata":
            assert node.get("properties") or node.get("additionalProperties"), path
        if node["type"] == "array":
            assert "items" in node, path
        if "enum" in node:
            assert all(isinstance(v, str) for v in node["enum"]), path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key]
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
def test_simulated_api_server_accepts_the_schema(model: type[Resource]) -> None:
    assert openapi.structural_errors(_schema(model), "openAPIV3Schema") == []


def test_constraints_flow_from_the_models() -> None:
    devbox = _schema(Devbox)["properties"]
    spec, status = devbox["spec"]["properties"], devbox["status"]["properties"]
    port = spec["ports"]["items"]["properties"]
    assert port["port"] == {
        "type": "integer",
        "description": "Port number inside the devbox.",
        "minimum": 1,
        "maximum": 65535,
    }
    assert port["name"]["maxLength"] == 15
    assert port["protocol"]["enum"] == ["TCP", "UDP"]
    assert port["protocol"]["default"] == "TCP"
    assert spec["ports"]["maxItems"] == 20
    assert spec["ports"]["x-kubernetes-list-map-keys"] == ["name"]
    assert spec["env"]["maxItems"] == 100
    assert spec["env"]["items"]["properties"]["name"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    assert spec["state"]["default"] == "Running"
    assert spec["networkMode"]["enum"] == ["NodePort", "Tunnel"]
    assert spec["resources"]["default"] == {}
    assert spec["autoStop"]["properties"]["stopAt"]["format"] == "date-time"
    assert devbox["spec"]["required"] == ["runtimeRef", "owner"]
    assert status["phase"]["enum"] == [
        "Pending",
        "Starting",
        "Running",
        "Stopping",
        "Stopped",
        "Failed",
        "Deleting",
    ]
    assert status["podIP"]["type"] == "string"
    commit = status["commits"]["items"]["properties"]
    assert commit["mode"]["enum"] == ["Stop", "Snapshot", "Restore"]
    assert commit["status"]["enum"] == ["Pending", "Committing", "Succeeded", "Failed"]
    runtime = _schema(Runtime)["properties"]["spec"]["properties"]
    assert runtime["class"]["enum"] == ["OS", "Language", "Framework"]
    assert runtime["title"]["minLength"] == 1
    assert runtime["title"]["maxLength"] == 63
    assert runtime["visibility"]["default"] == "Private"
    assert runtime["workingDir"]["default"] == "/root"
    assert runtime["sshPort"]["default"] == 22
    release = _schema(DevboxRelease)["properties"]["spec"]["properties"]
    assert release["notes"]["maxLength"] == 4096
    assert re.fullmatch(release["version"]["pattern"].strip("^$"), "v1.2.3")


# --- the official runtimes --------------------------------------------------------------------


def _runtime_manifests() -> list[tuple[str, JSON]]:
    found = []
    for path in sorted(RUNTIME_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Runtime":
                found.append((path.name, doc))
    return found


def test_official_runtimes_exist() -> None:
    names = {doc["metadata"]["name"] for _, doc in _runtime_manifests()}
    assert {"debian-12", "ubuntu-24-04", "python-3-12", "go-1-23", "node-22"} <= names


def test_runtime_namespace_manifest() -> None:
    namespace = yaml.safe_load((RUNTIME_DIR / "namespace.yaml").read_text())
    assert namespace["apiVersion"] == "v1"
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["name"] == SYSTEM_NAMESPACE == "devbox-system"


@pytest.mark.parametrize(
    ("file", "doc"), _runtime_manifests(), ids=[f for f, _ in _runtime_manifests()]
)
def test_official_runtime_is_valid(file: str, doc: JSON) -> None:
    runtime = Runtime.model_validate(doc)
    assert runtime.namespace == SYSTEM_NAMESPACE
    assert runtime.spec.visibility == Visibility.PUBLIC
    assert dns1123_label_errors(runtime.name) == []
    assert file == f"{runtime.name}.yaml"
    assert runtime.spec.image.startswith("docker.io/library/")
    assert _causes(Runtime, doc) == []
    assert _causes(Runtime, runtime.to_k8s()) == []


# --- the models and the schemas agree ---------------------------------------------------------


def _time_text(value: datetime) -> str:
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(spec)


_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(_time_text)


def _strategy(node: JSON, defs: JSON) -> st.SearchStrategy[Any]:
    """Values valid for one node of a model's (pydantic) JSON Schema."""
    if "$ref" in node:
        target = defs[node["$ref"].removeprefix("#/$defs/")]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        return st.one_of([_strategy(rest | option, defs) for option in options])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "const" in node:
        return st.just(node["const"])
    kind = node.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**53)), node.get("maximum", 2**53))
    if kind == "string":
        low, high = node.get("minLength", 0), node.get("maxLength", 100)
        if node.get("format") == "date-time":
            return _TIMES
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True).filter(
                lambda s: low <= len(s) <= high
            )
        return st.text(min_size=low, max_size=min(high, 64))
    if kind == "array":
        keys = node.get("x-kubernetes-list-map-keys")
        unique_by = (lambda item: tuple(item[k] for k in keys)) if keys else None
        return st.lists(
            _strategy(node["items"], defs),
            min_size=node.get("minItems", 0),
            max_size=min(node.get("maxItems", 4), 4),
            unique_by=unique_by,
        )
    if kind == "object" and "properties" in node:
        required = set(node.get("required", []))
        properties = node["properties"]
        return st.fixed_dictionaries(
            {k: _strategy(v, defs) for k, v in properties.items() if k in required},
            optional={k: _strategy(v, defs) for k, v in properties.items() if k not in required},
        )
    if kind == "object":
        return st.dictionaries(st.text(max_size=10), _strategy(node["additionalProperties"], defs))
    raise AssertionError(f"no strategy for {node!r}")


def _from_model(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _strategy(schema, schema.get("$defs", {}))


def _objects(model: type[Resource]) -> st.SearchStrategy[JSON]:
    fields = model.model_fields
    spec_model = fields["spec"].annotation
    status_model = fields["status"].annotation
    assert isinstance(spec_model, type)
    assert issubclass(spec_model, BaseModel)
    assert isinstance(status_model, type)
    assert issubclass(status_model, BaseModel)
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just(f"{GROUP}/{VERSION}"),
            "kind": st.just(model.kind_name()),
            "metadata": st.just({"name": "sample", "namespace": "user-a"}),
            "spec": _from_model(spec_model),
        },
        optional={"status": _from_model(status_model)},
    )


AGREEMENT = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(st.data())
@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
def test_objects_valid_for_the_model_are_valid_for_the_schema(
    model: type[Resource], data: st.DataObject
) -> None:
    obj = data.draw(_objects(model))
    parsed = model.model_validate(obj)  # the generator only makes valid objects
    dumped = parsed.to_k8s()
    assert _causes(model, dumped) == []
    assert _causes(model, obj) == []
    assert model.model_validate(dumped).to_k8s() == dumped
    # The API server's pruning and defaulting agree with the model's defaults.
    processed, causes = openapi.process_custom_object(_schema(model), obj)
    assert causes == []
    assert model.model_validate(processed).to_k8s() == dumped


BAD_VALUES: list[tuple[type[Resource], str, Any]] = [
    (Devbox, "spec.state", "Paused"),
    (Devbox, "spec.networkMode", "HostPort"),
    (Devbox, "spec.ports.0.port", 0),
    (Devbox, "spec.ports.0.port", 70000),
    (Devbox, "spec.ports.0.protocol", "SCTP"),
    (Devbox, "spec.ports.0.name", "Not-A-Label"),
    (Devbox, "spec.env.0.name", "1BAD"),
    (Devbox, "spec.resources.cpu", "lots"),
    (Devbox, "spec.autoStop.idleTimeoutSeconds", -5),
    (Devbox, "spec.owner", ""),
    (Devbox, "status.phase", "Sleeping"),
    (Devbox, "status.commits.0.digest", "md5:1234"),
    (Runtime, "spec.class", "Database"),
    (Runtime, "spec.image", "Not An Image"),
    (Runtime, "spec.sshPort", 0),
    (Runtime, "spec.title", "x" * 64),
    (Runtime, "spec.workingDir", "relative"),
    (DevboxRelease, "spec.version", "latest"),
    (DevboxRelease, "spec.notes", "x" * 4097),
    (DevboxRelease, "status.phase", "Done"),
]

GOOD: dict[type[Resource], JSON] = {
    Devbox: {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "Devbox",
        "spec": {
            "runtimeRef": {"name": "debian-12", "namespace": "devbox-system"},
            "owner": "alice",
            "ports": [{"name": "http", "port": 8080}],
            "env": [{"name": "A", "value": "1"}],
            "resources": {"cpu": "2"},
            "autoStop": {"idleTimeoutSeconds": 60},
        },
        "status": {
            "phase": "Running",
            "commits": [
                {"id": "c1", "mode": "Stop", "image": "reg/a:c1", "digest": "sha256:" + "0" * 64}
            ],
        },
    },
    Runtime: {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "Runtime",
        "spec": {"class": "OS", "title": "Debian", "version": "12", "image": "debian:12"},
    },
    DevboxRelease: {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "DevboxRelease",
        "spec": {"devbox": "box", "version": "v1.0.0"},
        "status": {"phase": "Succeeded"},
    },
}


def _set(obj: JSON, path: str, value: Any) -> JSON:
    obj = yaml.safe_load(yaml.safe_dump(obj))  # a deep copy
    *parents, last = path.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return obj


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.__name__)
def test_good_samples_pass_both(model: type[Resource]) -> None:
    model.model_validate(GOOD[model])
    assert _causes(model, GOOD[model]) == []


@pytest.mark.parametrize(
    ("model", "path", "value"), BAD_VALUES, ids=[f"{m.__name__}:{p}" for m, p, _ in BAD_VALUES]
)
def test_bad_values_are_rejected_by_model_and_schema(
    model: type[Resource], path: str, value: Any
) -> None:
    bad = _set(GOOD[model], path, value)
    with pytest.raises(ValidationError):
        model.model_validate(bad)
    assert _causes(model, bad) != []
