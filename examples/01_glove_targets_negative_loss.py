"""An encoder-decoder LSTM over frozen GloVe embeddings whose loss goes negative.

The decoder targets are built wrongly, the way forum posts show it: each
target word is its GloVe vector (pushed through a softmax and categorical
cross-entropy), and padding positions are a row of -1. The loss drops below
zero; LossSanityCallback names the batch, the numbers and the cause.

    python examples/01_glove_targets_negative_loss.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402
from lossguard.demo import PAD, build, make_task  # noqa: E402
from lossguard.glove import bundled_glove  # noqa: E402

keras.utils.set_random_seed(0)
glove = bundled_glove()
vocab, enc, dec, tgt = make_task(glove, n=640)

# The mistake: GloVe vectors as targets, -1 rows as padding.
targets = np.full(tgt.shape + (glove.dim,), -1.0, "float32")
real = tgt != PAD
targets[real] = glove.vectors[tgt[real] - 2]  # ids 2.. are glove.index[0..]

model, coverage = build(vocab, glove, out_units=glove.dim)
model.compile("adam", "categorical_crossentropy")
watch = lossguard.LossSanityCallback(action="record")
model.fit([enc, dec], targets, batch_size=32, epochs=2, verbose=0, callbacks=[watch])

h = watch.history
negative = h[h.loss < 0]
print(f"embedding coverage: {coverage}")
print(
    f"{len(negative)} of {len(h)} batches had a negative loss (lowest "
    f"{h.loss.min():.3f}); Keras' running mean ended at {h.running_loss.iloc[-1]:.3f}."
)
print(watch.report)
