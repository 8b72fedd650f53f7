"""Fine-tuning GloVe embeddings on a small data set, with the drift monitor.

The embedding is trainable and the learning rate high; EmbeddingDriftMonitor
records, per epoch, how far the fine-tuned rows moved from their pre-trained
vectors, and reports EMBEDDING_DRIFT once the mean cosine falls below 0.95.

    python examples/03_fine_tuned_embedding_drift.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import lossguard  # noqa: E402
from lossguard.demo import PAD, make_task  # noqa: E402
from lossguard.glove import bundled_glove, glove_embedding  # noqa: E402

keras.utils.set_random_seed(0)
glove = bundled_glove()
vocab, enc, dec, tgt = make_task(glove, words=100, n=320)

embed, coverage = glove_embedding(vocab, glove, trainable=True, mask_zero=True)
enc_in = keras.Input((None,), dtype="int32")
dec_in = keras.Input((None,), dtype="int32")
_, h, c = keras.layers.LSTM(64, return_state=True)(embed(enc_in))
seq = keras.layers.LSTM(64, return_sequences=True)(embed(dec_in), initial_state=[h, c])
out = keras.layers.Dense(len(vocab), activation="softmax")(seq)
model = keras.Model([enc_in, dec_in], out)
model.compile(
    keras.optimizers.Adam(0.02),
    keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD),
)
monitor = lossguard.EmbeddingDriftMonitor(threshold=0.95, action="record")
model.fit([enc, dec], tgt, batch_size=32, epochs=6, verbose=0, callbacks=[monitor])

print(monitor.history.to_string(index=False, float_format="%.4f"))
print(monitor.report)
