"""Threads whose cause is a pre-trained embedding that does not fit the ids."""

from __future__ import annotations

import keras
import numpy as np

from tests.realworld.threads import Thread, rng, thread


@thread
def dlwp_145_glove_rows_shifted_by_three():
    """fchollet/deep-learning-with-python-notebooks#145, "6.1-using-word-
    embeddings - There seems to be a bug".

    Cause (the reporter, AI-Guru; not answered in the thread): "When creating
    the embedding matrix, the indices should be shifted by 3. Doing so
    results in a 20% accuracy increase on validation data." The integer
    sequences number words as keras.datasets.imdb does (0 padding, 1 start,
    2 out-of-vocabulary, a word of frequency rank r is id r + 3), while the
    matrix puts rank r's vector in row r.

    Rebuilt: the notebook's Embedding(max_words, dim, frozen, GloVe rows) ->
    Flatten -> Dense(32, relu) -> Dense(1, sigmoid) under binary cross-
    entropy and rmsprop, with the bundled real GloVe 6B 50d subset (3,000
    words by frequency) instead of glove.6B.100d, 200 reviews of 40 ids
    instead of 25,000 of 100, and the tokenizer's words by id given to the
    callback and to diagnose (`vocabulary=`, `vectors=`), which is how
    lossguard learns what each id means.

    Keras 3 here: the model trains (loss 0.69 -> 0.66 in 2 epochs); the
    mismatch is silent, as in the thread.
    """
    from lossguard.glove import bundled_glove

    glove = bundled_glove()
    words = list(glove.index)
    ranks = {word: r + 1 for r, word in enumerate(words)}  # word_index: 1-based
    max_words = len(words) + 4
    # The sequences' ids: keras.datasets.imdb's, rank + 3.
    by_id = ["<pad>", "<start>", "<oov>", "<unused>", *words]
    matrix = np.zeros((max_words, glove.dim), "float32")
    for word, r in ranks.items():  # the notebook's loop: row = word_index[w]
        matrix[r] = glove.vector(word)
    r = rng(145)
    x = r.integers(4, max_words, (200, 40))
    x[:, 0] = 1
    y = (r.uniform(size=(200, 1)) < 0.5).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((40,), dtype="int32"),
            keras.layers.Embedding(
                max_words,
                glove.dim,
                embeddings_initializer=keras.initializers.Constant(matrix),
                trainable=False,
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile("rmsprop", "binary_crossentropy", metrics=["acc"])
    given = {"vocabulary": by_id, "vectors": glove}
    return Thread(
        name="dlwp_145_glove_rows_shifted_by_three",
        url="https://github.com/fchollet/deep-learning-with-python-notebooks/issues/145",
        symptom="the GloVe-initialised IMDB classifier underperforms; shifting "
        "the matrix by 3 gave +20% validation accuracy",
        cause="when creating the embedding matrix, the indices should be shifted by 3",
        expected="EMBEDDING_MISALIGNED",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
        diagnose_kwargs=given,
        callback_kwargs=given,
    )
