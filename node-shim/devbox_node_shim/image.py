"""OCI image documents for a commit: the parent image read, the new config and manifest built.

Pure functions (no calls to containerd or the registry; :mod:`commit` fetches and stores):

* :func:`parent` reads a parent image from its manifest and config JSON; the manifest
  annotation :data:`ANNOTATION_RUNTIME_LAYERS` says how many of its layers belong to the runtime
  image (absent: all of them — the container runs the runtime image itself);
* :func:`pick_platform` chooses this machine's manifest from an index;
* :func:`build` makes the new config (diff_ids, history kept consistent with the layers) and
  manifest (OCI media types, the annotation, and the ``containerd.io/gc.ref.content.*`` labels
  without which containerd's GC collects the blobs once the commit's lease is gone);
* :func:`decompress_blob` turns a layer blob (zstd, gzip, tar) back into its tar;
* :func:`chain_id` names the committed snapshot of a stack of layers.

Errors::

    ImageError   the parent image's documents cannot be used (message says why)
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zstandard

from devbox_node_shim.containerd import Descriptor

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
INDEX_TYPES = (MEDIA_INDEX, DOCKER_LIST)
_OCI_LAYER = {DOCKER_LAYER_GZIP: MEDIA_LAYER_GZIP, DOCKER_LAYER_TAR: MEDIA_LAYER_TAR}

ANNOTATION_RUNTIME_LAYERS = "dev.devbox.runtime-layers"
"""Manifest annotation: how many of the image's layers belong to the runtime image."""
CHUNK = 1 << 20


class ImageError(Exception):
    """The parent image's documents cannot be used."""


@dataclass(frozen=True)
class Layer:
    """A layer of an image: its blob and the digest of its uncompressed tar."""

    descriptor: Descriptor
    diff_id: str


@dataclass(frozen=True)
class Parent:
    """The image a container was created from."""

    config: dict[str, Any]
    layers: tuple[Layer, ...]
    runtime_layers: int
    """How many of ``layers`` (the first ones) belong to the runtime image."""

    @property
    def runtime(self) -> tuple[Layer, ...]:
        return self.layers[: self.runtime_layers]

    @property
    def own(self) -> tuple[Layer, ...]:
        """The devbox's own layers, above the runtime image's."""
        return self.layers[self.runtime_layers :]


@dataclass(frozen=True)
class Documents:
    """The new image's config and manifest, and the manifest's GC labels."""

    config: Descriptor
    config_bytes: bytes
    manifest: Descriptor
    manifest_bytes: bytes
    gc_labels: dict[str, str]


def parent(manifest: Mapping[str, Any], config: Mapping[str, Any]) -> Parent:
    """The parent image described by its manifest and config."""
    try:
        descriptors = [oci_layer(Descriptor.from_oci(d)) for d in manifest.get("layers", [])]
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ImageError(f"the image's manifest or config is malformed ({exc})") from exc
    if len(diff_ids) != len(descriptors):
        raise ImageError(
            f"the image's config lists {len(diff_ids)} layers, its manifest {len(descriptors)}"
        )
    annotation = (manifest.get("annotations") or {}).get(ANNOTATION_RUNTIME_LAYERS, "")
    runtime = int(annotation) if str(annotation).isdigit() else len(descriptors)
    layers = tuple(Layer(d, diff_id) for d, diff_id in zip(descriptors, diff_ids, strict=True))
    return Parent(dict(config), layers, min(runtime, len(layers)))


def pick_platform(index: Mapping[str, Any]) -> Descriptor:
    """This machine's (linux) manifest in an image index."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    for entry in index.get("manifests", []):
        p = entry.get("platform") or {}
        if p.get("os", "linux") == "linux" and p.get("architecture", arch) == arch:
            return Descriptor.from_oci(entry)
    raise ImageError(f"the image has no manifest for linux/{arch}")


def oci_layer(descriptor: Descriptor) -> Descriptor:
    """The descriptor with a Docker layer media type replaced by its OCI twin (same bytes)."""
    media = _OCI_LAYER.get(descriptor.media_type, descriptor.media_type)
    return Descriptor(media, descriptor.digest, descriptor.size, descriptor.annotations)


class LayerLike(Protocol):
    """Anything with a layer's blob descriptor and diff_id."""

    @property
    def descriptor(self) -> Descriptor: ...

    @property
    def diff_id(self) -> str: ...


def build(
    base: Parent, layers: Sequence[LayerLike], own: int, *, created_by: str, comment: str
) -> Documents:
    """Config and manifest of an image made of ``layers``, the last ``own`` of them the
    devbox's (the rest the runtime image's); the history keeps one entry per layer."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    config = dict(base.config)
    config["created"] = now
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    runtime = len(layers) - own
    # One history entry per layer: the parent's entries of the layers kept (all but the new
    # one), then the new layer's.  Entries of squashed layers go with them.
    keep = len(layers) - 1
    kept: list[dict[str, Any]] = []
    counted = 0
    for entry in base.config.get("history", []):
        if not isinstance(entry, dict):
            continue
        if entry.get("empty_layer"):
            kept.append(entry)
        elif counted < keep:
            kept.append(entry)
            counted += 1
    kept += [{"created": now, "created_by": "(history unknown)"}] * (keep - counted)
    kept.append({"created": now, "created_by": created_by, "comment": comment})
    config["history"] = kept
    config_bytes = _json(config)
    config_desc = Descriptor(MEDIA_CONFIG, sha256(config_bytes), len(config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc.to_oci(),
        "layers": [layer.descriptor.to_oci() for layer in layers],
        "annotations": {ANNOTATION_RUNTIME_LAYERS: str(runtime)},
    }
    manifest_bytes = _json(manifest)
    manifest_desc = Descriptor(MEDIA_MANIFEST, sha256(manifest_bytes), len(manifest_bytes))
    gc_labels = {"containerd.io/gc.ref.content.config": config_desc.digest}
    for i, layer in enumerate(layers):
        gc_labels[f"containerd.io/gc.ref.content.l.{i}"] = layer.descriptor.digest
    return Documents(config_desc, config_bytes, manifest_desc, manifest_bytes, gc_labels)


def decompress_blob(source: Path, media_type: str, target: Path) -> None:
    """Decompress a layer blob file (zstd, gzip or plain tar) into ``target``."""
    with source.open("rb") as raw, target.open("wb") as out:
        reader: Any
        if media_type.endswith("zstd"):
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        elif media_type.endswith("gzip"):
            reader = gzip.GzipFile(fileobj=raw, mode="rb")
        else:
            reader = raw
        with reader:
            shutil.copyfileobj(reader, out, CHUNK)


def chain_id(diff_ids: Sequence[str]) -> str:
    """The OCI ChainID of a stack of layers: the name of its committed snapshot."""
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = sha256(f"{chain} {diff_id}".encode())
    return chain


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
