"""Splicing a large file from the previous build's byte ranges gives the same bytes as writing it
whole: for any old and new list of graphs (edited, added, deleted, empty), with and without a
separator between pieces. Hypothesis, derandomised."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.outputs import Outputs, Splice, content_key

GRAPH = st.sampled_from([f"g{i:02d}" for i in range(12)])
DATA = st.binary(max_size=40)
HEAD, TAIL = b'{"head":[', b"]}\n"


def _write(path: Path, graphs: dict[str, bytes], sep: bytes, old: Path | None = None, layout: dict | None = None,
           background: bool = False) -> dict:
    """The file of ``graphs`` (in key order) as write_exports puts it together."""
    layout = layout or {}
    with open(path, "wb", buffering=0) as fh:
        sp = Splice(fh, old, sep, background=background)
        sp.write(HEAD)
        for g in sorted(graphs):
            key = content_key(graphs[g])
            before = layout.get(g)
            if old is not None and before is not None and before[0] == key:
                sp.copy(g, key, before[1], before[2])
            else:
                sp.piece(g, key, graphs[g])
        sp.write(TAIL)
        sp.close()
    return sp.pieces


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=st.dictionaries(GRAPH, DATA, max_size=10), new=st.dictionaries(GRAPH, DATA, max_size=10),
       keep=st.sets(GRAPH), sep=st.sampled_from([b"", b",\n"]), background=st.booleans())
def test_a_spliced_file_is_the_file_written_whole(tmp_path_factory, old, new, keep, sep, background):
    tmp = tmp_path_factory.mktemp("splice")
    # Graphs in `keep` that the old file had come through unchanged: the part a splice copies.
    new = {**new, **{g: old[g] for g in keep if g in old}}
    layout = _write(tmp / "old", old, sep)
    spliced = _write(tmp / "spliced", new, sep, old=tmp / "old", layout=layout, background=background)
    _write(tmp / "whole", new, sep)
    assert (tmp / "spliced").read_bytes() == (tmp / "whole").read_bytes()
    # The layout it records locates every piece in the new file, for the next splice.
    data = (tmp / "spliced").read_bytes()
    for g, (key, offset, length) in spliced.items():
        assert content_key(data[offset:offset + length]) == key == content_key(new[g])


def test_copies_of_neighbouring_pieces_are_merged(tmp_path):
    """Unchanged neighbours are one copy, whatever the separator; the piece of a changed graph
    splits the run."""
    graphs = {f"g{i}": f"piece {i}".encode() for i in range(6)}
    layout = _write(tmp_path / "old", graphs, b",\n")
    calls = []

    class Counting(Splice):
        def _flush(self):
            if self.pending is not None:
                calls.append(tuple(self.pending))
            super()._flush()

    edited = {**graphs, "g3": b"edited"}
    with open(tmp_path / "new", "wb", buffering=0) as fh:
        sp = Counting(fh, tmp_path / "old", b",\n")
        sp.write(HEAD)
        for g in sorted(edited):
            before = layout[g]
            if before[0] == content_key(edited[g]):
                sp.copy(g, before[0], before[1], before[2])
            else:
                sp.piece(g, content_key(edited[g]), edited[g])
        sp.write(TAIL)
        sp.close()
    assert len(calls) == 2  # g0..g2, then g4..g5
    _write(tmp_path / "whole", edited, b",\n")
    assert (tmp_path / "new").read_bytes() == (tmp_path / "whole").read_bytes()


@pytest.mark.parametrize("background", [False, True])
def test_an_old_file_shorter_than_its_layout_is_an_error(tmp_path, background):
    """A copy that runs past the end of the old file fails, and a background copy's failure
    reaches the caller at close(), never lost in the thread."""
    graphs = {f"g{i}": f"piece {i}".encode() for i in range(4)}
    layout = _write(tmp_path / "old", graphs, b"")
    (tmp_path / "old").write_bytes((tmp_path / "old").read_bytes()[:len(HEAD) + 3])
    with open(tmp_path / "new", "wb", buffering=0) as fh:
        sp = Splice(fh, tmp_path / "old", b"", background=background)
        sp.write(HEAD)
        for g in sorted(graphs):
            sp.copy(g, *layout[g])
        with pytest.raises(OSError, match="ended early"):
            sp.close()
    assert sp.old_fd is None


def test_a_background_splice_has_its_final_size_before_its_copies_are_done(tmp_path, monkeypatch):
    """settle() gives the file its final size while the thread is still held up (the downloads
    page reads the sizes during the render); close() then completes the same bytes."""
    graphs = {f"g{i}": f"piece {i}".encode() * 50 for i in range(6)}
    layout = _write(tmp_path / "old", graphs, b",\n")
    edited = {**graphs, "g2": b"edited"}
    gate = threading.Event()
    run = Splice._run

    def held(self, *args):
        gate.wait(10)
        run(self, *args)

    monkeypatch.setattr(Splice, "_run", held)
    with open(tmp_path / "new", "wb", buffering=0) as fh:
        sp = Splice(fh, tmp_path / "old", b",\n", background=True)
        sp.write(HEAD)
        for g in sorted(edited):
            if layout[g][0] == content_key(edited[g]):
                sp.copy(g, *layout[g])
            else:
                sp.piece(g, content_key(edited[g]), edited[g])
        sp.write(TAIL)
        sp.settle()
        assert (tmp_path / "new").stat().st_size == sp.pos
        gate.set()
        sp.close()
    monkeypatch.undo()
    _write(tmp_path / "whole", edited, b",\n")
    assert (tmp_path / "new").read_bytes() == (tmp_path / "whole").read_bytes()


def test_a_background_splice_left_by_an_error_stops_without_writing_the_rest(tmp_path, monkeypatch):
    """The build failed while the thread was busy with the first write: it finishes that one,
    writes nothing more, and is joined before the caller goes on (to remove the folder)."""
    graphs = {f"g{i}": f"piece {i}".encode() for i in range(4)}
    gate, busy = threading.Event(), threading.Event()
    run = Splice._run

    def held(self, *args):
        busy.set()
        gate.wait(10)
        run(self, *args)

    monkeypatch.setattr(Splice, "_run", held)
    with open(tmp_path / "new", "wb", buffering=0) as fh:
        with pytest.raises(RuntimeError, match="render failed"):
            with Splice(fh, None, b"", background=True) as sp:
                sp.write(HEAD)
                for g in sorted(graphs):
                    sp.piece(g, content_key(graphs[g]), graphs[g])
                assert busy.wait(10)
                threading.Timer(0.2, gate.set).start()
                raise RuntimeError("render failed")
        assert sp._thread is None
        assert (tmp_path / "new").read_bytes() == HEAD


def test_without_a_cache_files_are_compared_byte_for_byte(tmp_path):
    """No record: every file is written, and at the end only files with the same bytes as the
    old ones become links to them."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.html").write_bytes(b"same")
    (site / "b.html").write_bytes(b"old")
    outputs = Outputs.load(site, None)
    assert not outputs.enabled
    new = tmp_path / "new"
    new.mkdir()
    outputs.link_or_write(new / "a.html", "a.html", b"same")
    outputs.link_or_write(new / "b.html", "b.html", b"new")
    assert (new / "a.html").stat().st_ino != (site / "a.html").stat().st_ino  # written, not linked
    assert outputs.finish(new) == 1
    assert (new / "a.html").stat().st_ino == (site / "a.html").stat().st_ino
    assert (new / "b.html").read_bytes() == b"new" and (site / "b.html").read_bytes() == b"old"
    assert sorted(p.name for p in new.iterdir()) == ["a.html", "b.html"]  # no link file left behind


