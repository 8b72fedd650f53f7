"""Checks: statistics of a batch (or a compile configuration) -> findings.

Every check reads numbers measured on the batch (`lossguard.metrics`) and
explains them with the mathematics of ../shared/FAULTS.md. Both the callback
and `diagnose` call these functions; there is no second copy.
"""

from __future__ import annotations

import math
import re

from lossguard.diagnosis.findings import Code, Finding
from lossguard.diagnosis.specs import UNBOUNDED_RANGES, OutputSpec, clip_ceiling
from lossguard.metrics import OUTPUT_KEYS, SUM_TOLERANCE, sum_tolerance

#: Share of saturated target probabilities that counts as saturation.
SATURATION_SHARE = 0.01


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _fmt(v) -> str:
    return f"{v:.4g}"


def _pct(v) -> str:
    return f"{100 * v:.3g}%"


def _out(spec: OutputSpec, single: bool) -> str:
    return "" if single else f" of output '{spec.name}'"


def _position(s) -> dict:
    row = int(s["label_neg_first_row"])
    steps = max(int(s.get("time_steps") or 1), 1)
    return {"first_sample": row // steps, "first_position": row % steps}


# --------------------------------------------------------------------------
# per-output batch checks
# --------------------------------------------------------------------------
def negative_labels(s, g, spec, single):
    if spec.kind not in ("categorical", "kl") or not (
        _ok(s["label_min"]) and s["label_min"] < 0
    ):
        return None
    ymin, ceiling = s["label_min"], clip_ceiling()
    pos = _position(s)
    return Finding(
        Code.NEGATIVE_LABELS,
        "error",
        f"Labels{_out(spec, single)} go down to {_fmt(ymin)}: "
        f"{_pct(s['label_neg_share'])} of label entries and "
        f"{_pct(s['label_neg_row_share'])} of label rows are negative (first at "
        f"sample {pos['first_sample']}, position {pos['first_position']}); the "
        f"batch loss is {_fmt(g['loss'])}.",
        "Cross-entropy is -sum(y * log p). Keras clips p into [eps, 1 - eps], so "
        f"log p lies in [{_fmt(-ceiling)}, 0) and every term with y >= 0 is >= 0. "
        f"A label y = {_fmt(ymin)} flips the sign: its term y * (-log p) lies in "
        f"[{_fmt(ymin * ceiling)}, 0] and is smallest when the model predicts "
        "p -> eps for that class, so the loss can fall below zero and the "
        "gradient pushes towards it. Negative labels come from embedding "
        "vectors (GloVe, word2vec) used as targets, a -1 padding row, or labels "
        "scaled to [-1, 1]; pre-trained embeddings used as inputs only change p "
        "and cannot do this.",
        "Predict token ids with Dense(vocab_size, activation='softmax') and a "
        "sparse cross-entropy (lossguard.losses.StableSparseCategoricalCrossentropy"
        "(ignore_class=pad_id)); to regress embedding vectors use cosine "
        "similarity or MSE instead; mask padding (mask_zero=True, ignore_class) "
        "instead of encoding it as -1.",
        {
            "output": spec.name,
            "label_min": ymin,
            "negative_entry_share": s["label_neg_share"],
            "negative_row_share": s["label_neg_row_share"],
            **pos,
            "batch_loss": g["loss"],
        },
    )


def label_sum_not_one(s, g, spec, single):
    if spec.kind != "categorical" or not (
        _ok(s["label_sum_off_share"]) and s["label_sum_off_share"] > 0
    ):
        return None
    lo, hi, mean = s["label_sum_min"], s["label_sum_max"], s["label_sum_mean"]
    worst = lo if abs(lo - 1) > abs(hi - 1) else hi
    k = spec.units or 0
    uniform = (
        f" (a uniform p over {k} classes costs {_fmt(worst)} * log {k} = "
        f"{_fmt(worst * math.log(k))} on such a row instead of {_fmt(math.log(k))})"
        if k > 1
        else ""
    )
    return Finding(
        Code.LABEL_SUM_NOT_ONE,
        "error",
        f"Label rows{_out(spec, single)} sum to between {_fmt(lo)} and {_fmt(hi)} "
        f"(mean {_fmt(mean)}); {_pct(s['label_sum_off_share'])} of rows are off "
        f"1 by more than {SUM_TOLERANCE:g}.",
        "Categorical cross-entropy -sum(y * log p) is a cross-entropy only when "
        "each label row is a distribution. The loss scales with the row sum s"
        f"{uniform}; multi-hot rows ask p to be 1 on several classes at once, "
        "which a softmax cannot do, and a negative sum flips the loss's sign.",
        "Normalise each label row to sum to 1; for multi-label targets use "
        "sigmoid outputs with binary cross-entropy.",
        {
            "output": spec.name,
            "label_sum_min": lo,
            "label_sum_max": hi,
            "label_sum_mean": mean,
            "off_row_share": s["label_sum_off_share"],
        },
    )


def empty_label_rows(s, g, spec, single):
    if spec.kind != "categorical" or not (
        _ok(s["label_empty_share"]) and s["label_empty_share"] > 0
    ):
        return None
    share = s["label_empty_share"]
    return Finding(
        Code.EMPTY_LABEL_ROWS,
        "warning",
        f"{_pct(share)} of the unmasked label rows{_out(spec, single)} are all zero.",
        "An all-zero row adds -sum(0 * log p) = 0 to the loss but still counts in "
        f"the mean, so the reported loss is {_pct(share)} lower than the mean over "
        "real tokens (and accuracy is inflated the same way). This is usually "
        "padding one-hot encoded as zeros.",
        "Mask those positions: Embedding(mask_zero=True) on the decoder input, "
        "sparse labels with ignore_class=pad_id, or sample weights of 0.",
        {
            "output": spec.name,
            "empty_row_share": share,
            "active_rows": s["active_rows"],
        },
    )


def labels_out_of_range(s, g, spec, single):
    share = s["label_out_of_range_share"]
    if spec.kind not in ("binary", "sparse") or not (_ok(share) and share > 0):
        return None
    lo, hi = s["label_min"], s["label_max"]
    if spec.kind == "binary":
        why = (
            "Binary cross-entropy is -(y log p + (1 - y) log(1 - p)). For y > 1 "
            "the factor (1 - y) is negative and for y < 0 the factor y is, so the "
            "loss is no longer bounded below by 0 and rewards the wrong "
            "direction."
        )
        fix = (
            "Rescale the targets into [0, 1] (e.g. divide 0-255 masks by 255) "
            "or binarise them."
        )
        valid = "[0, 1]"
    else:
        k = spec.units
        why = (
            f"Sparse cross-entropy reads p[y]; an id outside [0, {k}) has no "
            "prediction to read. TensorFlow raises on CPU and returns NaN on GPU."
        )
        fix = (
            "Use ids in [0, vocab_size), or pass ignore_class=pad_id for a padding id."
        )
        valid = f"[0, {k})"
    return Finding(
        Code.LABELS_OUT_OF_RANGE,
        "error",
        f"Labels{_out(spec, single)} range over [{_fmt(lo)}, {_fmt(hi)}]; "
        f"{_pct(share)} are outside {valid}.",
        why,
        fix,
        {
            "output": spec.name,
            "label_min": lo,
            "label_max": hi,
            "out_of_range_share": share,
            "valid_range": valid,
        },
    )


def negative_weights(s, g, spec, single):
    if not (_ok(s["weight_min"]) and s["weight_min"] < 0):
        return None
    return Finding(
        Code.NEGATIVE_WEIGHTS,
        "error",
        f"Sample weights{_out(spec, single)} go down to {_fmt(s['weight_min'])}; "
        f"{_pct(s['weight_neg_share'])} of them are negative.",
        "Keras multiplies each token's loss (>= 0) by its sample weight (class "
        "weights become sample weights) without a sign check, so a negative "
        "weight turns that token's loss negative and the optimiser maximises "
        "the loss on it.",
        "Fix the sign of the weights (or class_weight); validate them, e.g. "
        "assert (w >= 0).all().",
        {
            "output": spec.name,
            "weight": "sample_weight/class_weight",
            "weight_min": s["weight_min"],
            "negative_share": s["weight_neg_share"],
        },
    )


def predictions_not_probabilities(s, g, spec, single):
    if not spec.expects_probabilities:
        return None
    pmin, pmax = s["pred_min"], s["pred_max"]
    smin, smax = s["pred_sum_min"], s["pred_sum_max"]
    tol = sum_tolerance(spec.dtype)
    out_of_range = _ok(pmin) and (pmin < 0 or pmax > 1 + tol)
    bad_sums = (
        spec.kind != "binary"
        and _ok(smin)
        and (abs(smin - 1) > tol or abs(smax - 1) > tol)
    )
    if not (out_of_range or bad_sums):
        return None
    ceiling = clip_ceiling()
    sums = f", row sums in [{_fmt(smin)}, {_fmt(smax)}]" if _ok(smin) else ""
    return Finding(
        Code.PREDICTIONS_NOT_PROBABILITIES,
        "error",
        f"The loss '{spec.loss_name}' expects probabilities (from_logits=False) "
        f"but predictions{_out(spec, single)} range over [{_fmt(pmin)}, "
        f"{_fmt(pmax)}]{sums}; the output activation is "
        f"'{spec.activation}'.",
        "With from_logits=False Keras divides y_pred by its row sum and clips it "
        f"into [eps, 1 - eps]: logits (or linear/ReLU outputs) then collapse each "
        f"token's loss to about 0 or about -log eps = {_fmt(ceiling)}, which "
        "measures nothing; a hand-written -sum(y log p) on outputs above 1 goes "
        "negative.",
        "Either set from_logits=True in the loss, or end the model with a "
        "softmax (sigmoid for binary) output layer.",
        {
            "output": spec.name,
            "pred_min": pmin,
            "pred_max": pmax,
            "pred_sum_min": smin,
            "pred_sum_max": smax,
            "activation": spec.activation,
        },
    )


def probabilities_as_logits(s, g, spec, single):
    if not (spec.from_logits and spec.kind in ("categorical", "sparse", "binary")):
        return None
    squashed = spec.activation in ("softmax", "sigmoid")
    looks = (
        _ok(s["pred_min"])
        and s["pred_min"] >= 0
        and s["pred_max"] <= 1
        and spec.kind != "binary"
        and _ok(s["pred_sum_min"])
        and abs(s["pred_sum_min"] - 1) <= sum_tolerance(spec.dtype)
        and abs(s["pred_sum_max"] - 1) <= sum_tolerance(spec.dtype)
    )
    if not (squashed or looks):
        return None
    k = spec.units or 2
    floor = math.log(1 + (k - 1) / math.e)
    return Finding(
        Code.PROBABILITIES_AS_LOGITS,
        "warning",
        f"from_logits=True, but the output{_out(spec, single)} already went "
        f"through '{spec.activation}': predictions range over "
        f"[{_fmt(s['pred_min'])}, {_fmt(s['pred_max'])}].",
        "A second softmax over probabilities in [0, 1] can never become "
        f"confident: with p_y = 1 the loss is ln(1 + (K - 1)/e) = {_fmt(floor)} "
        f"for K = {k}, so it floors there and learning stalls. Keras' TensorFlow "
        "backend recognises its own softmax/sigmoid tensors and uses their "
        "logits (it warns 'Was this intended?'), but any cast, custom loss or "
        "other backend gets the double softmax.",
        "Drop the output activation (keep from_logits=True), or keep it and set "
        "from_logits=False.",
        {
            "output": spec.name,
            "activation": spec.activation,
            "classes": k,
            "loss_floor": floor,
            "pred_sum_min": s["pred_sum_min"],
            "pred_sum_max": s["pred_sum_max"],
        },
    )


def low_precision_saturation(s, g, spec, single):
    share = s["pred_saturated_share"]
    if spec.dtype not in ("float16", "bfloat16") or not (
        _ok(share) and share > SATURATION_SHARE
    ):
        return None
    return Finding(
        Code.LOW_PRECISION_SATURATION,
        "warning",
        f"The output{_out(spec, single)} is {spec.dtype} and the true class's "
        f"probability is exactly 0 or 1 for {_pct(share)} of tokens.",
        f"{spec.dtype} cannot represent probabilities close to 0 or 1 (float16's "
        "smallest step below 1 is 4.9e-4, and values under 6e-8 round to 0), so "
        f"tokens lose exactly -log eps = {_fmt(clip_ceiling())} or exactly 0 and "
        "their gradient is cut.",
        "Keep the output layer in float32: Dense(..., dtype='float32') or "
        "Activation('softmax', dtype='float32') under a mixed-precision policy.",
        {"output": spec.name, "dtype": spec.dtype, "saturated_share": share},
    )


OUTPUT_CHECKS = (
    negative_labels,
    label_sum_not_one,
    empty_label_rows,
    labels_out_of_range,
    negative_weights,
    predictions_not_probabilities,
    probabilities_as_logits,
    low_precision_saturation,
)


# --------------------------------------------------------------------------
# whole-batch checks
# --------------------------------------------------------------------------
def nonfinite_loss(g, outs, specs):
    if _ok(g["loss"]) and math.isfinite(g["loss"]):
        return None
    sources = [("inputs", g.get("x_nonfinite", 0))]
    for spec, s in zip(specs, outs, strict=True):
        sources += [
            (f"labels ({spec.name})", s["y_nonfinite"]),
            (f"sample weights ({spec.name})", s["weight_nonfinite"]),
            (f"predictions ({spec.name})", s["pred_nonfinite"]),
        ]
    sources.append(("an extra loss term (model.losses)", g.get("aux_nonfinite", 0)))
    first = next((name for name, flag in sources if _ok(flag) and flag), None)
    unmeasured = [
        f"predictions ({spec.name})"
        for spec, s in zip(specs, outs, strict=True)
        if not _ok(s["pred_nonfinite"])
    ]
    # A skipped prediction pass (a Keras softmax: the loss reads its logits)
    # leaves the model itself as the only source left once the rest is finite.
    source = first or (unmeasured[0] if unmeasured else None)
    source = source or "overflow in the loss computation itself"
    why = {
        "inputs": "NaN or Inf in the input batch propagates through every layer.",
        "labels": "a NaN or Inf label makes its term y * log p non-finite.",
        "sample": "a NaN or Inf weight multiplies the token's loss.",
        "predictions": "the inputs and labels are finite, so the model itself "
        "overflowed (exploding activations or weights, often a learning rate "
        "too high) or already holds NaN weights from an earlier step.",
        "an": "an add_loss term or regulariser is non-finite.",
        "overflow": "inputs, labels, weights and predictions are finite, so the "
        "loss's own arithmetic overflowed (e.g. log of 0 in a hand-written loss).",
    }[source.split()[0]]
    return Finding(
        Code.NONFINITE_LOSS,
        "error",
        f"The batch loss is {g['loss']}; the first non-finite source is {source}.",
        f"A single NaN or Inf anywhere in the sum makes the loss non-finite: {why}",
        "Clean the data (np.isfinite on inputs, labels and weights), use a stable "
        "loss (lossguard.losses), lower the learning rate or clip gradients "
        "(optimizer clipnorm=1.0).",
        {"loss": g["loss"], "source": source},
    )


def negative_aux_loss(g, outs, specs):
    aux, data = g.get("aux_loss", 0.0), g.get("data_loss", float("nan"))
    if not (_ok(aux) and aux < 0):
        return None
    terms = {k[4:]: v for k, v in g.items() if k.startswith("aux:") and v != 0}
    listed = ", ".join(f"{name} = {_fmt(v)}" for name, v in terms.items())
    return Finding(
        Code.NEGATIVE_AUX_LOSS,
        "error",
        f"The extra loss terms (model.losses) sum to {_fmt(aux)} while the data "
        f"loss is {_fmt(data)}: {listed or 'no per-layer breakdown available'}.",
        "Keras' total loss is the compiled loss plus sum(model.losses) "
        "(add_loss terms, activity and weight regularisers). A negative term, "
        "such as an entropy bonus or a sign-flipped KL, pulls the total below "
        f"zero: {_fmt(data)} + ({_fmt(aux)}) = {_fmt(g['loss'])}, and the "
        "optimiser can keep lowering it without bound.",
        "Fix the sign of the term or bound it (e.g. add_loss(weight * "
        "ops.maximum(term, 0))); a KL divergence must be added, not subtracted.",
        {"aux_loss": aux, "data_loss": data, "terms": terms, "loss": g["loss"]},
    )


BATCH_CHECKS = (nonfinite_loss, negative_aux_loss)


def check_batch(row: dict, specs: list[OutputSpec], epoch=None, step=None):
    """All findings one batch's statistics show."""
    single = len(specs) == 1
    outs = [split_output(row, spec, single) for spec in specs]
    found = []
    for check in BATCH_CHECKS:
        finding = check(row, outs, specs)
        if finding:
            found.append(finding)
    for spec, s in zip(specs, outs, strict=True):
        for check in OUTPUT_CHECKS:
            finding = check(s, row, spec, single)
            if finding:
                found.append(finding)
    return [_at(f, epoch, step) for f in found]


def split_output(row, spec, single):
    prefix = "" if single else f"{spec.name}/"
    return {key: row.get(prefix + key, float("nan")) for key in OUTPUT_KEYS}


def _at(finding, epoch, step):
    import dataclasses

    return dataclasses.replace(finding, epoch=epoch, step=step)


# --------------------------------------------------------------------------
# configuration checks (no batch needed)
# --------------------------------------------------------------------------
def check_config(specs: list[OutputSpec]):
    """Findings the compile configuration alone proves."""
    found = []
    for spec in specs:
        if spec.kind == "categorical" and spec.units == 1:
            found.append(
                Finding(
                    Code.SINGLE_UNIT_CATEGORICAL,
                    "error",
                    f"'{spec.loss_name}' on output '{spec.name}', which has 1 unit.",
                    "Categorical cross-entropy normalises each prediction row to sum "
                    "to 1; a row of one value always becomes 1, log 1 = 0, so the loss "
                    "is exactly 0 whatever the model does and nothing is learned.",
                    "For two classes use Dense(1, activation='sigmoid') with "
                    "binary_crossentropy; for K classes use Dense(K, "
                    "activation='softmax').",
                    {"output": spec.name, "units": 1, "loss": spec.loss_name},
                )
            )
        if not 0.0 <= spec.label_smoothing <= 1.0:
            ls = spec.label_smoothing
            k = spec.units or 2
            found.append(
                Finding(
                    Code.INVALID_LABEL_SMOOTHING,
                    "error",
                    f"label_smoothing={ls:g} on output '{spec.name}' is "
                    "outside [0, 1].",
                    f"Keras applies y * (1 - ls) + ls / K with no range check: with "
                    f"ls = {ls:g} and K = {k} the off-class targets are {ls / k:.4g} "
                    f"and the true class's is {1 - ls + ls / k:.4g}, so "
                    "some target weights are negative and the loss can go below "
                    "zero.",
                    "Use a label_smoothing in [0, 1), typically 0.1.",
                    {"output": spec.name, "label_smoothing": ls},
                )
            )
        if spec.loss_weight < 0:
            found.append(
                Finding(
                    Code.NEGATIVE_WEIGHTS,
                    "error",
                    f"loss_weights gives output '{spec.name}' the weight "
                    f"{spec.loss_weight:g}.",
                    "Keras' total is sum(loss_weight * output_loss); a negative weight "
                    "turns a non-negative loss negative and the optimiser maximises "
                    "that output's error.",
                    "Use non-negative loss_weights.",
                    {
                        "output": spec.name,
                        "weight": "loss_weights",
                        "weight_min": spec.loss_weight,
                    },
                )
            )
        if spec.kind == "unbounded":
            rng = UNBOUNDED_RANGES.get(spec.loss_name.lower(), "unbounded below")
            found.append(
                Finding(
                    Code.LOSS_UNBOUNDED_BELOW,
                    "info",
                    f"'{spec.loss_name}' on output '{spec.name}' is negative by "
                    f"design; its range is {rng}.",
                    "This loss is not a cross-entropy: its best value is below zero "
                    "(cosine similarity is -1 for identical directions; Keras' "
                    "Poisson drops the constant log(y!)), so a negative loss is "
                    "expected, not a bug.",
                    "Nothing to fix; track improvement, or use 1 - cosine similarity "
                    "if you want a floor at 0.",
                    {"output": spec.name, "loss": spec.loss_name, "range": rng},
                )
            )
    return found


# --------------------------------------------------------------------------
# a crash TensorFlow raises instead of returning a loss
# --------------------------------------------------------------------------
def error_detail(error) -> str:
    """The line of a TensorFlow error that carries the numbers."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "label value" in line or "not in [0" in line:
            return line[:300]
    return lines[0][:300] if lines else type(error).__name__


def sparse_label_crash(error, specs, epoch=None, step=None):
    """A sparse label outside [0, K) aborts the step on CPU: explain it.

    Only an error raised inside the loss counts: an Embedding input id out of
    range fails with the same "not in [0, K)" wording, but in the model.
    """
    sparse = [s for s in specs if s.kind == "sparse"]
    detail = error_detail(error)
    nodes = [line for line in str(error).splitlines() if "node" in line]
    in_loss = "label value" in detail or any(
        "compile_loss" in line or "crossentropy" in line for line in nodes
    )
    if not sparse or "[0" not in detail or not in_loss:
        return None
    spec = sparse[0]
    k = spec.units
    return Finding(
        Code.LABELS_OUT_OF_RANGE,
        "error",
        f"A sparse label of output '{spec.name}' is outside [0, {k}); TensorFlow "
        f"stopped the step: {detail}",
        f"Sparse cross-entropy reads p[y]; an id outside [0, {k}) has no "
        "prediction to read, so TensorFlow raises on CPU (and returns NaN on GPU).",
        "Use ids in [0, vocab_size), or pass ignore_class=pad_id for a padding id.",
        {"output": spec.name, "valid_range": f"[0, {k})", "error": detail},
        epoch=epoch,
        step=step,
    )


def weight_mask_crash(error, in_loss=False) -> str | None:
    """Keras cannot multiply a per-sample weight by a per-token Keras mask.

    With a sequence output (batch, T, K) that carries a mask (from
    `Embedding(mask_zero=True)`), Keras' loss multiplies `sample_weight` by
    the (batch, T) mask; a (batch,) weight does not broadcast against it, and
    TensorFlow stops with "Incompatible shapes: [B] vs. [B,T]" (eager) or
    "Dimensions must be equal ... input shapes: [B], [B,T]" (while tracing).
    """
    detail = str(error)
    match = re.search(
        r"(?:Incompatible shapes: |input shapes: )\[(\d+)\](?: vs\.|,) "
        r"\[(\d+),(\d+)\]",
        detail,
    )
    in_loss = in_loss or "compile_loss" in detail
    if match is None or not in_loss:
        return None
    batch, steps = match.group(2), match.group(3)
    return (
        f"Keras could not combine a per-sample `sample_weight` of shape ({batch},) "
        f"with the ({batch}, {steps}) mask of a sequence output (Keras multiplies "
        "the weight by the mask of Embedding(mask_zero=True) and does not expand "
        "it first). Pass one weight per token instead: "
        f"sample_weight = np.repeat(w[:, None], {steps}, axis=1)."
    )
