"""`diagnose(model, data)`: the callback's checks, before (or after) training."""

from __future__ import annotations

import itertools
import json
import logging
import weakref

import numpy as np

from lossguard.diagnosis.checks import (
    check_batch,
    check_config,
    error_detail,
    sparse_label_crash,
    weight_mask_crash,
)
from lossguard.diagnosis.collect import BatchCollector
from lossguard.diagnosis.embeddings import check_model_embeddings
from lossguard.diagnosis.findings import Code, Finding, Report

#: Share of target positions equal to the padding id that counts as "most".
PADDING_SHARE = 0.5
#: Share of positions where decoder input == target that means "not shifted".
COPY_SHARE = 0.5


def _batches(x, y, sample_weight, batch_size, batches):
    """Yield (x, y, sample_weight) batches from arrays, datasets or generators."""
    if y is None and not isinstance(x, np.ndarray | dict | list | tuple):
        iterator = iter(x)  # tf.data.Dataset, PyDataset, generator
        for element in itertools.islice(iterator, batches):
            if not isinstance(element, tuple) or len(element) < 2:
                raise ValueError(
                    "Each element of `x` must be (x, y) or (x, y, sample_weight). "
                    f"Received an element of type {type(element).__name__}."
                )
            yield (*element, None)[:3]
        return
    if y is None:
        raise ValueError("`y` is required when `x` holds arrays. Received: y=None.")
    import keras

    first = keras.tree.flatten(x)[0]
    n = len(first)
    if n == 0:
        raise ValueError("`x` is empty: there is no batch to diagnose.")
    for other in keras.tree.flatten(y):
        if len(other) != n:
            raise ValueError(
                f"`x` has {n} samples but `y` has {len(other)}. They must match."
            )

    def take(structure, piece):
        return keras.tree.map_structure(lambda a: np.asarray(a)[piece], structure)

    for start in range(0, min(n, batch_size * batches), batch_size):
        piece = slice(start, start + batch_size)
        weights = None if sample_weight is None else np.asarray(sample_weight)[piece]
        yield take(x, piece), take(y, piece), weights


def diagnose(
    model,
    x,
    y=None,
    sample_weight=None,
    batches=8,
    batch_size=32,
    *,
    vocabulary=None,
    vectors=None,
):
    """Run the model on a few batches and explain every fault the data shows.

    Args:
        model: A compiled Keras model (it is only called in inference mode;
            weights and compile state are left as they are).
        x: Input arrays (a list or dict for several inputs), or a
            `tf.data.Dataset` / `keras.utils.PyDataset` / generator yielding
            `(x, y)` or `(x, y, sample_weight)`.
        y: Labels, when `x` holds arrays.
        sample_weight: Optional weights, any shape that broadcasts.
        batches: At most this many batches are examined.
        batch_size: Batch size for arrays.
        vocabulary, vectors: The tokenizer's words by id and the pre-trained
            `GloveVectors`: every `Embedding` of the vectors' width is checked
            against them (EMBEDDING_OOV_ROWS, EMBEDDING_MISALIGNED). Layers
            made by `lossguard.glove.glove_embedding` are checked without them.

    Returns:
        A `Report`.

    Raises:
        ValueError: For an uncompiled model, empty data, or data that does
            not fit the model (with what was expected and received).
    """
    if getattr(model, "loss", None) is None and not getattr(model, "compiled", False):
        raise ValueError(
            "`model` is not compiled: diagnose() checks the loss it was compiled "
            "with. Call model.compile(optimizer=..., loss=...) first."
        )
    collector = BatchCollector(model)
    specs = collector.specs
    found: dict[str, Finding] = {}
    for finding in check_config(specs):
        found.setdefault(finding.code, finding)
    if (vocabulary is None) != (vectors is None):
        raise ValueError(
            "Pass `vocabulary` and `vectors` together (the tokenizer's words by "
            "id and the GloveVectors the embedding came from)."
        )
    for finding in check_model_embeddings(model, vocabulary, vectors):
        found.setdefault(finding.code, finding)
    seen = 0
    compiled = _compiled_step(model, collector)
    for step, (bx, by, bw) in enumerate(
        _batches(x, y, sample_weight, batch_size, batches)
    ):
        seen += 1
        values = None
        if compiled is not None:
            try:
                values = collector.unpack(np.asarray(compiled(bx, by, bw)))
                masked = _MASKED.get(model, False)
            except Exception:  # noqa: BLE001 - the eager path below explains it
                values = None
        if values is None:
            values, masked = _eager_row(model, collector, bx, by, bw, step, found)
            if values is None:
                continue
            if values is _STOP:
                break
        for finding in check_batch(values, specs, epoch=None, step=step):
            found.setdefault(finding.code, finding)
        for finding in _seq2seq_checks(bx, by, bw, masked, specs, step):
            found.setdefault(finding.code, finding)
    if seen == 0:
        raise ValueError("The data yielded no batch: there is nothing to diagnose.")
    return Report(found.values())


