"""A tiny, real GloVe seq2seq with any catalogued fault injected on demand.

`tiny_seq2seq()` returns a compiled encoder-decoder over the bundled GloVe
subset, with data: the task is to reverse a short English sentence (token
ids), the decoder is fed `[<start>] + target[:-1]`, targets are sparse ids,
padding is masked. It is healthy: `diagnose` and `LossSanityCallback` report
no error or warning on it. `tiny_seq2seq(fault="NEGATIVE_LABELS")` builds the
same model and data with that one fault, the way users make it.

Used by the pytest plugin's `lossguard_tiny_seq2seq` fixture, the examples
and lossguard's own tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lossguard.diagnosis.registry import FAULTS as _REGISTRY

#: Sentence length (encoder and decoder steps).
STEPS = 6
#: Real words from the bundled GloVe subset (frequent, lower-case).
WORDS = slice(60, 100)


@dataclasses.dataclass
class Setup:
    """Everything `tiny_seq2seq` builds, as knobs an injector may turn."""

    vocab: list
    glove: object
    seed: int
    min_len: int = 3
    mask_zero: bool = True
    misaligned_embedding: bool = False
    trainable_embedding: bool = False
    negative_bonus: bool = False
    units: int | None = None  # default: the vocabulary size
    activation: str | None = "softmax"
    dtype: str | None = None
    saturate: bool = False
    kernel_scale: float | None = None  # the output layer's starting kernel, scaled
    dead_layer: bool = False  # a ReLU layer whose units all output 0 before the output
    hidden: tuple = ()  # activations of Dense(32) layers between decoder and output
    learning_rate: float = 0.01
    optimizer: str = "adam"  # or "sgd"
    epsilon: float | None = None  # the optimizer's (default: Keras')
    loss_bonus: float | None = None  # subtracted by an overridden compute_loss
    loss: object = "sparse_categorical_crossentropy"
    loss_weights: list | None = None
    # (setup, source, decoder, target) -> (source, decoder, y); y = target by default
    data: object = None


#: fault code -> injector (a function that turns the knobs of a `Setup`).
INJECTORS: dict = {}


def injector(code):
    """Register the decorated function as the way to inject `code`."""

    def register(function):
        INJECTORS[code] = function
        return function

    return register


def _onehot(setup, ids):
    return np.eye(len(setup.vocab), dtype="float32")[ids]


@injector("NEGATIVE_LABELS")
def _glove_targets(setup):
    """GloVe vectors as targets, through a softmax over their 50 dims."""
    from lossguard.glove import embedding_matrix

    setup.units, setup.loss = setup.glove.dim, "categorical_crossentropy"
    matrix, _ = embedding_matrix(setup.vocab, setup.glove)
    setup.data = lambda s, src, dec, tgt: (src, dec, matrix[tgt])


@injector("LABEL_SUM_NOT_ONE")
def _two_hot(setup):
    def data(s, src, dec, tgt):
        y = _onehot(s, tgt) + _onehot(s, (tgt + 1) % len(s.vocab))
        y[tgt == 0] = 0
        return src, dec, y

    setup.loss, setup.data = "categorical_crossentropy", data


@injector("EMPTY_LABEL_ROWS")
def _zero_padding_rows(setup):
    def data(s, src, dec, tgt):
        y = _onehot(s, tgt)
        y[tgt == 0] = 0  # padding one-hot encoded as zeros, unmasked
        return src, dec, y

    setup.mask_zero, setup.loss, setup.data = False, "categorical_crossentropy", data


@injector("LABELS_OUT_OF_RANGE")
def _id_past_vocabulary(setup):
    def data(s, src, dec, tgt):
        y = tgt.copy()
        y[0, 0] = len(s.vocab) + 3
        return src, dec, y

    setup.data = data


@injector("NEGATIVE_WEIGHTS")
def _negative_loss_weight(setup):
    setup.loss_weights = [-1.0]


@injector("NEGATIVE_AUX_LOSS")
def _entropy_bonus_sign_flipped(setup):
    setup.negative_bonus = True


@injector("LOSS_UNBOUNDED_BELOW")
def _cosine_loss(setup):
    setup.loss = "cosine_similarity"
    setup.data = lambda s, src, dec, tgt: (src, dec, _onehot(s, tgt))


@injector("NEGATIVE_LOSS")
def _compute_loss_subtracts_a_bonus(setup):
    """A Model subclass whose compute_loss subtracts a 'bonus' of 5 from the
    compiled loss: a term lossguard cannot see, under a loss >= 0."""
    setup.loss_bonus = 5.0


@injector("NONFINITE_LOSS")
def _nan_label(setup):
    def data(s, src, dec, tgt):
        y = _onehot(s, tgt)
        y[1, 0, 2] = np.nan
        return src, dec, y

    setup.loss, setup.data = "categorical_crossentropy", data


@injector("PREDICTIONS_NOT_PROBABILITIES")
def _linear_output(setup):
    setup.activation = None


@injector("PROBABILITIES_AS_LOGITS")
def _double_softmax(setup):
    import keras

    setup.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@injector("SINGLE_UNIT_CATEGORICAL")
def _one_unit(setup):
    setup.units, setup.loss = 1, "categorical_crossentropy"
    setup.data = lambda s, src, dec, tgt: (
        src,
        dec,
        np.ones((len(src), STEPS, 1), "float32"),
    )


@injector("INVALID_LABEL_SMOOTHING")
def _smoothing_above_one(setup):
    import keras

    setup.loss = keras.losses.CategoricalCrossentropy(label_smoothing=1.5)
    setup.data = lambda s, src, dec, tgt: (src, dec, _onehot(s, tgt))


@injector("SINGLE_UNIT_SOFTMAX")
def _softmax_over_one_unit(setup):
    """A binary question (is the answer's word an even id?) on Dense(1, softmax)."""
    setup.units, setup.loss = 1, "binary_crossentropy"
    setup.data = lambda s, src, dec, tgt: (
        src,
        dec,
        (tgt[..., None] % 2).astype("float32"),
    )


@injector("OPTIMIZER_EPSILON_UNDERFLOW")
def _float16_adam_epsilon(setup):
    """The output layer's variables in float16, Adam's epsilon below float16's
    smallest number."""
    setup.dtype, setup.epsilon = "float16", 1e-8


@injector("DECODER_TARGET_NOT_SHIFTED")
def _unshifted_decoder(setup):
    setup.data = lambda s, src, dec, tgt: (src, tgt.copy(), tgt)


@injector("PADDING_NOT_MASKED")
def _mostly_padding(setup):
    def data(s, src, dec, tgt):
        tgt[:, 2:] = 0  # 1-2 word answers padded to 6
        dec[:, 3:] = 0
        src[:, 2:] = 0
        return src, dec, tgt

    setup.min_len, setup.mask_zero, setup.data = 1, False, data


@injector("LOW_PRECISION_SATURATION")
def _float16_saturated(setup):
    setup.dtype, setup.saturate = "float16", True


@injector("LOSS_AT_UNIFORM")
def _zeroed_frozen_output(setup):
    """The output layer's weights start at 0 and the learning rate is 0 (a
    model restored into a zero-initialised head, trained with a schedule
    that starts at 0 and never rises): the logits are 0, the prediction
    uniform, and nothing moves."""
    setup.kernel_scale, setup.learning_rate = 0.0, 0.0


@injector("DEAD_UNITS")
def _dead_layer_before_the_output(setup):
    """A ReLU layer whose units all output 0 (its bias far below its inputs'
    reach, as after a learning-rate spike) feeds an output layer without a
    bias: the logits are 0, the prediction uniform, and no gradient flows."""
    setup.dead_layer = True


@injector("EXPLODING_GRADIENTS")
def _unscaled_regression_targets(setup):
    """The target ids (0 to 41) regressed as numbers, unscaled, by a linear
    output under plain SGD at a rate too high for their scale."""
    setup.units, setup.activation, setup.loss = 1, None, "mean_squared_error"
    setup.optimizer, setup.learning_rate = "sgd", 0.5

    def data(s, src, dec, tgt):
        return src, dec, tgt[..., None].astype("float32")

    setup.data = data


@injector("VANISHING_GRADIENTS")
def _deep_sigmoid_stack(setup):
    """Eight sigmoid layers between the decoder and the output, trained by
    plain SGD: each multiplies the gradient by at most 1/4 on its way down."""
    setup.hidden = ("sigmoid",) * 8
    setup.optimizer, setup.learning_rate = "sgd", 0.01


@injector("SATURATED_PREDICTIONS")
def _huge_initial_weights(setup):
    """The output layer starts with weights 300 times Glorot's."""
    setup.kernel_scale = 300.0


@injector("EMBEDDING_OOV_ROWS")
def _tokens_glove_lacks(setup):
    setup.vocab = setup.vocab + [f"zq{i}xv" for i in range(20)]


@injector("EMBEDDING_MISALIGNED")
def _matrix_without_start(setup):
    setup.misaligned_embedding = True


@injector("EMBEDDING_DRIFT")
def _fine_tuned_fast(setup):
    setup.trainable_embedding, setup.learning_rate = True, 0.05


def vocabulary(glove=None) -> list:
    """The tiny task's words by id: padding "", "<start>", then 40 real words."""
    from lossguard.glove import bundled_glove

    glove = glove or bundled_glove()
    return ["", "<start>", *glove.index[WORDS]]


def tiny_data(n=64, seed=0, min_len=3, vocab_size=None):
    """(encoder ids, decoder input ids, target ids): reverse the sentence."""
    vocab_size = vocab_size or 2 + (WORDS.stop - WORDS.start)
    rng = np.random.default_rng(seed)
    source = np.zeros((n, STEPS), "int32")
    target = np.zeros((n, STEPS), "int32")
    for i in range(n):
        length = rng.integers(min_len, STEPS + 1)
        words = rng.integers(2, vocab_size, length)
        source[i, :length] = words
        target[i, :length] = words[::-1]
    decoder = np.concatenate([np.ones((n, 1), "int32"), target[:, :-1]], axis=1)
    decoder[target == 0] = 0  # no token after the end
    return source, decoder, target


def _negative_bonus_layer():
    import keras

    class NegativeBonus(keras.layers.Layer):
        """An 'entropy bonus' with the wrong sign: add_loss(-5 - mean(h^2))."""

        def call(self, h):
            self.add_loss(-5.0 - keras.ops.mean(h**2))
            return h

    return NegativeBonus(name="entropy_bonus")


def tiny_seq2seq(fault=None, *, n=64, seed=0, glove=None):
    """A compiled GloVe encoder-decoder and its data, optionally with a fault.

    Args:
        fault: None for the healthy setup, or a code of docs/faults.md (see
            `FAULTS`). `EMBEDDING_DRIFT` gives a fine-tuned embedding and a
            high learning rate: fit it with `EmbeddingDriftMonitor` to see it.
        n: Number of sentences.
        seed: Seeds the weights (the same on every backend) and the data.
        glove: The `GloveVectors` (default: the bundled subset).

    Returns:
        `(model, x, y)` with `x = [encoder_ids, decoder_ids]`.

    Raises:
        ValueError: For an unknown fault, naming the known ones.
    """
    if fault is not None and fault not in INJECTORS:
        raise ValueError(
            f"Unknown `fault` {fault!r}. Pass None or one of: {', '.join(FAULTS)}."
        )
    import keras

    from lossguard.glove import bundled_glove

    keras.utils.set_random_seed(seed)
    glove = glove or bundled_glove()
    setup = Setup(vocab=vocabulary(glove), glove=glove, seed=seed)
    if fault is not None:
        INJECTORS[fault](setup)
    source, decoder, target = tiny_data(
        n, seed, min_len=setup.min_len, vocab_size=len(setup.vocab)
    )
    if setup.data is not None:
        source, decoder, y = setup.data(setup, source, decoder, target)
    else:
        y = target
    model = _build(setup)
    optimizer = keras.optimizers.Adam(
        setup.learning_rate, epsilon=setup.epsilon or keras.config.epsilon()
    )
    if setup.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(setup.learning_rate)
    if setup.saturate:
        optimizer = keras.optimizers.SGD(0.0)  # keep the saturating weights
    model.compile(optimizer, setup.loss, loss_weights=setup.loss_weights)
    return model, [source, decoder], y


def _embedding(setup):
    import keras

    from lossguard.glove import embedding_matrix, glove_embedding, remember_source

    glove, vocab = setup.glove, setup.vocab
    if not setup.misaligned_embedding:
        embed, _ = glove_embedding(
            vocab, glove, trainable=setup.trainable_embedding, mask_zero=setup.mask_zero
        )
        return embed
    # Rows built without "<start>": every word after it is one row off.
    matrix, _ = embedding_matrix([v for v in vocab if v != "<start>"], glove)
    matrix = np.vstack([matrix, np.zeros((1, glove.dim), "float32")])
    embed = keras.layers.Embedding(
        len(vocab),
        glove.dim,
        embeddings_initializer=keras.initializers.Constant(matrix),
        trainable=False,
        mask_zero=setup.mask_zero,
        name="glove_embedding",
    )
    remember_source(embed, vocab, glove)  # what the tokenizer uses
    return embed


def _build(setup):
    import keras

    embed = _embedding(setup)
    enc_in = keras.Input((STEPS,), dtype="int32", name="encoder_ids")
    dec_in = keras.Input((STEPS,), dtype="int32", name="decoder_ids")
    _, h, c = keras.layers.LSTM(32, return_state=True, name="encoder")(embed(enc_in))
    seq = keras.layers.LSTM(32, return_sequences=True, name="decoder")(
        embed(dec_in), initial_state=[h, c]
    )
    if setup.negative_bonus:
        seq = _negative_bonus_layer()(seq)
    for i, activation in enumerate(setup.hidden):
        seq = keras.layers.Dense(32, activation, name=f"hidden_{i}")(seq)
    if setup.dead_layer:
        dead = keras.initializers.Constant(-100.0)
        seq = keras.layers.Dense(32, "relu", bias_initializer=dead, name="dead")(seq)
    dense = keras.layers.Dense(
        setup.units or len(setup.vocab),
        activation=setup.activation,
        dtype=setup.dtype,
        use_bias=not setup.dead_layer,
        name="next",
    )
    model_class = keras.Model if setup.loss_bonus is None else _bonus_model()
    model = model_class([enc_in, dec_in], dense(seq), name="tiny_seq2seq")
    if setup.loss_bonus is not None:
        model.loss_bonus = setup.loss_bonus
    same_weights(model, setup.seed)
    if setup.saturate:
        signs = np.sign(
            np.random.default_rng(setup.seed).normal(size=dense.kernel.shape)
        )
        dense.kernel.assign(3000.0 * signs)  # logits beyond float16's range
    if setup.kernel_scale is not None:
        dense.kernel.assign(dense.kernel * setup.kernel_scale)
    return model


def _bonus_model():
    import keras

    class BonusModel(keras.Model):
        """compute_loss returns the compiled loss minus `loss_bonus`."""

        def compute_loss(self, *args, **kwargs):
            return super().compute_loss(*args, **kwargs) - self.loss_bonus

    return BonusModel


def same_weights(model, seed=0):
    """Give `model` the same starting weights on every Keras backend.

    Each backend's random initialisers draw other numbers from the same
    seed; this redraws every kernel (weights of rank >= 2) as Glorot-uniform
    with NumPy. Biases keep Keras' constant starts, and Embedding layers
    (pre-trained vectors) are left as they are."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            continue
        for weight in layer.weights:
            if len(weight.shape) < 2:
                continue
            fan_in, fan_out = weight.shape[-2], weight.shape[-1]
            limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
            weight.assign(rng.uniform(-limit, limit, weight.shape).astype("float32"))


#: The codes `tiny_seq2seq` can inject, in the registry's order.
FAULTS = tuple(code for code in _REGISTRY if code in INJECTORS)
#: The codes `LossSanityCallback` reads only with `internals=True` (the
#: model's gradients and ReLU layers; `diagnose` reads DEAD_UNITS always).
NEEDS_INTERNALS = frozenset(
    {"EXPLODING_GRADIENTS", "VANISHING_GRADIENTS", "DEAD_UNITS"}
)
