"""The statistics of one output on one batch: a dispatch over what the loss
reads (layout -> weights -> labels by loss kind -> predictions -> sequence)."""

from __future__ import annotations

from keras import ops

from lossguard.diagnosis.specs import OutputSpec
from lossguard.keras_compat import get_mask

from .common import f32, nan, where_fits
from .labels import label_statistics
from .layout import OutputBatch, lay_out, layout_statistics
from .predictions import (
    prediction_statistics,
    saturation_statistics,
    softmax_statistics,
    spread_statistics,
)
from .schema import OUTPUT_KEYS
from .sequence import sequence_statistics
from .weights import weight_statistics


def output_statistics(
    y_true,
    y_pred,
    sample_weight=None,
    spec=None,
    mask=None,
    predictions=True,
    inputs=None,
):
    """The statistics of one output on one batch, as float32 scalar tensors.

    No batch can make this fail when the step runs: labels, weights, a mask
    or inputs whose size does not fit the output on some batch leave the
    statistics that need them NaN (or unweighted) on that batch.

    Args:
        y_true: The batch's labels.
        y_pred: The model's output for the batch (a Keras mask on it is used
            unless `mask` is given).
        sample_weight: Sample or class weights, any shape that broadcasts.
        spec: The output's `OutputSpec` (loss kind decides which statistics
            apply); default: categorical.
        mask: An explicit mask of the token shape.
        predictions: Whether to take the full-width prediction statistics
            (`pred_min`, `pred_max`, row sums, `pred_nonfinite`): three passes
            over the (rows, classes) output. Half-precision outputs always get
            them (saturation is their fault).
        inputs: The batch's model inputs: any of them laid out like the
            targets of a sequence output (ids, or one-hot rows) is compared
            with them position by position (`decoder_copy_share`).

    Returns:
        A dict keyed by `OUTPUT_KEYS`; statistics that do not apply are NaN
        (`loss_at_clip_share` needs the compiled loss: see `losses`).
    """
    spec = spec or OutputSpec(name="output", loss_name="?", kind="categorical")
    if mask is None:
        mask = get_mask(y_pred)
    out = dict.fromkeys(OUTPUT_KEYS, nan())
    out.update(softmax_statistics(y_pred, spec))
    batch: OutputBatch = lay_out(
        y_true, ops.convert_to_tensor(y_pred), sample_weight, spec, mask, predictions
    )
    out.update(weight_statistics(batch.raw_weights))
    labels = label_statistics(batch)  # may narrow the active rows
    out.update(layout_statistics(batch))
    out.update(labels.certain)
    out.update(labels.values)
    out.update(prediction_statistics(batch))
    out.update(spread_statistics(batch))
    # What the labels decide holds only where they fit the batch.
    fitted = dict(labels.values)
    fitted.update(saturation_statistics(batch, labels.saturated))
    fitted.update(sequence_statistics(batch, labels.ids, inputs))
    out.update(fitted)
    where_fits(out, fitted, labels.fits)
    return {key: f32(ops.convert_to_tensor(value)) for key, value in out.items()}