#: `_eager_row`'s answer when a known finding already explains a crash.
_STOP = object()


def _eager_row(model, collector, bx, by, bw, step, found):
    """The batch's statistics, run eagerly; explains what goes wrong.

    Returns `(values, masked)`; `(None, None)` when a crash became a finding
    (go on with the next batch); `(_STOP, None)` when an embedding finding
    already explains the crash (stop). Raises `ValueError` otherwise.
    """
    specs = collector.specs
    y_pred = None
    try:
        y_pred = model(bx, training=False)
        loss = model.compute_loss(bx, by, y_pred, bw, training=False)
        row = collector.row(bx, by, y_pred, bw, loss)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"The data does not fit the model on batch {step}: {error}"
            f"{_label_hint(by, specs)}"
        ) from error
    except Exception as error:  # TensorFlow's own errors
        crash = sparse_label_crash(error, specs, step=step)
        weights = weight_mask_crash(error, in_loss=y_pred is not None)
        if weights is not None:
            raise ValueError(f"Batch {step}: {weights}") from error
        misaligned = found.get(Code.EMBEDDING_MISALIGNED)
        if crash is None and misaligned is not None:
            # The embedding check already explains why the lookup failed.
            misaligned.evidence["crash"] = error_detail(error)
            return _STOP, None
        if crash is None:
            raise ValueError(
                f"The model failed on batch {step}: {type(error).__name__}: "
                f"{error_detail(error)}"
            ) from error
        found.setdefault(crash.code, crash)
        return None, None
    values = {k: float(np.asarray(v)) for k, v in row.items()}
    return values, getattr(y_pred, "_keras_mask", None) is not None


def _label_hint(y, specs) -> str:
    """Integer ids given to a categorical (one-hot) loss: say what to use."""
    if len(specs) != 1 or specs[0].kind != "categorical" or isinstance(y, dict):
        return ""
    labels = np.asarray(y)
    if not np.issubdtype(labels.dtype, np.integer):
        return ""
    return (
        f"\nThe labels are integer ids (shape {labels.shape}) but the loss "
        f"'{specs[0].loss_name}' expects one-hot rows: use "
        "sparse_categorical_crossentropy (or lossguard.losses."
        "StableSparseCategoricalCrossentropy), or one-hot the labels."
    )


#: model -> (compile config, compiled step): repeated diagnose calls on the
#: same model and compile state reuse one trace.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: model -> whether its (single) output carries a Keras mask (seen in tracing).
_MASKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _OwnRetracing(logging.Filter):
    """TensorFlow counts traces per code object: one compiled step per model
    (diagnose on many models, as in a test suite) reads to it as retracing."""

    def filter(self, record):
        return "_compiled_step" not in record.getMessage()


def _quiet_retracing_warning():
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _OwnRetracing) for f in tf_logger.filters):
        tf_logger.addFilter(_OwnRetracing())