def test_finish_trusts_a_linked_file_by_its_inode_and_stats_one_replaced_since(tmp_path, monkeypatch):
    """A file a writer linked from the old tree is recorded as the old one was, without a stat of
    it; one linked and then replaced by new bytes (a search bundle removed after a partial link,
    and written again by Pagefind) is recorded with its own identity and key, as is a written one."""
    import os

    from evidence.cache import BuildCache

    cache = BuildCache(tmp_path / "cache")
    site = tmp_path / "site"
    site.mkdir()
    first = Outputs.load(site, cache)
    for name in ("a.html", "b.html", "c.html"):
        first.link_or_write(site / name, name, name.encode())
    first.finish(site)
    first.save()
    outputs = Outputs.load(site, cache)
    new = tmp_path / "new"
    new.mkdir()
    for name in ("a.html", "b.html"):
        assert outputs.link(new / name, name, content_key(name.encode()))
    (new / "b.html").unlink()
    (new / "b.html").write_bytes(b"other bytes")
    outputs.keys["b.html"] = content_key(b"other bytes")
    outputs.link_or_write(new / "c.html", "c.html", b"changed")
    stated: list[str] = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        stated.append(os.path.basename(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    assert outputs.finish(new) == 1
    monkeypatch.undo()
    assert "a.html" not in stated and "b.html" in stated
    assert outputs.record["a.html"] == outputs.previous["a.html"]
    for name, data in (("b.html", b"other bytes"), ("c.html", b"changed")):
        st = real_stat(new / name)
        assert outputs.record[name] == (content_key(data), st.st_ino, st.st_size, st.st_mtime_ns)
    assert (site / "b.html").read_bytes() == b"b.html"  # the old tree is as it was


def test_relative_name_is_relative_to_without_pathlib(tmp_path):
    from evidence.outputs import relative_name

    assert relative_name(tmp_path / "cases" / "a.html", tmp_path) == "cases/a.html"
    assert relative_name(str(tmp_path / "index.html"), tmp_path) == "index.html"
    with pytest.raises(ValueError):  # a sibling folder whose name starts like this one's is not inside it
        relative_name(tmp_path.parent / (tmp_path.name + "2") / "a.html", tmp_path)


def test_walk_names_lists_every_file_with_its_name_under_the_folder(tmp_path):
    """The names are those of a glob made relative with pathlib; folders are not listed, and a
    link to a folder is not followed."""
    import os

    from evidence.outputs import walk_names

    for rel in ("index.html", "cases/a.html", "cases/a.ttl", "drugs/x/patients-2.html", ".hidden"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "empty").mkdir()
    os.symlink(tmp_path / "cases", tmp_path / "linked")
    got = sorted(walk_names(tmp_path))
    assert [rel for _p, rel in got] == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file() and "linked" not in p.parts)
    assert all(Path(p).read_text() == rel for p, rel in got)


# ------------------------------------------------------------------ the replaced site folder

def _tree(root: Path, n: int = 30) -> Path:
    for i in range(n):
        (root / "cases" / f"c{i}").mkdir(parents=True, exist_ok=True)
        (root / "cases" / f"c{i}" / "index.html").write_text(f"case {i}")
    return root


def _gone(path: Path, timeout: float = 30.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while path.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return not path.exists()


def test_a_replaced_site_folder_is_deleted_by_a_process_of_its_own(tmp_path, monkeypatch):
    """The build does not wait for the old site to be deleted: it is moved into the cache's trash
    at once (so the site's parent folder holds only the site), and deleted there with whatever an
    earlier deleter left, by another process (nothing is deleted in this one)."""
    import shutil

    from evidence.cache import TRASH, BuildCache
    from evidence.outputs import discard_tree

    here: list[str] = []
    monkeypatch.setattr(shutil, "rmtree", lambda path, *a, **k: here.append(str(path)))

    cache = BuildCache(tmp_path / "cache")
    site = tmp_path / "out"
    site.mkdir()
    left = _tree(tmp_path / "cache" / TRASH / "left-by-a-stopped-deleter", 3)
    old = _tree(site / ".site.old-1")
    discard_tree(old, cache)
    assert not old.exists() and list(site.iterdir()) == []
    trash = tmp_path / "cache" / TRASH
    assert _gone(left) and all(_gone(p) for p in list(trash.iterdir())), sorted(trash.rglob("*"))
    assert here == []


def test_a_replaced_site_folder_is_deleted_at_once_without_a_cache_or_a_rename(tmp_path, monkeypatch):
    from evidence.cache import BuildCache
    from evidence.outputs import discard_tree

    old = _tree(tmp_path / ".site.old-1")
    discard_tree(old, BuildCache(None))
    assert not old.exists()

    old = _tree(tmp_path / ".site.old-2")
    real = Path.rename

    def across_devices(self, target):  # the cache on another file system: the rename fails
        if self == old:
            raise OSError(18, "Invalid cross-device link")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", across_devices)
    discard_tree(old, BuildCache(tmp_path / "cache"))
    assert not old.exists()
    monkeypatch.setattr(Path, "rename", real)

    import os

    for failure in (OSError(11, "Resource temporarily unavailable"), NotImplementedError("no setsid here")):
        def no_process(*args, failure=failure, **kwargs):
            raise failure

        monkeypatch.setattr(os, "posix_spawn", no_process)
        old = _tree(tmp_path / ".site.old-3")
        discard_tree(old, BuildCache(tmp_path / "cache"))
        assert not old.exists() and not (tmp_path / "cache" / "trash").exists()


def test_pruning_the_cache_passes_over_the_trash(tmp_path):
    """The trash is not a stage: prune neither deletes in it nor fails while a deleter empties it."""
    from evidence.cache import TRASH, BuildCache

    cache = BuildCache(tmp_path / "cache")
    cache.put("shacl", "k", b"kept")  # a stage of single files, as prune walks them
    tree = _tree(tmp_path / "cache" / TRASH / "old-site", 2)
    (tree / "entry.pickle").write_bytes(b"not an entry")
    assert cache.prune() == 0
    assert (tree / "entry.pickle").exists()


def test_a_rebuild_leaves_only_the_site_and_deletes_the_old_one(tmp_path):
    """End to end: the old site's files are gone from the disk (the trash empties) and the new
    site is whole, while its unchanged files were linked from the old one."""
    import shutil

    from evidence.cache import TRASH, BuildCache
    from evidence.config import load_config
    from evidence.pipeline import build

    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    shutil.copytree(root / "kb", project / "kb")
    shutil.copy(root / "evidence.toml", project / "evidence.toml")
    out, cache = tmp_path / "site" / "_site", tmp_path / "cache"
    config = load_config(project)
    build(config, out, templates=root / "site_templates", cache=BuildCache(cache))
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    inode = (out / "static" / "site.css").stat().st_ino
    report = build(config, out, templates=root / "site_templates", cache=BuildCache(cache))
    assert report.reused > 0 and (out / "static" / "site.css").stat().st_ino == inode, "an unchanged file is the old one, linked"
    assert [p.name for p in out.parent.iterdir()] == ["_site"]
    trash = list((cache / TRASH).iterdir())
    assert all(_gone(p) for p in trash)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == first


def test_a_file_that_cannot_be_written_is_named_and_a_full_disk_says_so(tmp_path, monkeypatch):
    """A full disk said only 'error: No space left on device': the write names no file. The error
    now holds the file, and its text says the disk is full; a render worker sends that text back."""
    import errno
    import types

    import evidence.outputs as outputs_module
    from evidence.errors import os_error_text
    from evidence.site_pages import _render_chunk

    class Full:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs_module, "open", lambda *a, **k: Full(), raising=False)
    dest = tmp_path / "page.html"
    with pytest.raises(OSError) as err:
        Outputs(out=tmp_path).link_or_write(dest, "page.html", b"<p>x</p>")
    assert err.value.filename == str(dest)
    text = os_error_text(err.value)
    assert str(dest) in text and "is full" in text, text

    def emit(rel, data, key, try_link=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / rel))

    pages = types.SimpleNamespace(writer=types.SimpleNamespace(emit=emit), render=lambda rel, template, ctx: "<p>x</p>")
    said = _render_chunk((pages, [("cases/a.html", "case.html", {}, None)]), (0, 1))
    assert said.startswith("cannot write the site: No space left on device: ") and str(tmp_path / "cases/a.html") in said and "is full" in said
