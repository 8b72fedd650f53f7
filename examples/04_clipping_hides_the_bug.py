"""Clipping a negative loss at 0, the common forum fix, hides the bug.

The targets are GloVe vectors (as in example 1), so categorical
cross-entropy goes negative. The "fix" wraps the loss in max(loss, 0) per
token: the reported loss is never negative again, and training looks fine.
The labels are still wrong (the model learns nothing useful from tokens whose
loss is clipped), and LossSanityCallback still names NEGATIVE_LABELS on the
exact batch, with the numbers.

    python examples/04_clipping_hides_the_bug.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import lossguard  # noqa: E402
from lossguard.demo import PAD, build, make_task  # noqa: E402
from lossguard.glove import bundled_glove  # noqa: E402


@keras.saving.register_keras_serializable(package="examples")
def clipped_at_zero_crossentropy(y_true, y_pred):
    """Categorical cross-entropy per token, with negatives clipped to 0."""
    return ops.maximum(keras.losses.categorical_crossentropy(y_true, y_pred), 0.0)


keras.utils.set_random_seed(0)
glove = bundled_glove()
vocab, enc, dec, tgt = make_task(glove, n=640)
targets = np.full(tgt.shape + (glove.dim,), -1.0, "float32")
real = tgt != PAD
targets[real] = glove.vectors[tgt[real] - 2]  # the mistake of example 1

model, _ = build(vocab, glove, out_units=glove.dim)
model.compile("adam", clipped_at_zero_crossentropy)
watch = lossguard.LossSanityCallback(action="record")
model.fit([enc, dec], targets, batch_size=32, epochs=2, verbose=0, callbacks=[watch])

h = watch.history
print(
    f"clipped loss: min {h.loss.min():.4f} over {len(h)} batches: never negative, "
    "so the run looks healthy."
)
print(
    f"but the labels go down to {h.label_min.min():.3f}, and "
    f"{(h.label_neg_share > 0).mean():.0%} of the batches hold negative labels:"
)
print(watch.report)