def _compiled_step(model, collector):
    """The batch's packed statistics as one compiled TensorFlow function.

    Eager LSTMs run ~5x slower than traced ones. Returns None on other
    backends or when the compile config cannot be read; any failure of the
    compiled call falls back to the eager path, which explains the error.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    try:
        key = json.dumps(model.get_compile_config(), default=str, sort_keys=True)
    except Exception:  # noqa: BLE001 - no cache, no compiled path
        return None
    cached = _STEPS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    import tensorflow as tf

    owner = weakref.ref(model)  # the cache must not keep the model alive
    specs = collector.specs

    def step(bx, by, bw):
        model = owner()
        traced = BatchCollector(model, specs)
        y_pred = model(bx, training=False)
        loss = model.compute_loss(bx, by, y_pred, bw, training=False)
        _MASKED[model] = getattr(y_pred, "_keras_mask", None) is not None
        return traced.pack(traced.row(bx, by, y_pred, bw, loss))

    _quiet_retracing_warning()
    compiled = tf.function(step, reduce_retracing=True)
    _STEPS[model] = (key, compiled)
    return compiled


def _target_ids(y, spec):
    y = np.asarray(y)
    if spec.kind == "sparse":
        return y.squeeze(-1) if y.ndim >= 2 and y.shape[-1] == 1 else y
    if spec.kind == "categorical" and y.ndim == 3:
        return y.argmax(-1)
    return None


def _seq2seq_checks(x, y, w, masked, specs, step):
    if len(specs) != 1:
        return []
    spec = specs[0]
    ids = _target_ids(y, spec)
    if ids is None or ids.ndim != 2:
        return []
    found = []
    import keras

    inputs = [np.asarray(t) for t in keras.tree.flatten(x)]
    pad = 0
    real = ids != pad
    for i, tokens in enumerate(inputs):
        if tokens.shape != ids.shape or not np.issubdtype(tokens.dtype, np.integer):
            continue
        same = (tokens == ids) & real
        share = same.sum() / max(real.sum(), 1)
        if share > COPY_SHARE:
            found.append(
                Finding(
                    Code.DECODER_TARGET_NOT_SHIFTED,
                    "error",
                    f"Input {i} equals the target at the same position for "
                    f"{share:.1%} of the non-padding positions.",
                    "With teacher forcing the decoder must see the target up to step "
                    "t-1 to predict step t. Fed the target at step t itself, it only "
                    "has to copy its input, so the loss collapses towards 0 in "
                    "training and the model cannot generate anything.",
                    "Feed [start] + target[:-1] as the decoder input "
                    "(decoder_input[:, 1:] = target[:, :-1]).",
                    {"input": i, "copy_share": float(share)},
                    step=step,
                )
            )
    pad_share = float((ids == pad).mean())
    ignored = spec.ignore_class == pad
    weighted = w is not None and np.all(
        np.broadcast_to(
            np.asarray(w).reshape(np.asarray(w).shape + (1,) * (ids.ndim - np.ndim(w))),
            ids.shape,
        )[ids == pad]
        == 0
    )
    if pad_share > PADDING_SHARE and not (masked or ignored or weighted):
        found.append(
            Finding(
                Code.PADDING_NOT_MASKED,
                "warning",
                f"{pad_share:.1%} of the target positions are the padding id {pad} and "
                "nothing masks them.",
                "The loss is averaged over every position; padding is trivially easy "
                "to predict, so it dominates the mean: the loss and accuracy mostly "
                "measure how well the model predicts padding.",
                "Embedding(mask_zero=True) on the decoder input, ignore_class=0 in a "
                "sparse cross-entropy, or sample weights of 0 on padding.",
                {
                    "pad_id": pad,
                    "pad_share": pad_share,
                    "mask": masked,
                    "ignore_class": spec.ignore_class,
                    "sample_weight": w is not None,
                },
                step=step,
            )
        )
    return found
