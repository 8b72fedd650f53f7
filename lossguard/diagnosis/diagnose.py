"""`diagnose(model, data)`: the callback's checks, before (or after) training."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import weakref

import numpy as np

from lossguard import backends
from lossguard.diagnosis.causes import link
from lossguard.diagnosis.collect import BatchCollector, call_compute_loss
from lossguard.diagnosis.crashes import error_detail, weight_mask_crash
from lossguard.diagnosis.faults import check_batch, check_crash, check_start
from lossguard.diagnosis.findings import Finding, Report
from lossguard.diagnosis.registry import CRASH_EXPLAINERS
from lossguard.diagnosis.specs import unseen_loss

logger = logging.getLogger("lossguard")


def _batches(x, y, sample_weight, batch_size, batches, needs_y=True):
    """Yield (x, y, sample_weight) batches from arrays, datasets or generators."""
    if y is None and not isinstance(x, np.ndarray | dict | list | tuple):
        iterator = iter(x)  # tf.data.Dataset, PyDataset, generator
        for element in itertools.islice(iterator, batches):
            if not isinstance(element, tuple):
                element = (element,)  # inputs only: a model that adds its loss
            if len(element) < 2 and needs_y:
                raise ValueError(
                    "Each element of `x` must be (x, y) or (x, y, sample_weight) "
                    "for a model compiled with a loss. Received an element of "
                    f"{len(element)} part(s)."
                )
            yield (*element, None, None)[:3]
        return
    if y is None and needs_y:
        raise ValueError(
            "`y` is required when `x` holds arrays and the model is compiled "
            "with a loss. Received: y=None."
        )
    import keras

    first = keras.tree.flatten(x)[0]
    n = len(first)
    if n == 0:
        raise ValueError("`x` is empty: there is no batch to diagnose.")
    for other in keras.tree.flatten(y) if y is not None else ():
        if len(other) != n:
            raise ValueError(
                f"`x` has {n} samples but `y` has {len(other)}. They must match."
            )

    def take(structure, piece):
        if structure is None:
            return None
        return keras.tree.map_structure(lambda a: np.asarray(a)[piece], structure)

    for start in range(0, min(n, batch_size * batches), batch_size):
        piece = slice(start, start + batch_size)
        weights = None if sample_weight is None else np.asarray(sample_weight)[piece]
        yield take(x, piece), take(y, piece), weights


def _class_weights(y, class_weight):
    """Per-sample weights from `class_weight`, as Keras' fit makes them.

    The class of a sample is its label (a trailing axis of 1 squeezed) or,
    for one-hot rows, its argmax; classes missing from the dict weigh 1.
    """
    ids = np.asarray(y)
    if ids.ndim > 1:
        ids = ids.squeeze(-1) if ids.shape[-1] == 1 else ids.argmax(-1)
    ids = np.round(ids).astype("int64")
    lookup = np.vectorize(lambda i: float(class_weight.get(int(i), 1.0)))
    return lookup(ids).astype("float32") if ids.size else ids.astype("float32")


def diagnose(
    model,
    x,
    y=None,
    sample_weight=None,
    class_weight=None,
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
        y: Labels, when `x` holds arrays (None for a model compiled without
            a loss, whose loss comes from `add_loss`).
        sample_weight: Optional weights, any shape that broadcasts.
        class_weight: Optional `{class: weight}`, turned into per-sample
            weights as `fit` does (a sample's class is its label, or the
            argmax of a one-hot row; missing classes weigh 1).
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
    _check_arguments(model, sample_weight, class_weight, vocabulary, vectors)
    collector = BatchCollector(model)
    found: dict[str, Finding] = {}
    notes: list[str] = [note for note in (unseen_loss(model),) if note]
    _record(found, check_start(model, collector.specs, vocabulary, vectors))
    needs_y = getattr(model, "loss", None) is not None
    data = _batches(x, y, sample_weight, batch_size, batches, needs_y)
    if _examine(model, collector, data, class_weight, found, notes) == 0:
        raise ValueError("The data yielded no batch: there is nothing to diagnose.")
    return Report(found.values(), notes)


def _examine(model, collector, data, class_weight, found, notes) -> int:
    """Check each batch of `data` into `found`; returns how many there were."""
    seen, compiled, known = 0, None, frozenset(found)
    for step, (bx, by, bw) in enumerate(data):
        seen += 1
        if class_weight is not None and by is not None:
            bw = _class_weights(by, class_weight)
        if step == 0:
            _refined(model, collector, bx, found)
            known = frozenset(found)
            compiled = _compiled_step(model, collector)
        values = _compiled_row(compiled, collector, bx, by, bw)
        if values is None:
            values = _eager_row(model, collector, bx, by, bw, step, found, notes)
            if values is None:
                continue
            if values is _STOP:
                break
        _record(found, check_batch(values, collector.specs, step=step, known=known))
    return seen


def _check_arguments(model, sample_weight, class_weight, vocabulary, vectors):
    """A clear error for a model or arguments diagnose() cannot work with."""
    if getattr(model, "loss", None) is None and not getattr(model, "compiled", False):
        raise ValueError(
            "`model` is not compiled: diagnose() checks the loss it was compiled "
            "with. Call model.compile(optimizer=..., loss=...) first."
        )
    if (vocabulary is None) != (vectors is None):
        raise ValueError(
            "Pass `vocabulary` and `vectors` together (the tokenizer's words by "
            "id and the GloveVectors the embedding came from)."
        )
    if class_weight is not None and sample_weight is not None:
        raise ValueError(
            "Pass `class_weight` or `sample_weight`, not both (Keras' fit "
            "turns class_weight into the sample weights)."
        )


def _compiled_row(compiled, collector, bx, by, bw):
    """The batch's row from the compiled step, or None where there is none
    or it fails (the eager path then explains why)."""
    if compiled is None:
        return None
    try:
        return collector.unpack(np.asarray(compiled(bx, by, bw)))
    except Exception:  # noqa: BLE001 - the eager path explains it
        return None


def _record(found: dict, findings) -> None:
    """Keep the first finding of each code, linked to what explains it."""
    fresh = [f for f in findings if f.code not in found]
    for finding in link(fresh, found.values()):
        found.setdefault(finding.code, finding)


def _refined(model, collector, bx, found):
    """Specs of a model whose outputs are only known once it ran (a
    subclassed model): run it on the first batch, then check the
    configuration again with what that showed."""
    if all(spec.units is not None for spec in collector.specs):
        return collector.specs
    try:
        y_pred = model(bx, training=False)
    except Exception:  # noqa: BLE001 - the batch loop explains it
        return collector.specs
    if collector.refine(y_pred):
        _record(found, check_start(model, collector.specs))
    return collector.specs


#: `_eager_row`'s answer when a known finding already explains a crash.
_STOP = object()


def _eager_row(model, collector, bx, by, bw, step, found, notes):
    """The batch's statistics, run eagerly; explains what goes wrong.

    Returns the row's values; None when a crash became a finding (go on with
    the next batch); `_STOP` when a finding already explains the crash, or
    when the model cannot be run at all (what could not be checked, and why,
    is added to `notes`). Raises `ValueError` for data that does not fit the
    model.
    """
    specs = collector.specs
    y_pred = None
    try:
        with collector.activations.installed():
            y_pred = model(bx, training=False)
        loss = call_compute_loss(model.compute_loss, bx, by, y_pred, bw)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"The data does not fit the model on batch {step}: {error}"
            f"{_label_hint(by, specs)}"
        ) from error
    except Exception as error:  # TensorFlow's own errors
        crashes = check_crash(error, specs, step=step)
        weights = weight_mask_crash(error, in_loss=y_pred is not None)
        if weights is not None:
            raise ValueError(f"Batch {step}: {weights}") from error
        explained = [found[c] for c in CRASH_EXPLAINERS if c in found]
        if not crashes and explained:
            # A finding already explains why the step failed.
            cause = explained[0]
            evidence = {**cause.evidence, "crash": error_detail(error)}
            found[cause.code] = dataclasses.replace(cause, evidence=evidence)
            return _STOP
        if not crashes and _input_out_of_range(error):
            raise ValueError(
                f"The model failed on batch {step}: {type(error).__name__}: "
                f"{error_detail(error)} (an input id outside an Embedding's "
                "[0, input_dim): make input_dim the vocabulary size, padding "
                "and OOV ids included)"
            ) from error
        if not crashes:
            notes.append(_cannot_run(model, error, step))
            return _STOP
        _record(found, crashes)
        return None
    try:
        row = collector.row(bx, by, y_pred, bw, loss)
        return {k: float(_numpy(v)) for k, v in row.items()}
    except Exception as error:  # noqa: BLE001 - lossguard's own failure
        logger.warning(
            "lossguard could not measure batch %d (its own failure, not the "
            "model's, which ran): %s: %s",
            step,
            type(error).__name__,
            error,
        )
        return None


def _input_out_of_range(error) -> bool:
    """An input id an Embedding cannot look up (TensorFlow, PyTorch, JAX do
    not stop): bad data, said as an error."""
    text = str(error)
    return "not in [0" in text or "index out of range in self" in text


def _cannot_run(model, error, step) -> str:
    """Why diagnose could not run the model, in one sentence."""
    detail = f"{type(error).__name__}: {error_detail(error)}"
    if isinstance(error, NotImplementedError) and "call" in str(error):
        return (
            f"{type(model).__name__} has no call() (it trains through its own "
            f"train_step), so diagnose cannot run it on a batch ({detail}); it "
            "checked the compile configuration and the model's structure only."
        )
    return (
        f"the model failed on batch {step} ({detail}), and no finding explains "
        "it; diagnose checked the compile configuration and the model's "
        "structure only."
    )


def _numpy(value):
    """A backend tensor as numpy (PyTorch's need detaching first)."""
    import keras

    return keras.ops.convert_to_numpy(value)


def _label_hint(y, specs) -> str:
    """Integer ids given to a categorical (one-hot) loss: say what to use."""
    if len(specs) != 1 or not specs[0].one_hot_labels or isinstance(y, dict):
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
    """The batch's packed statistics as one compiled function (TensorFlow:
    eager LSTMs run ~5x slower than traced ones).

    Returns None where the backend compiles nothing for this or the compile
    config cannot be read; any failure of the compiled call falls back to
    the eager path, which explains the error.
    """
    try:
        key = json.dumps(model.get_compile_config(), default=str, sort_keys=True)
    except Exception:  # noqa: BLE001 - no cache, no compiled path
        return None
    cached = _STEPS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    owner = weakref.ref(model)  # the cache must not keep the model alive
    specs = collector.specs

    def step(bx, by, bw):
        model = owner()
        traced = BatchCollector(model, specs)
        with traced.activations.installed():
            y_pred = model(bx, training=False)
        loss = call_compute_loss(model.compute_loss, bx, by, y_pred, bw)
        return traced.pack(traced.row(bx, by, y_pred, bw, loss))

    compiled = backends.current().compile_function(step)
    if compiled is None:
        return None
    _quiet_retracing_warning()
    _STEPS[model] = (key, compiled)
    return compiled
