"""Squashing layers: applying the squash equals applying each layer in order, and it is small."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from devbox_node_shim.layer_apply import apply_layer
from devbox_node_shim.overlay_diff import OPAQUE_WHITEOUT, add_file_member
from devbox_node_shim.squash import base_from_directory, base_from_layers, squash_layers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.node_shim.trees import snapshot_tree, tree_differences

NAMES = ["a", "b", "c"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
modes = st.sampled_from([0o644, 0o600, 0o755, 0o4755])
operations = st.one_of(
    st.tuples(st.just("file"), paths, st.integers(0, 3), modes),
    st.tuples(st.just("dir"), paths, st.sampled_from([0o755, 0o700])),
    st.tuples(st.just("symlink"), paths, st.sampled_from(["a", "../b", "/c", "x"])),
    st.tuples(st.just("delete"), paths),
    st.tuples(st.just("opaque"), paths),
    st.tuples(st.just("hardlink"), paths, paths, st.integers(0, 3)),
    st.tuples(st.just("sparse"), paths),
)
layers = st.lists(st.lists(operations, min_size=1, max_size=6), min_size=1, max_size=5)


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def build_layer(ops: list[tuple], number: int) -> bytes:  # type: ignore[type-arg]
    """A valid layer tar (parent directories included, no path twice) from operations."""
    claimed: list[str] = []
    entries: dict[str, list[tuple]] = {}  # type: ignore[type-arg]
    for op in ops:
        kind, path = op[0], op[1]
        touched = [path] + ([op[2]] if kind == "hardlink" else [])
        if any(_related(p, c) for p in touched for c in claimed):
            continue
        if kind == "hardlink" and _related(op[1], op[2]):
            continue
        claimed.extend(touched)
        entries[path] = list(op)
        if kind == "hardlink":
            entries[op[2]] = ["link", op[2], path]
    out = io.BytesIO()
    mtime = 1_600_000_000 + number * 1000
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        written: set[str] = set()

        def parents(path: str) -> None:
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                parent = "/".join(parts[:depth])
                if parent not in written and parent not in entries:
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tar.addfile(info)
                    written.add(parent)

        order = sorted(entries, key=lambda p: (entries[p][0] == "link", p.split("/")))
        for path in order:
            op = entries[path]
            parents(path)
            kind = op[0]
            info = tarfile.TarInfo(path)
            info.mtime = mtime + len(written)
            info.pax_headers = {"mtime": f"{info.mtime}.{number:09d}"}
            written.add(path)
            if kind in ("file", "hardlink"):
                data = (
                    b"content %d of layer %d\n" % (op[2] if kind == "file" else op[3], number)
                ) * (1 + op[2 if kind == "file" else 3])
                info.mode = op[3] if kind == "file" else 0o640
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, op[2]
                tar.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, op[2]
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, op[2]
                tar.addfile(info)
            elif kind == "delete":
                head, _, name = path.rpartition("/")
                wh = tarfile.TarInfo(f"{head}/.wh.{name}" if head else f".wh.{name}")
                tar.addfile(wh)
            elif kind == "opaque":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                tar.addfile(tarfile.TarInfo(f"{path}/{OPAQUE_WHITEOUT}"))
                child = tarfile.TarInfo(f"{path}/kept")
                child.size = 5
                tar.addfile(child, io.BytesIO(b"kept\n"))
            elif kind == "sparse":
                data = io.BytesIO(bytes(4096) + b"island" + bytes(4096))
                info.mode = 0o644
                add_file_member(tar, info, data, [(4096, 6), (8198, 0)], 8198)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def applied(root: Path, layer_bytes: list[bytes]) -> Path:
    root.mkdir()
    for data in layer_bytes:
        apply_layer(io.BytesIO(data), root)
    return root


def squashed_members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8", errors="surrogateescape") as t:
        return t.getmembers()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(base_ops=st.lists(operations, min_size=1, max_size=8), sequence=layers)
def test_applying_the_squash_equals_applying_each_layer_in_order(
    tmp_path_factory,
    base_ops,
    sequence,  # type: ignore[no-untyped-def]
) -> None:
    tmp = tmp_path_factory.mktemp("squash")
    base = build_layer(base_ops, 0)
    tars = [build_layer(ops, i + 1) for i, ops in enumerate(sequence)]
    files = [write(tmp / f"layer{i}.tar", data) for i, data in enumerate(tars)]
    expected = snapshot_tree(applied(tmp / "expected", [base, *tars]))

    base_has = base_from_layers([write(tmp / "base.tar", base)])
    for label, predicate in (("minimal", base_has), ("all whiteouts", None)):
        out = io.BytesIO()
        squash_layers(files, out, base_has=predicate)
        got = snapshot_tree(applied(tmp / f"got-{label}", [base, out.getvalue()]))
        problems = tree_differences(expected, got)
        assert not problems, f"{label}: " + "\n".join(problems)
        if predicate is not None:
            for member in squashed_members(out.getvalue()):
                head, _, name = member.name.rpartition("/")
                if name == OPAQUE_WHITEOUT:
                    assert base_has(head), member.name
                elif name.startswith(".wh."):
                    assert base_has(f"{head}/{name[4:]}" if head else name[4:]), member.name


def test_a_log_that_grows_every_commit_costs_only_its_last_size(tmp_path: Path) -> None:
    files = []
    for commit in range(1, 11):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dir_info = tarfile.TarInfo("var")
            dir_info.type = tarfile.DIRTYPE
            tar.addfile(dir_info)
            log = b"log line\n" * (commit * 10_000)
            info = tarfile.TarInfo("var/app.log")
            info.size = len(log)
            tar.addfile(info, io.BytesIO(log))
        files.append(write(tmp_path / f"{commit}.tar", out.getvalue()))
    out = io.BytesIO()
    squash_layers(files, out)
    total = sum(f.stat().st_size for f in files)
    last = files[-1].stat().st_size
    assert len(out.getvalue()) <= last
    assert total > 5 * last
    root = applied(tmp_path / "root", [out.getvalue()])
    assert (root / "var" / "app.log").read_bytes() == b"log line\n" * 100_000


def test_a_file_created_then_deleted_in_the_squashed_layers_leaves_nothing(tmp_path: Path) -> None:
    base = build_layer([("file", "etc", 1, 0o644)], 0)
    one = build_layer([("file", "tmp/scratch", 1, 0o644), ("file", "a/keep", 2, 0o644)], 1)
    two = build_layer([("delete", "tmp/scratch"), ("delete", "etc")], 2)
    out = io.BytesIO()
    stats = squash_layers(
        [write(tmp_path / "1.tar", one), write(tmp_path / "2.tar", two)],
        out,
        base_has=base_from_directory(applied(tmp_path / "base", [base])),
    )
    names = [m.name for m in squashed_members(out.getvalue())]
    assert ".wh.etc" in names
    assert "tmp/.wh.scratch" not in names
    assert "tmp/scratch" not in names
    assert "a/keep" in names
    assert stats.dropped_whiteouts == 1


def test_a_hard_link_keeps_the_old_content_when_its_file_is_replaced_later(
    tmp_path: Path,
) -> None:
    one = build_layer([("hardlink", "b", "a", 1)], 1)  # b, and a linked to b
    two = build_layer([("file", "b", 3, 0o600)], 2)
    tars = [one, two]
    out = io.BytesIO()
    squash_layers([write(tmp_path / f"{i}.tar", t) for i, t in enumerate(tars)], out)
    expected = snapshot_tree(applied(tmp_path / "expected", tars))
    got = snapshot_tree(applied(tmp_path / "got", [out.getvalue()]))
    assert not tree_differences(expected, got)
    assert (tmp_path / "got" / "a").read_bytes() != (tmp_path / "got" / "b").read_bytes()


def test_squashing_the_same_layers_gives_the_same_bytes(tmp_path: Path) -> None:
    ops = [[("file", "a/b", 1, 0o644), ("opaque", "c")], [("delete", "a/b"), ("sparse", "s")]]
    files = [write(tmp_path / f"{i}.tar", build_layer(o, i)) for i, o in enumerate(ops)]
    first, second = io.BytesIO(), io.BytesIO()
    squash_layers(files, first)
    squash_layers(files, second)
    assert first.getvalue() == second.getvalue()
    sparse = [m for m in squashed_members(first.getvalue()) if m.name == "s"]
    assert sparse[0].sparse is not None
