"""The new image's documents: one history entry per layer, GC labels, the runtime bound."""

from __future__ import annotations

import hashlib
import json

import pytest
from devbox_node_shim.containerd import Descriptor
from devbox_node_shim.image import (
    ANNOTATION_RUNTIME_LAYERS,
    DOCKER_LAYER_GZIP,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_ZSTD,
    ImageError,
    Layer,
    Parent,
    build,
    chain_id,
    parent,
)


def _layer(n: int, media: str = MEDIA_LAYER_ZSTD) -> Layer:
    return Layer(Descriptor(media, f"sha256:{n:064x}", 100 + n), f"sha256:{n + 1000:064x}")


def _parent(layers: list[Layer], runtime: int | None, history: int | None = None) -> Parent:
    manifest = {
        "layers": [layer.descriptor.to_oci() for layer in layers],
        "annotations": {} if runtime is None else {ANNOTATION_RUNTIME_LAYERS: str(runtime)},
    }
    config = {
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(history or len(layers))],
    }
    return parent(manifest, config)


def test_an_image_without_the_annotation_is_all_runtime_and_docker_types_become_oci() -> None:
    base = parent(
        {"layers": [_layer(1, DOCKER_LAYER_GZIP).descriptor.to_oci()]},
        {"rootfs": {"diff_ids": [_layer(1).diff_id]}},
    )

    assert base.runtime_layers == 1
    assert base.own == ()
    assert base.layers[0].descriptor.media_type == MEDIA_LAYER_GZIP


def test_a_config_and_manifest_that_disagree_are_refused() -> None:
    with pytest.raises(ImageError, match="1 layers, its manifest 2"):
        parent(
            {"layers": [_layer(1).descriptor.to_oci(), _layer(2).descriptor.to_oci()]},
            {"rootfs": {"diff_ids": [_layer(1).diff_id]}},
        )


def test_new_documents_keep_one_history_entry_per_layer_and_label_every_blob() -> None:
    layers = [_layer(1), _layer(2), _layer(3)]
    base = _parent(layers[:2], runtime=1)

    docs = build(base, layers, own=2, created_by="commit", comment="c1")

    config = json.loads(docs.config_bytes)
    manifest = json.loads(docs.manifest_bytes)
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in layers]
    assert [h["created_by"] for h in config["history"]] == ["layer 0", "layer 1", "commit"]
    assert config["config"] == {"Env": ["PATH=/bin"]}
    assert manifest["annotations"] == {ANNOTATION_RUNTIME_LAYERS: "1"}
    assert manifest["config"]["digest"] == docs.config.digest
    assert docs.gc_labels == {
        "containerd.io/gc.ref.content.config": docs.config.digest,
        "containerd.io/gc.ref.content.l.0": layers[0].descriptor.digest,
        "containerd.io/gc.ref.content.l.1": layers[1].descriptor.digest,
        "containerd.io/gc.ref.content.l.2": layers[2].descriptor.digest,
    }


def test_a_squash_drops_the_history_of_the_squashed_layers() -> None:
    base = _parent([_layer(1), _layer(2), _layer(3)], runtime=1)

    docs = build(base, [_layer(1), _layer(9)], own=1, created_by="squash", comment="c")

    history = json.loads(docs.config_bytes)["history"]
    assert [h["created_by"] for h in history] == ["layer 0", "squash"]


def test_a_parent_without_history_gets_placeholder_entries() -> None:
    base = _parent([_layer(1), _layer(2)], runtime=2, history=0)

    docs = build(base, [_layer(1), _layer(2), _layer(3)], own=1, created_by="c", comment="c")

    assert len(json.loads(docs.config_bytes)["history"]) == 3


def test_chain_id_follows_the_oci_definition() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64

    assert chain_id([a]) == a
    assert chain_id([a, b]) == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
