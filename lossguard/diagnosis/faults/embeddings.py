"""Pre-trained embedding faults: OOV rows, misalignment, drift.

`check_embedding(layer, vocabulary, vectors)` compares an `Embedding`'s rows
with the vectors of the words its ids stand for. Layers made by
`lossguard.glove.glove_embedding` remember their vocabulary and vectors
(`lossguard.glove.embedding_source`), so `diagnose` and `LossSanityCallback`
check them without being told. Drift of fine-tuned rows is measured by
`lossguard.diagnosis.embedding_math.drift`, watched by
`lossguard.EmbeddingDriftMonitor` after each epoch and judged here.
"""

from __future__ import annotations

import logging

import numpy as np

from lossguard.diagnosis.embedding_math import (
    cosines,
    embedding_layers,
    embedding_rows,
    words_by_id,
)
from lossguard.diagnosis.registry import fault
from lossguard.glove import RESERVED, embedding_source

logger = logging.getLogger("lossguard")

#: Share of real vocabulary words without a vector that makes a warning.
OOV_SHARE = 0.1
#: Cosine above which a row "is" its word's vector.
MATCH_COSINE = 0.99
#: Offsets tried when rows do not match their words.
OFFSETS = range(-3, 4)
#: Words sampled for the alignment check.
SAMPLE = 500

EMBEDDING_OOV_ROWS = fault(
    "EMBEDDING_OOV_ROWS",
    "warning",
    "Words without a pre-trained vector",
    "Many vocabulary words have no vector, and the frozen layer cannot learn them.",
)
EMBEDDING_MISALIGNED = fault(
    "EMBEDDING_MISALIGNED",
    "error",
    "Embedding rows do not match the tokenizer's ids",
    "Rows hold other words' vectors (an offset, another vocabulary).",
)
EMBEDDING_DRIFT = fault(
    "EMBEDDING_DRIFT",
    "info",
    "Fine-tuned embeddings drifted",
    "Fine-tuned rows moved far from their pre-trained values.",
)


def _layer_name(layer) -> str:
    return getattr(layer, "name", "embedding matrix")


def check_embedding(layer, vocabulary=None, vectors=None, *, lowercase=False):
    """Findings about one embedding layer (or matrix) and its pre-trained source.

    Args:
        layer: A `keras.layers.Embedding` (built) or a `(rows, dim)` matrix.
        vocabulary: The words by id (a list, or a word -> id dict) the
            tokenizer uses. Default: what `glove_embedding` recorded.
        vectors: The `GloveVectors` the rows should come from. Default: what
            `glove_embedding` recorded.
        lowercase: Look words up lower-cased.

    Returns:
        A list of `Finding`s: `EMBEDDING_OOV_ROWS` (frozen layers only, where
        many real words have no vector) and `EMBEDDING_MISALIGNED` (rows that
        are not their words' vectors, with the offset that would fit).

    Raises:
        ValueError: When the vocabulary or vectors do not fit the layer.
    """
    recorded = None if isinstance(layer, np.ndarray) else embedding_source(layer)
    if vocabulary is None and vectors is None and recorded:
        vocabulary, vectors, lowercase = recorded
    rows = embedding_rows(layer)
    name = _layer_name(layer)
    if vocabulary is None or vectors is None:
        return _zero_rows(rows, layer, name)
    words = words_by_id(vocabulary)
    if rows.shape[1] != vectors.dim:
        raise ValueError(
            f"`vectors` have {vectors.dim} dims but {name} has {rows.shape[1]}. "
            "Pass the vectors the layer was built from."
        )
    keys = [
        None if w is None or w in RESERVED else (w.lower() if lowercase else w)
        for w in words
    ]
    real = [i for i, k in enumerate(keys) if k is not None]
    positions = vectors.index.get_indexer([keys[i] for i in real])
    has = positions >= 0
    found = []
    trainable = bool(getattr(layer, "trainable", False))
    oov_share = 1 - has.mean() if real else 0.0
    if oov_share > OOV_SHARE and not trainable:
        missing = [words[i] for i, h in zip(real, has, strict=True) if not h]
        found.append(_oov_finding(name, oov_share, missing, len(real)))
    ids = np.asarray(real)[has]
    pos = positions[has]
    inside = ids < rows.shape[0]
    ids, pos = ids[inside], pos[inside]
    short = len(words) > rows.shape[0]
    extra = {"rows": rows.shape[0], "vocabulary_ids": len(words)} if short else {}
    misaligned = []
    if ids.size:
        pick = np.random.default_rng(0).permutation(ids.size)[:SAMPLE]
        misaligned = _alignment(
            rows, vectors.vectors, ids[pick], pos[pick], words, layer, extra
        )
    if short and not misaligned:
        misaligned = [_too_few_rows(name, len(words), rows.shape[0])]
    return found + misaligned


def _too_few_rows(name, ids, rows):
    return EMBEDDING_MISALIGNED.finding(
        f"The vocabulary has {ids} ids but '{name}' has {rows} rows: ids "
        f"{rows}..{ids - 1} have no row.",
        "An embedding looks rows up by id; an id past the last row fails on CPU "
        "and silently reads zeros on GPU, so those words never reach the model.",
        "Build the matrix from the same word -> id map the tokenizer uses, with "
        "one row per id (reserved ids included).",
        {"layer": name, "rows": rows, "vocabulary_ids": ids, "best_offset": 0},
    )


