"""A negative val_loss: the validation labels hold a -1 padding row.

The training labels are one-hot token ids, and train fine. The validation
set was padded by hand with a -1 row (a common way to "mark" padding), so
Keras' val_loss is negative every epoch while the training loss is not.
LossSanityCallback watches validation batches too: it names NEGATIVE_LABELS
in the validation phase, at the exact batch and position.

    python examples/05_negative_val_loss.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402
from lossguard.demo import PAD, make_task  # noqa: E402
from lossguard.glove import bundled_glove, glove_embedding  # noqa: E402

keras.utils.set_random_seed(0)
glove = bundled_glove()
vocab, enc, dec, tgt = make_task(glove, n=640)
onehot = np.eye(len(vocab), dtype="float32")[tgt]  # padding: the <pad> class
train, val = slice(0, 512), slice(512, None)
val_targets = onehot[val].copy()
val_targets[tgt[val] == PAD] = -1.0  # the hand-rolled "-1 padding" row

# An encoder-decoder over frozen GloVe inputs; padding is a class to predict.
embed, _ = glove_embedding(vocab, glove, mask_zero=False)
enc_in = keras.Input((None,), dtype="int32")
dec_in = keras.Input((None,), dtype="int32")
_, h, c = keras.layers.LSTM(64, return_state=True)(embed(enc_in))
seq = keras.layers.LSTM(64, return_sequences=True)(embed(dec_in), initial_state=[h, c])
out = keras.layers.Dense(len(vocab), activation="softmax")(seq)
model = keras.Model([enc_in, dec_in], out)
model.compile("adam", "categorical_crossentropy")
watch = lossguard.LossSanityCallback(action="record")
fit = model.fit(
    [enc[train], dec[train]],
    onehot[train],
    validation_data=([enc[val], dec[val]], val_targets),
    batch_size=32,
    epochs=2,
    verbose=0,
    callbacks=[watch],
)
losses = ", ".join(f"{v:.3f}" for v in fit.history["loss"])
val_losses = ", ".join(f"{v:.3f}" for v in fit.history["val_loss"])
print(f"Keras: loss per epoch {losses}; val_loss per epoch {val_losses}")
h = watch.history
for phase, rows in h.groupby("phase"):
    print(
        f"{phase}: {len(rows)} batches, lowest label {rows.label_min.min():.3g}, "
        f"lowest batch loss {rows.loss.min():.4f}"
    )
print(watch.report)
