"""The same GloVe encoder-decoder, set up correctly: healthy and quiet.

Targets are token ids; the output is Dense(vocab, softmax); the loss is
lossguard's StableSparseCategoricalCrossentropy with ignore_class for the
padding id; the embedding masks padding (mask_zero=True). LossSanityCallback
(action="raise") watches every batch and finds nothing to say.

    python examples/02_fixed_sparse_stable_masked.py
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
vocab, enc, dec, tgt = make_task(glove, n=1280)

model, coverage = build(vocab, glove, out_units=len(vocab))
model.compile(
    keras.optimizers.Adam(3e-3),
    lossguard.losses.StableSparseCategoricalCrossentropy(ignore_class=PAD),
)
print("before training:", repr(lossguard.diagnose(model, [enc, dec], tgt)))
watch = lossguard.LossSanityCallback(action="raise")
model.fit([enc, dec], tgt, batch_size=32, epochs=3, verbose=0, callbacks=[watch])

per_epoch = watch.history.groupby("epoch").loss.mean()
print("mean batch loss per epoch:", ", ".join(f"{v:.3f}" for v in per_epoch))
print(f"chance level ln(vocab) = {np.log(len(vocab)):.3f}")
print(f"lowest batch loss {watch.history.loss.min():.4f}")
print(watch.report)