def _oov_finding(name, share, missing, total):
    return EMBEDDING_OOV_ROWS.finding(
        f"{share:.1%} of the {total} vocabulary words of '{name}' have no "
        f"pre-trained vector (e.g. {', '.join(map(str, missing[:8]))}).",
        "Their rows are zeros or random numbers that carry no meaning, and the "
        "layer is frozen (trainable=False), so training can never give them one: "
        "every such word looks the same to the model (zeros) or like noise.",
        "Normalise tokens the way the vectors' corpus was (GloVe 6B is "
        "lower-cased: lowercase=True), use a larger vector vocabulary, or "
        "fine-tune the embedding (trainable=True, after a few frozen epochs).",
        {
            "layer": name,
            "oov_share": float(share),
            "missing": len(missing),
            "vocabulary": total,
            "most_frequent_missing": list(missing[:10]),
        },
    )


def _zero_rows(rows, layer, name):
    """Without a vocabulary: all-zero rows of a frozen layer (ids 0, 1 aside)."""
    if bool(getattr(layer, "trainable", True)) or rows.shape[0] < 3:
        return []
    zero = ~np.any(rows[2:] != 0, axis=1)
    share = float(zero.mean())
    if share <= OOV_SHARE:
        return []
    ids = (np.flatnonzero(zero) + 2)[:10].tolist()
    return [_oov_finding(name, share, [f"id {i}" for i in ids], rows.shape[0] - 2)]


def _alignment(rows, table, ids, positions, words, layer, extra):
    """EMBEDDING_MISALIGNED when rows fit their words' vectors at another offset."""
    name = _layer_name(layer)
    target = table[positions]
    share = {}
    for offset in OFFSETS:
        shifted = ids + offset
        ok = (shifted >= 0) & (shifted < rows.shape[0])
        if not ok.any():
            continue
        cos = cosines(rows[shifted[ok]], target[ok])
        share[offset] = float(np.mean(cos > MATCH_COSINE))
    at_zero = share.get(0, 0.0)
    best = max(share, key=share.get)
    frozen = not bool(getattr(layer, "trainable", False))
    shifted = best != 0 and share[best] >= 0.5 and at_zero < 0.5
    unrelated = frozen and max(share.values()) < 0.1
    if not (shifted or unrelated):
        return []
    cos0 = cosines(rows[ids], target)
    bad = [words[i] for i in ids[cos0 <= MATCH_COSINE][:8]]
    if shifted:
        where = f"row id + {best}" if best > 0 else f"row id - {-best}"
        message = (
            f"Only {at_zero:.0%} of {len(ids)} sampled words of '{name}' have "
            f"their own vector in their row, but {share[best]:.0%} find it in "
            f"{where}: the matrix is off by {best}."
        )
    else:
        message = (
            f"None of the best offsets fit: {at_zero:.0%} of {len(ids)} sampled "
            f"words of '{name}' have their vector in their row (at most "
            f"{max(share.values()):.0%} at offsets {min(OFFSETS)}..{max(OFFSETS)}); "
            "the rows come from another vocabulary."
        )
    return [
        EMBEDDING_MISALIGNED.finding(
            message,
            "An embedding row is looked up by the tokenizer's id. If the matrix "
            "was built with another word -> id map (a reserved 0 or OOV id "
            "added or dropped, a different vocabulary), every word is fed "
            "another word's vector: the model learns from shuffled meanings, "
            "and a frozen layer can never undo it.",
            "Build the matrix from the same word -> id map the tokenizer uses "
            "(lossguard.glove.embedding_matrix(vectorizer.get_vocabulary(), "
            "vectors)), keeping its reserved ids.",
            {
                "layer": name,
                "match_share": at_zero,
                "best_offset": best,
                "best_offset_share": share[best],
                "sampled": int(len(ids)),
                "mismatched_words": bad,
                **extra,
            },
        )
    ]


@EMBEDDING_OOV_ROWS.check("model")
@EMBEDDING_MISALIGNED.check("model")
def check_model_embeddings(ctx) -> list:
    """Findings for the model's embedding layers.

    Layers built with `glove_embedding` are checked against what they were
    built from; given `vocabulary` and `vectors`, every layer of the vectors'
    width is checked against them; other frozen layers for all-zero rows.
    """
    found = []
    for layer in embedding_layers(ctx.model):
        if not layer.built:
            continue
        given = ctx.vectors is not None and ctx.vocabulary is not None
        if given and layer.output_dim != ctx.vectors.dim:
            continue
        try:
            found += check_embedding(
                layer, ctx.vocabulary if given else None, ctx.vectors if given else None
            )
        except ValueError as error:
            if given:
                raise
            logger.info("lossguard skipped %s: %s", layer.name, error)
    return found


@EMBEDDING_DRIFT.check("epoch")
def embedding_drift(ctx):
    """EMBEDDING_DRIFT when the mean cosine of `drift` fell below `threshold`."""
    if ctx.drift["mean_cosine"] >= ctx.threshold:
        return None
    return EMBEDDING_DRIFT.finding(
        f"After epoch {ctx.epoch} the fine-tuned rows of '{ctx.layer_name}' have "
        f"a mean cosine of {ctx.drift['mean_cosine']:.3f} to their pre-trained "
        f"values (min {ctx.drift['min_cosine']:.3f}); "
        f"{ctx.drift['moved_share']:.1%} of {ctx.drift['rows']} rows moved.",
        "Fine-tuning moves only the rows of words in the training data, and a "
        "small data set can pull them far from the geometry the vectors learned "
        "on billions of tokens: the model then over-fits and words it saw rarely "
        "drift away from the unseen words they were close to.",
        "Train with the embedding frozen first, then fine-tune with a lower "
        "learning rate (or fewer epochs); or keep it frozen.",
        {
            "layer": ctx.layer_name,
            "threshold": ctx.threshold,
            **{k: ctx.drift[k] for k in ("mean_cosine", "min_cosine", "moved_share")},
        },
        epoch=ctx.epoch,
    )
