"""Know a loss by how it behaves: probes for losses lossguard does not know.

A compiled loss that is not one of Keras' or lossguard's own (a function, a
lambda, a `functools.partial`, a `keras.losses.Loss` subclass with its own
`call`, a wrapper that masks, clips or reduces a Keras loss) is called
eagerly, outside the train step, on small synthetic tensors shaped like the
model's output. Its values are compared with what each family would give on
the same tensors:

- categorical cross-entropy on probabilities, `-Σ y log p`, or on logits,
  `-Σ y log softmax(z)`: fitted as `(1 - ls) CE + ls U` (U the uniform
  target's cross-entropy) on one probe and verified on a second, which also
  measures a label smoothing `ls`; with one-hot labels, or sparse class ids;
- binary cross-entropy on probabilities or logits (with label smoothing);
- KL divergence `Σ y log(y / p)` (told from cross-entropy by soft labels);
- Dice, `1 - (2 Σ y p + s) / (Σ y + Σ p + s)` or its negation `-dice`, over
  the whole batch or per sample, with the smoothing `s` fitted on one probe
  and verified on a second;
- masking: a loss whose value ignores the rows whose label is a padding id
  (0, -1 or -100: a masked mean) "ignores" that id;
- clipping: the loss of a term whose cross-entropy is 13.8 (p = 1e-6), and of
  a term with a negative label, show an upper and a lower clip.

Then its floor: every loss is called on *valid* inputs only, labels in
[0, 1] (0/1 labels stay 0/1; sparse ids in [0, K)) and predictions in the
range of the output's activation (a sigmoid's (0, 1), a ReLU's [0, inf),
anything for a linear output): at the target itself (`y_pred == y_true`),
near it, and at random; and, for an output that concatenates parameters
(a mean and a scale: width 2·D; mixtures: 3·K·D or K·(2·D + 1)), with labels
of width D, the means at the target and the scales small. A loss that goes
below zero there is negative by design (a Gaussian or mixture negative
log-likelihood, a cosine similarity, `-dice`, a Wasserstein critic): floor
"below". A loss that stays >= 0 on every such probe is bounded below by 0
as measured: floor "zero". A loss no probe could evaluate has an unknown
floor: a negative value from it is reported as info, never as a warning.

Tolerances: a value "matches" a family within 1e-3 relative plus 1e-4
absolute; an upper clip is reported when the term of cross-entropy 13.8
comes out more than 5% lower (an epsilon added inside the log is not a clip),
a lower clip when negative labels give a value above the family's; a probe
is "below zero" under -1e-4. Probing reads no model, optimizer or metric
state; it takes a few to a few tens of milliseconds, once per `fit` or
`diagnose`.
"""

from __future__ import annotations

from lossguard.kinds import LossKind

from .dice import dice_fit
from .families import binary_fit, cross_entropy_fit, words
from .floor import measure_floor
from .prober import Identity, Prober

__all__ = ["Identity", "identify"]


def identify(loss, output_shape, activation=None) -> Identity:
    """Probe `loss` on tensors shaped like `output_shape` (batch axis first).

    `activation` is the output layer's (it bounds the predictions the floor
    probes use). Returns an `Identity`; kind "other" with `how` saying why
    when no family fits.
    """
    shape = [2] + [3 if d is None else min(int(d), 4) for d in output_shape[1:-1]]
    k = output_shape[-1] if output_shape else None
    if not isinstance(k, int) or len(output_shape) < 2:
        return Identity(
            LossKind.OTHER,
            how="not probed: the output's class axis is unknown",
            floor="unknown",
            floor_how="not probed",
        )
    prober = Prober(loss, (*shape, k))
    found = cross_entropy_fit(prober) if k > 1 else None
    if found is None:
        fit = binary_fit(prober, prober.shape)
        if fit is not None:
            found = Identity(
                LossKind.BINARY,
                from_logits=fit[0],
                label_smoothing=fit[1],
                how=words("binary cross-entropy", fit[0], fit[1]),
            )
    if found is None:
        found = dice_fit(prober)
    if found is None:
        floor, floor_how = measure_floor(prober, activation)
        if floor == "below":
            found = Identity(
                LossKind.UNBOUNDED,
                how=f"negative by design: {floor_how}",
                floor=floor,
                floor_how=floor_how,
            )
        elif len(prober.errors) == prober.calls:
            found = Identity(
                LossKind.OTHER,
                how=f"it raised on every probe ({prober.errors[0]})",
                floor="unknown",
                floor_how="it raised on every probe",
            )
        else:
            found = Identity(
                LossKind.OTHER,
                how="it behaves as no cross-entropy, KL, Dice or similarity known",
                floor=floor,
                floor_how=floor_how,
            )
    return found
