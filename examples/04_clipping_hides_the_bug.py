"""Clipping a negative loss, the common forum fix, hides the bug.

The targets are GloVe vectors (as in example 1), so categorical
cross-entropy goes negative. The "fix", verbatim from the forums, clips each
token's loss into [0, 10]: the reported loss is never negative again, and
training looks fine. The labels are still wrong (the model learns nothing
from tokens whose loss is clipped), and LossSanityCallback still names
NEGATIVE_LABELS on the exact batch, with the numbers, and says how much of
the batch sat at the clip. lossguard never saw this loss before: it knows it
by probing how it behaves.

    python examples/04_clipping_hides_the_bug.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import lossguard  # noqa: E402
from lossguard.demo import PAD, build, make_task  # noqa: E402
from lossguard.glove import bundled_glove  # noqa: E402


def clipped_loss(y_true, y_pred):
    return tf.clip_by_value(
        tf.keras.losses.categorical_crossentropy(y_true, y_pred), 0, 10
    )


keras.utils.set_random_seed(0)
glove = bundled_glove()
vocab, enc, dec, tgt = make_task(glove, n=640)
targets = np.full(tgt.shape + (glove.dim,), -1.0, "float32")
real = tgt != PAD
targets[real] = glove.vectors[tgt[real] - 2]  # the mistake of example 1

model, _ = build(vocab, glove, out_units=glove.dim)
model.compile("adam", clipped_loss)
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
print(f"lossguard never saw this loss before; probing it: {watch.specs[0].identified}")
print(watch.report)
