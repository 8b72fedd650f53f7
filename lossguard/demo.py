"""`lossguard demo`: a broken and a fixed GloVe seq2seq, explained.

Task: reverse a short sequence of real English words (3 to 6 of the 400 most
frequent words of the bundled GloVe subset). Encoder and decoder read frozen
GloVe 6B 50d embeddings. The broken setup makes the classic mistake: the
decoder predicts the *GloVe vector* of each target word through a softmax
with categorical cross-entropy, and pads targets with a row of -1. The fixed
setup predicts token ids with a sparse, stable cross-entropy that ignores
the padding id.
"""

from __future__ import annotations

import os
import time

import numpy as np

PAD, START = 0, 1


def make_task(vectors, words=400, n=2000, max_len=6, seed=0):
    rng = np.random.default_rng(seed)
    vocab = ["<pad>", "<start>", *vectors.index[:words]]
    enc = np.zeros((n, max_len), "int32")
    dec = np.zeros((n, max_len), "int32")
    tgt = np.zeros((n, max_len), "int32")
    for i in range(n):
        length = rng.integers(3, max_len + 1)
        ids = rng.integers(2, len(vocab), length)
        enc[i, :length] = ids
        tgt[i, :length] = ids[::-1]
        dec[i, 0] = START
        dec[i, 1:length] = tgt[i, : length - 1]
    return vocab, enc, dec, tgt


def build(vocab, vectors, out_units, activation="softmax"):
    import keras

    from lossguard.glove import glove_embedding

    enc_in = keras.Input((None,), dtype="int32", name="encoder_tokens")
    dec_in = keras.Input((None,), dtype="int32", name="decoder_tokens")
    embed, coverage = glove_embedding(vocab, vectors, trainable=False, mask_zero=True)
    _, h, c = keras.layers.LSTM(64, return_state=True)(embed(enc_in))
    seq = keras.layers.LSTM(64, return_sequences=True)(
        embed(dec_in), initial_state=[h, c]
    )
    out = keras.layers.Dense(out_units, activation=activation, name="next_word")(seq)
    return keras.Model([enc_in, dec_in], out), coverage


def run(out_dir="lossguard-demo", epochs=4, echo=print):
    import keras

    import lossguard
    from lossguard.glove import bundled_glove

    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    vectors = bundled_glove()
    task = make_task(vectors)
    vocab, enc = task[0], task[1]
    echo(
        f"lossguard {lossguard.__version__} demo: reverse {len(enc)} word sequences "
        f"over {len(vocab) - 2} real words, frozen GloVe 6B 50d embeddings.\n"
    )
    watch = _broken_run(task, vectors, out_dir, epochs, echo)
    healthy = _fixed_run(task, vectors, out_dir, epochs, echo)
    written = _write_files(out_dir, watch.history, healthy.history, echo)
    echo("wrote " + ", ".join(written))
    echo(f"done in {time.perf_counter() - started:.0f} s")
    return {"broken": watch, "fixed": healthy, "files": written}


def _broken_run(task, vectors, out_dir, epochs, echo):
    """1. The broken setup: GloVe vectors as softmax targets, padding -1."""
    import keras

    import lossguard

    vocab, enc, dec, tgt = task
    echo(
        "1) BROKEN: the decoder predicts each target word's GloVe vector through "
        "a softmax,\n   categorical cross-entropy, padding encoded as a row of -1."
    )
    glove_targets = np.full(tgt.shape + (vectors.dim,), -1.0, "float32")
    real = tgt != PAD
    matrix = np.zeros((len(vocab), vectors.dim), "float32")
    matrix[2:] = vectors.vectors[: len(vocab) - 2]
    glove_targets[real] = matrix[tgt[real]]
    broken, coverage = build(vocab, vectors, vectors.dim)
    echo(f"   embedding coverage: {coverage}")
    broken.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    watch = lossguard.LossSanityCallback(
        action="stop", log_path=os.path.join(out_dir, "broken_history.csv")
    )
    broken.fit(
        [enc, dec],
        glove_targets,
        batch_size=32,
        epochs=epochs,
        verbose=0,
        callbacks=[watch],
    )
    h = watch.history
    first = watch.findings[0] if watch.findings else None
    where = (
        "" if first is None else f" (found at epoch {first.epoch}, step {first.step})"
    )
    echo(
        f"   stopped after {len(h)} batch(es){where}: last "
        f"batch loss {h.loss.iloc[-1]:.4f}, Keras' running mean "
        f"{h.running_loss.iloc[-1]:.4f}.\n"
    )
    echo(str(watch.report))
    return watch


def _fixed_run(task, vectors, out_dir, epochs, echo):
    """2. The fixed setup: token ids, a stable sparse loss, padding masked."""
    import keras

    import lossguard

    vocab, enc, dec, tgt = task
    echo(
        "\n2) FIXED: predict token ids (Dense(vocab, softmax)), "
        "StableSparseCategoricalCrossentropy(ignore_class=0), padding masked."
    )
    fixed, _ = build(vocab, vectors, len(vocab))
    fixed.compile(
        keras.optimizers.Adam(3e-3),
        lossguard.losses.StableSparseCategoricalCrossentropy(ignore_class=PAD),
    )
    healthy = lossguard.LossSanityCallback(
        action="warn", log_path=os.path.join(out_dir, "fixed_history.csv")
    )
    fixed.fit(
        [enc, dec], tgt, batch_size=32, epochs=epochs, verbose=0, callbacks=[healthy]
    )
    fh = healthy.history
    per_epoch = fh.groupby("epoch").loss.mean()
    echo("   mean batch loss per epoch: " + ", ".join(f"{v:.3f}" for v in per_epoch))
    echo(
        f"   min batch loss {fh.loss.min():.4f} (>= 0), "
        f"ln(vocab) = {np.log(len(vocab)):.3f} at chance."
    )
    quiet = [f for f in healthy.findings if f.severity != "info"]
    echo(f"   findings: {len(quiet)} error/warning.\n")
    return healthy


def _write_files(out_dir, broken_history, fixed_history, echo):
    """3. The files: both histories, and the plot where matplotlib is."""
    written = [
        os.path.join(out_dir, n) for n in ("broken_history.csv", "fixed_history.csv")
    ]
    try:
        from lossguard.plot import plot_history

        png = plot_history(
            {"broken": broken_history, "fixed": fixed_history},
            os.path.join(out_dir, "loss.png"),
            title="GloVe seq2seq: broken targets vs fixed",
        )
        written.append(png)
    except ImportError as error:
        echo(f"   (no plot: {error})")
    return written
