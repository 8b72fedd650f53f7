"""Real-world training setups that lossguard must survive, shrunk to seconds.

Each builder copies the model and loss code of one keras.io example (or a
TensorFlow tutorial, or a well-known forum answer) and replaces its data set
with small synthetic data of the same shapes and dtypes. Sizes are cut down
(vocabulary ~64, sequences ~10 steps, 16-32 wide layers, ~100 samples) so
that each one trains in a few seconds on CPU.

A builder takes no argument and returns a `Scenario`; call
`keras.utils.set_random_seed` first for reproducible weights. Nothing heavy
is built at import time.

Deviations from the originals, kept as small as possible:
- `keras_hub.layers.PositionEmbedding` (masked_language_modeling) is replaced
  by `PositionEmbedding` below, the same learned (length, dim) table.
- Module-level objects of the examples that hold state (the MLM's loss
  tracker) live on the model, so that building a scenario twice builds two
  independent models.
- `add_metric` (endpoint_layer_pattern) does not exist in Keras 3 and is left
  out, as in the Keras 3 port of that example.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops


@dataclasses.dataclass
class Scenario:
    """One compiled model, its training data and what lossguard should say.

    Attributes:
        name: Short id (the pytest parameter).
        source: The file the model and loss code come from.
        model: The compiled model.
        x, y: What `fit` gets (`y` is None for a `tf.data.Dataset` or for
            models that take no labels).
        fit_kwargs: More `fit` arguments (batch_size, validation_data, ...).
        diagnose_args: Positional arguments after `model` for
            `lossguard.diagnose`, or None where the setup has no clear (x, y).
        faults: The codes of the faults that really are in the setup; empty
            for a healthy one.
        notes: Why it is here / what is special about it.
    """

    name: str
    source: str
    model: keras.Model
    x: Any
    y: Any = None
    fit_kwargs: dict = dataclasses.field(default_factory=dict)
    diagnose_args: tuple | None = None
    faults: frozenset = frozenset()
    notes: str = ""


def _rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------
# Shared layers: examples/nlp/ner_transformers.py and
# examples/nlp/text_classification_with_transformer.py (the same two layers).
class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embed_dim
        )
        self.ffn = keras.Sequential(
            [
                keras.layers.Dense(ff_dim, activation="relu"),
                keras.layers.Dense(embed_dim),
            ]
        )
        self.layernorm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = keras.layers.Dropout(rate)
        self.dropout2 = keras.layers.Dropout(rate)

    def call(self, inputs, training=False):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output, training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output, training=training)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = keras.layers.Embedding(
            input_dim=vocab_size, output_dim=embed_dim
        )
        self.pos_emb = keras.layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, inputs):
        maxlen = tf.shape(inputs)[-1]
        positions = tf.range(start=0, limit=maxlen, delta=1)
        position_embeddings = self.pos_emb(positions)
        token_embeddings = self.token_emb(inputs)
        return token_embeddings + position_embeddings


# --------------------------------------------------------------------------
# 1. examples/nlp/ner_transformers.py
class NERModel(keras.Model):
    def __init__(
        self, num_tags, vocab_size, maxlen=128, embed_dim=32, num_heads=2, ff_dim=32
    ):
        super().__init__()
        self.embedding_layer = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)
        self.transformer_block = TransformerBlock(embed_dim, num_heads, ff_dim)
        self.dropout1 = layers.Dropout(0.1)
        self.ff = layers.Dense(ff_dim, activation="relu")
        self.dropout2 = layers.Dropout(0.1)
        self.ff_final = layers.Dense(num_tags, activation="softmax")

    def call(self, inputs, training=False):
        x = self.embedding_layer(inputs)
        x = self.transformer_block(x)
        x = self.dropout1(x, training=training)
        x = self.ff(x)
        x = self.dropout2(x, training=training)
        x = self.ff_final(x)
        return x


class CustomNonPaddingTokenLoss(keras.losses.Loss):
    def __init__(self, name="custom_ner_loss"):
        super().__init__(name=name)

    def call(self, y_true, y_pred):
        loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None
        )
        loss = loss_fn(y_true, y_pred)
        mask = tf.cast((y_true > 0), dtype=tf.float32)
        loss = loss * mask
        return tf.reduce_sum(loss) / tf.reduce_sum(mask)


def ner_transformers():
    num_tags = 10  # [PAD], O and B-/I- of PER, ORG, LOC, MISC
    vocab_size, maxlen, n, batch_size = 64, 16, 100, 32  # 3 full batches + 4
    rng = _rng(1)
    lengths = rng.integers(4, 13, n)
    # StringLookup ids: 0 is the OOV token; tags are shifted by one (0 = pad).
    tokens = [rng.integers(0, vocab_size, k).tolist() for k in lengths]
    tags = [(rng.integers(0, num_tags - 1, k) + 1).tolist() for k in lengths]
    # The example reads tab-separated lines with TextLineDataset.map(...):
    # one variable-length (tokens, tags) pair per record.
    dataset = tf.data.Dataset.from_generator(
        lambda: zip(tokens, tags, strict=True),
        output_signature=(
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((None,), tf.int64),
        ),
    ).padded_batch(batch_size)
    model = NERModel(num_tags, vocab_size, maxlen=maxlen, embed_dim=16, num_heads=2)
    model.compile(optimizer="adam", loss=CustomNonPaddingTokenLoss())
    return Scenario(
        name="ner_transformers",
        source="keras-io examples/nlp/ner_transformers.py",
        model=model,
        x=dataset,
        diagnose_args=(dataset,),
        # The example's softmax output feeds a from_logits=True loss.
        faults=frozenset({"PROBABILITIES_AS_LOGITS"}),
        notes=(
            "custom Loss subclass that reduces to a scalar itself; subclassed "
            "model; padded_batch: (None, None) batches, last one partial. The "
            "example really ends in softmax and uses from_logits=True."
        ),
    )


# --------------------------------------------------------------------------
# 2. examples/nlp/masked_language_modeling.py (Keras 3 version)
class PositionEmbedding(layers.Layer):
    """Stand-in for keras_hub.layers.PositionEmbedding: a learned position
    table of shape (sequence_length, dim), broadcast to the input's shape."""

    def __init__(self, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            shape=(self.sequence_length, input_shape[-1]),
            initializer="glorot_uniform",
            name="embeddings",
        )

    def call(self, inputs):
        length = ops.shape(inputs)[-2]
        table = self.position_embeddings[:length]
        return ops.broadcast_to(table, ops.shape(inputs))


class MaskedLanguageModel(keras.Model):
    # The example's module-level `loss_fn` / `loss_tracker`, kept per model.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        loss = self.loss_fn(y, y_pred, sample_weight)
        self.loss_tracker.update_state(loss, sample_weight=sample_weight)
        return keras.ops.sum(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight):
        # Return a dict mapping metric names to current value
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]


def _bert_module(query, key, value, i, embed_dim, num_head, ff_dim):
    attention_output = layers.MultiHeadAttention(
        num_heads=num_head,
        key_dim=embed_dim // num_head,
        name=f"encoder_{i}_multiheadattention",
    )(query, key, value)
    attention_output = layers.Dropout(0.1, name=f"encoder_{i}_att_dropout")(
        attention_output
    )
    attention_output = layers.LayerNormalization(
        epsilon=1e-6, name=f"encoder_{i}_att_layernormalization"
    )(query + attention_output)
    ffn = keras.Sequential(
        [
            layers.Dense(ff_dim, activation="relu"),
            layers.Dense(embed_dim),
        ],
        name=f"encoder_{i}_ffn",
    )
    ffn_output = ffn(attention_output)
    ffn_output = layers.Dropout(0.1, name=f"encoder_{i}_ffn_dropout")(ffn_output)
    sequence_output = layers.LayerNormalization(
        epsilon=1e-6, name=f"encoder_{i}_ffn_layernormalization"
    )(attention_output + ffn_output)
    return sequence_output


def _get_masked_input_and_labels(encoded_texts, mask_token_id, rng):
    """The example's 15% BERT masking, with a seeded generator."""
    inp_mask = rng.random(encoded_texts.shape) < 0.15
    inp_mask[encoded_texts <= 2] = False
    labels = -1 * np.ones(encoded_texts.shape, dtype=int)
    labels[inp_mask] = encoded_texts[inp_mask]
    encoded_texts_masked = np.copy(encoded_texts)
    inp_mask_2mask = inp_mask & (rng.random(encoded_texts.shape) < 0.90)
    encoded_texts_masked[inp_mask_2mask] = mask_token_id
    inp_mask_2random = inp_mask_2mask & (rng.random(encoded_texts.shape) < 1 / 9)
    encoded_texts_masked[inp_mask_2random] = rng.integers(
        3, mask_token_id, inp_mask_2random.sum()
    )
    sample_weights = np.ones(labels.shape)
    sample_weights[labels == -1] = 0
    y_labels = np.copy(encoded_texts)
    return encoded_texts_masked, y_labels, sample_weights


def masked_language_modeling():
    max_len, vocab_size, embed_dim, num_head, ff_dim = 12, 64, 16, 2, 16
    n, batch_size = 96, 32
    mask_token_id = vocab_size - 1
    rng = _rng(2)
    # TextVectorization output: 0 = padding, 1 = OOV, then words; reviews
    # shorter than max_len are padded at the end.
    encoded = rng.integers(2, mask_token_id, (n, max_len))
    lengths = rng.integers(6, max_len + 1, n)
    encoded[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
    x_masked, y_labels, sample_weights = _get_masked_input_and_labels(
        encoded, mask_token_id, rng
    )
    mlm_ds = tf.data.Dataset.from_tensor_slices((x_masked, y_labels, sample_weights))
    mlm_ds = mlm_ds.shuffle(1000, seed=0).batch(batch_size)

    inputs = layers.Input((max_len,), dtype="int64")
    word_embeddings = layers.Embedding(vocab_size, embed_dim, name="word_embedding")(
        inputs
    )
    position_embeddings = PositionEmbedding(sequence_length=max_len)(word_embeddings)
    embeddings = word_embeddings + position_embeddings
    encoder_output = _bert_module(
        embeddings, embeddings, embeddings, 0, embed_dim, num_head, ff_dim
    )
    mlm_output = layers.Dense(vocab_size, name="mlm_cls", activation="softmax")(
        encoder_output
    )
    model = MaskedLanguageModel(inputs, mlm_output, name="masked_bert_model")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001))
    return Scenario(
        name="masked_language_modeling",
        source="keras-io examples/nlp/masked_language_modeling.py",
        model=model,
        x=mlm_ds,
        diagnose_args=(mlm_ds,),
        notes=(
            "compile() without a loss; compute_loss overridden without a "
            "`training` argument, returns a sum; sample weights mask the "
            "unmasked tokens; compute_metrics and metrics overridden."
        ),
    )


# --------------------------------------------------------------------------
# 3. functools.partial loss (label smoothing through a partial)
def partial_label_smoothing():
    features, classes, n = 8, 4, 96
    rng = _rng(3)
    x = rng.normal(size=(n, features)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]
    model = keras.Sequential(
        [
            keras.Input((features,)),
            layers.Dense(16, activation="relu"),
            layers.Dense(classes, activation=keras.activations.softmax),
        ]
    )
    loss_label_smoothed = functools.partial(
        keras.losses.categorical_crossentropy, label_smoothing=0.0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss=loss_label_smoothed,
        metrics=["accuracy"],
    )
    return Scenario(
        name="partial_label_smoothing",
        source=(
            "forum pattern: functools.partial(keras.losses.categorical_crossentropy,"
            " label_smoothing=...) as the compiled loss (no keras.io file)"
        ),
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32},
        diagnose_args=(x, y),
        notes="a functools.partial has no __name__",
    )


# --------------------------------------------------------------------------
# 4. TensorFlow tutorial text/tutorials/nmt_with_attention (Keras 3 port of
# its masked_loss; the encoder / cross-attention / decoder shrunk).
def masked_loss(y_true, y_pred):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="none"
    )
    loss = loss_fn(y_true, y_pred)
    mask = ops.cast(y_true != 0, loss.dtype)
    return ops.sum(loss * mask) / ops.sum(mask)


def masked_acc(y_true, y_pred):
    y_pred = ops.argmax(y_pred, axis=-1)
    y_true = ops.cast(y_true, y_pred.dtype)
    match = ops.cast(y_true == y_pred, "float32")
    mask = ops.cast(y_true != 0, "float32")
    return ops.sum(match * mask) / ops.sum(mask)


class Encoder(layers.Layer):
    def __init__(self, vocab_size, units):
        super().__init__()
        self.embedding = layers.Embedding(vocab_size, units, mask_zero=True)
        self.rnn = layers.Bidirectional(
            merge_mode="sum",
            layer=layers.GRU(units, return_sequences=True),
        )

    def call(self, x):
        x = self.embedding(x)
        return self.rnn(x)


class CrossAttention(layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__()
        self.mha = layers.MultiHeadAttention(key_dim=units, num_heads=1, **kwargs)
        self.layernorm = layers.LayerNormalization()
        self.add = layers.Add()

    def call(self, x, context):
        attn_output = self.mha(query=x, value=context)
        x = self.add([x, attn_output])
        return self.layernorm(x)


class Decoder(layers.Layer):
    def __init__(self, vocab_size, units):
        super().__init__()
        self.embedding = layers.Embedding(vocab_size, units, mask_zero=True)
        self.rnn = layers.GRU(units, return_sequences=True, return_state=True)
        self.attention = CrossAttention(units)
        self.output_layer = layers.Dense(vocab_size)  # logits

    def call(self, context, x):
        x = self.embedding(x)
        x, _ = self.rnn(x)
        x = self.attention(x, context)
        return self.output_layer(x)


class Translator(keras.Model):
    def __init__(self, units, context_vocab_size, target_vocab_size):
        super().__init__()
        self.encoder = Encoder(context_vocab_size, units)
        self.decoder = Decoder(target_vocab_size, units)

    def call(self, inputs):
        context, x = inputs
        context = self.encoder(context)
        logits = self.decoder(context, x)
        return logits


def _shifted_pairs(n, vocab, steps, rng, start=1, end=2):
    """[start] w1 .. wk [end] 0 .. 0 token rows and their (in, out) halves."""
    rows = np.zeros((n, steps + 1), dtype="int64")
    for i, k in enumerate(rng.integers(3, steps - 1, n)):
        rows[i, 0] = start
        rows[i, 1 : k + 1] = rng.integers(3, vocab, k)
        rows[i, k + 1] = end
    return rows[:, :-1], rows[:, 1:]


def nmt_masked_loss():
    vocab, steps, units, n, batch_size = 64, 10, 16, 96, 32
    rng = _rng(4)
    context = np.zeros((n, steps), dtype="int64")
    for i, k in enumerate(rng.integers(3, steps + 1, n)):
        context[i, :k] = rng.integers(3, vocab, k)
    target_in, target_out = _shifted_pairs(n, vocab, steps, rng)
    train = (
        tf.data.Dataset.from_tensor_slices(((context, target_in), target_out))
        .shuffle(n, seed=0)
        .batch(batch_size)
    )
    val = tf.data.Dataset.from_tensor_slices(
        ((context[:32], target_in[:32]), target_out[:32])
    ).batch(batch_size)
    model = Translator(units, vocab, vocab)
    model.compile(optimizer="adam", loss=masked_loss, metrics=[masked_acc, masked_loss])
    return Scenario(
        name="nmt_masked_loss",
        source="tensorflow/text docs/tutorials/nmt_with_attention.ipynb (masked_loss)",
        model=model,
        x=train,
        fit_kwargs={"validation_data": val},
        diagnose_args=(train,),
        notes=(
            "function loss that masks and reduces to a scalar itself; logits "
            "output carrying a Keras mask (mask_zero=True); subclassed model "
            "with a tuple input; the loss is also a metric."
        ),
    )


# --------------------------------------------------------------------------
# 5. examples/nlp/lstm_seq2seq.py
def lstm_seq2seq():
    n, enc_len, dec_len, enc_tokens, dec_tokens, latent_dim = 80, 10, 20, 20, 24, 16
    rng = _rng(5)
    # As in the example: characters sorted, so the encoder's space is 0 and
    # the decoder's is 2 ("\t" = 0 and "\n" = 1 sort before " ").
    space_in, space_out, tab, newline = 0, 2, 0, 1
    encoder_input_data = np.zeros((n, enc_len, enc_tokens), dtype="float32")
    decoder_input_data = np.zeros((n, dec_len, dec_tokens), dtype="float32")
    decoder_target_data = np.zeros((n, dec_len, dec_tokens), dtype="float32")
    for i in range(n):
        input_text = rng.integers(1, enc_tokens, rng.integers(3, enc_len))
        body = rng.integers(3, dec_tokens, rng.integers(2, 10))
        body[rng.uniform(size=len(body)) < 0.15] = space_out  # between words
        target_text = np.concatenate([[tab], body, [newline]])
        for t, char in enumerate(input_text):
            encoder_input_data[i, t, char] = 1.0
        encoder_input_data[i, t + 1 :, space_in] = 1.0
        for t, char in enumerate(target_text):
            decoder_input_data[i, t, char] = 1.0
            if t > 0:
                decoder_target_data[i, t - 1, char] = 1.0
        decoder_input_data[i, t + 1 :, space_out] = 1.0
        decoder_target_data[i, t:, space_out] = 1.0

    encoder_inputs = keras.Input(shape=(None, enc_tokens))
    encoder = keras.layers.LSTM(latent_dim, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = keras.Input(shape=(None, dec_tokens))
    decoder_lstm = keras.layers.LSTM(
        latent_dim, return_sequences=True, return_state=True
    )
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = keras.layers.Dense(dec_tokens, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], decoder_outputs)
    model.compile(
        optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"]
    )
    x = [encoder_input_data, decoder_input_data]
    return Scenario(
        name="lstm_seq2seq",
        source="keras-io examples/nlp/lstm_seq2seq.py",
        model=model,
        x=x,
        y=decoder_target_data,
        fit_kwargs={"batch_size": 32, "validation_split": 0.2},
        diagnose_args=(x, decoder_target_data),
        notes="one-hot float inputs and targets, (None, None, K) inputs, "
        "validation_split; padded with the space character (id 2 in the "
        "decoder, as in the example): decoder input and target both end in "
        "runs of it, which are padding, not copies (63.5% of the non-0 "
        "positions match without excluding them)",
    )


# --------------------------------------------------------------------------
# 6. examples/keras_recipes/endpoint_layer_pattern.py
class LogisticEndpoint(keras.layers.Layer):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def call(self, logits, targets=None, sample_weight=None):
        if targets is not None:
            # Compute the training-time loss value and add it
            # to the layer using `self.add_loss()`.
            loss = self.loss_fn(targets, logits, sample_weight)
            self.add_loss(loss)
        # Return the inference-time prediction tensor (for `.predict()`).
        return ops.softmax(logits)


def endpoint_layer_pattern():
    features, n = 24, 96
    inputs = keras.Input((features,), name="inputs")
    logits = keras.layers.Dense(1)(inputs)
    targets = keras.Input((1,), name="targets")
    sample_weight = keras.Input((1,), name="sample_weight")
    preds = LogisticEndpoint()(logits, targets, sample_weight)
    model = keras.Model([inputs, targets, sample_weight], preds)
    rng = _rng(6)
    data = {
        "inputs": rng.random((n, features)),
        "targets": rng.random((n, 1)),
        "sample_weight": rng.random((n, 1)),
    }
    model.compile(keras.optimizers.Adam(1e-3))
    return Scenario(
        name="endpoint_layer_pattern",
        source="keras-io examples/keras_recipes/endpoint_layer_pattern.py",
        model=model,
        x=data,
        fit_kwargs={"batch_size": 32},
        diagnose_args=(data,),  # fit(data): no y, the targets are an input
        notes="loss only through add_loss in a layer; compile() without loss; "
        "fit(x) with y=None and a dict of inputs",
    )


# --------------------------------------------------------------------------
# 7. examples/generative/vae.py (Keras 3 version)
class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(
            name="reconstruction_loss"
        )
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [
            self.total_loss_tracker,
            self.reconstruction_loss_tracker,
            self.kl_loss_tracker,
        ]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(
                ops.sum(
                    keras.losses.binary_crossentropy(data, reconstruction),
                    axis=(1, 2),
                )
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {
            "loss": self.total_loss_tracker.result(),
            "reconstruction_loss": self.reconstruction_loss_tracker.result(),
            "kl_loss": self.kl_loss_tracker.result(),
        }


def vae():
    latent_dim, size, n = 2, 8, 64
    encoder_inputs = keras.Input(shape=(size, size, 1))
    x = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(
        encoder_inputs
    )
    x = layers.Conv2D(16, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")

    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(2 * 2 * 16, activation="relu")(latent_inputs)
    x = layers.Reshape((2, 2, 16))(x)
    x = layers.Conv2DTranspose(16, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(8, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(
        1, 3, activation="sigmoid", padding="same"
    )(x)
    decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")

    rng = _rng(7)
    digits = rng.integers(0, 256, (n, size, size)) * (rng.random((n, size, size)) < 0.3)
    mnist_digits = np.expand_dims(digits, -1).astype("float32") / 255
    model = VAE(encoder, decoder)
    model.compile(optimizer=keras.optimizers.Adam())
    return Scenario(
        name="vae",
        source="keras-io examples/generative/vae.py",
        model=model,
        x=mnist_digits,
        fit_kwargs={"batch_size": 32},
        diagnose_args=None,  # fit(x) only: no labels
        notes="custom train_step with its own loss trackers; never calls "
        "compute_loss; no call(); fit(x) with y=None",
    )


# --------------------------------------------------------------------------
# 8. examples/nlp/text_classification_with_transformer.py
def _text_classifier(maxlen, vocab_size):
    embed_dim, num_heads, ff_dim = 16, 2, 16
    inputs = layers.Input(shape=(maxlen,))
    embedding_layer = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)
    x = embedding_layer(inputs)
    transformer_block = TransformerBlock(embed_dim, num_heads, ff_dim)
    x = transformer_block(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(20, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def _imdb_like(n, maxlen, vocab_size, rng):
    """pad_sequences output: left-padded int32 ids, 0/1 labels."""
    x = np.zeros((n, maxlen), dtype="int32")
    for i, k in enumerate(rng.integers(4, maxlen + 1, n)):
        x[i, maxlen - k :] = rng.integers(1, vocab_size, k)
    y = rng.integers(0, 2, n)
    return x, y


def text_classifier_validation_data():
    vocab_size, maxlen = 100, 16
    rng = _rng(8)
    x_train, y_train = _imdb_like(96, maxlen, vocab_size, rng)
    x_val, y_val = _imdb_like(32, maxlen, vocab_size, rng)
    return Scenario(
        name="text_classifier_validation_data",
        source="keras-io examples/nlp/text_classification_with_transformer.py",
        model=_text_classifier(maxlen, vocab_size),
        x=x_train,
        y=y_train,
        fit_kwargs={"batch_size": 32, "validation_data": (x_val, y_val)},
        diagnose_args=(x_train, y_train),
        notes="healthy: sparse CE on a 2-way softmax, validation_data",
    )


def text_classifier_validation_split():
    vocab_size, maxlen = 100, 16
    rng = _rng(9)
    x_train, y_train = _imdb_like(128, maxlen, vocab_size, rng)
    return Scenario(
        name="text_classifier_validation_split",
        source=(
            "keras-io examples/nlp/text_classification_with_transformer.py "
            "(validation_split instead of validation_data)"
        ),
        model=_text_classifier(maxlen, vocab_size),
        x=x_train,
        y=y_train,
        fit_kwargs={"batch_size": 32, "validation_split": 0.25},
        diagnose_args=(x_train, y_train),
        notes="healthy: sparse CE on a 2-way softmax, validation_split",
    )


# --------------------------------------------------------------------------
# 9. The "forum fix": clipping a loss that went negative because the targets
# are GloVe vectors. Fault: NEGATIVE_LABELS (hidden by the clip).
def clipped_loss(y_true, y_pred):
    return tf.clip_by_value(
        tf.keras.losses.categorical_crossentropy(y_true, y_pred), 0, 10
    )


def clipped_glove_targets():
    vocab, steps, dim, n = 64, 10, 50, 96
    rng = _rng(10)
    glove = (rng.normal(size=(vocab, dim)) * 0.4).astype("float32")
    x = rng.integers(1, vocab, (n, steps))
    target_ids = rng.integers(1, vocab, (n, steps))
    y = glove[target_ids]  # (n, steps, 50) floats, about half negative
    inp = keras.Input((steps,), dtype="int32")
    h = layers.Embedding(vocab, 16)(inp)
    h = layers.LSTM(16, return_sequences=True)(h)
    out = layers.Dense(dim, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=clipped_loss, metrics=["accuracy"])
    return Scenario(
        name="clipped_glove_targets",
        source=(
            "forum answer: clip the loss of a seq2seq with GloVe-vector targets "
            "(tf.clip_by_value(categorical_crossentropy, 0, 10))"
        ),
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32},
        diagnose_args=(x, y),
        faults=frozenset({"NEGATIVE_LABELS"}),
        notes="faulty: 50-d embedding vectors (with negatives) as targets of a "
        "50-way softmax; the clip hides the negative loss",
    )


# --------------------------------------------------------------------------
# 10. A hand-written cross-entropy on a ReLU output (p > 1).
def custom_loss(y_true, y_pred):
    return -ops.sum(y_true * ops.log(y_pred + 1e-7), axis=-1)


def handwritten_ce_relu():
    features, classes, n = 8, 5, 96
    rng = _rng(11)
    x = (rng.normal(size=(n, features)) * 2).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]
    model = keras.Sequential(
        [
            keras.Input((features,)),
            layers.Dense(16, activation="relu"),
            layers.Dense(classes, activation="relu"),
        ]
    )
    model.compile(optimizer="adam", loss=custom_loss)
    return Scenario(
        name="handwritten_ce_relu",
        source="forum pattern: -sum(y * log(p + 1e-7)) written by hand, ReLU output",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32},
        diagnose_args=(x, y),
        faults=frozenset({"PREDICTIONS_NOT_PROBABILITIES"}),
        notes="faulty: ReLU outputs are not probabilities (p > 1 makes the "
        "loss negative, p = 0 costs 16.1)",
    )


# --------------------------------------------------------------------------
# 11. examples/nlp/neural_machine_translation_with_transformer.py
class TransformerEncoder(layers.Layer):
    def __init__(self, embed_dim, dense_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.dense_dim = dense_dim
        self.num_heads = num_heads
        self.attention = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embed_dim
        )
        self.dense_proj = keras.Sequential(
            [
                layers.Dense(dense_dim, activation="relu"),
                layers.Dense(embed_dim),
            ]
        )
        self.layernorm_1 = layers.LayerNormalization()
        self.layernorm_2 = layers.LayerNormalization()
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            padding_mask = ops.cast(mask[:, None, :], dtype="int32")
        else:
            padding_mask = None
        attention_output = self.attention(
            query=inputs, value=inputs, key=inputs, attention_mask=padding_mask
        )
        proj_input = self.layernorm_1(inputs + attention_output)
        proj_output = self.dense_proj(proj_input)
        return self.layernorm_2(proj_input + proj_output)


class PositionalEmbedding(layers.Layer):
    def __init__(self, sequence_length, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_embeddings = layers.Embedding(
            input_dim=vocab_size, output_dim=embed_dim
        )
        self.position_embeddings = layers.Embedding(
            input_dim=sequence_length, output_dim=embed_dim
        )
        self.sequence_length = sequence_length
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim

    def call(self, inputs):
        length = ops.shape(inputs)[-1]
        positions = ops.arange(0, length, 1)
        embedded_tokens = self.token_embeddings(inputs)
        embedded_positions = self.position_embeddings(positions)
        return embedded_tokens + embedded_positions

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0)


class TransformerDecoder(layers.Layer):
    def __init__(self, embed_dim, latent_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.latent_dim = latent_dim
        self.num_heads = num_heads
        self.attention_1 = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embed_dim
        )
        self.attention_2 = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embed_dim
        )
        self.dense_proj = keras.Sequential(
            [
                layers.Dense(latent_dim, activation="relu"),
                layers.Dense(embed_dim),
            ]
        )
        self.layernorm_1 = layers.LayerNormalization()
        self.layernorm_2 = layers.LayerNormalization()
        self.layernorm_3 = layers.LayerNormalization()
        self.supports_masking = True

    def call(self, inputs, encoder_outputs, mask=None):
        causal_mask = self.get_causal_attention_mask(inputs)
        if mask is not None:
            padding_mask = ops.cast(mask[:, None, :], dtype="int32")
            padding_mask = ops.minimum(padding_mask, causal_mask)
        else:
            padding_mask = None
        attention_output_1 = self.attention_1(
            query=inputs, value=inputs, key=inputs, attention_mask=causal_mask
        )
        out_1 = self.layernorm_1(inputs + attention_output_1)
        attention_output_2 = self.attention_2(
            query=out_1,
            value=encoder_outputs,
            key=encoder_outputs,
            attention_mask=padding_mask,
        )
        out_2 = self.layernorm_2(out_1 + attention_output_2)
        proj_output = self.dense_proj(out_2)
        return self.layernorm_3(out_2 + proj_output)

    def get_causal_attention_mask(self, inputs):
        input_shape = tf.shape(inputs)
        batch_size, sequence_length = input_shape[0], input_shape[1]
        i = tf.range(sequence_length)[:, tf.newaxis]
        j = tf.range(sequence_length)
        mask = tf.cast(i >= j, dtype="int32")
        mask = tf.reshape(mask, (1, input_shape[1], input_shape[1]))
        mult = tf.concat(
            [tf.expand_dims(batch_size, -1), tf.constant([1, 1], dtype=tf.int32)],
            axis=0,
        )
        return tf.tile(mask, mult)


def nmt_transformer():
    vocab_size, sequence_length, embed_dim, latent_dim, num_heads = 64, 10, 16, 32, 2
    n, batch_size = 96, 32
    rng = _rng(12)
    eng = np.zeros((n, sequence_length), dtype="int64")
    for i, k in enumerate(rng.integers(3, sequence_length + 1, n)):
        eng[i, :k] = rng.integers(2, vocab_size, k)
    # spa_vectorization(...) has sequence_length + 1 steps: [start] .. [end]
    spa_in, spa_out = _shifted_pairs(n, vocab_size, sequence_length + 1, rng)
    spa_in, spa_out = spa_in[:, :sequence_length], spa_out[:, :sequence_length]

    def make_dataset(a, b, c):
        dataset = tf.data.Dataset.from_tensor_slices(
            ({"encoder_inputs": a, "decoder_inputs": b}, c)
        )
        return dataset.batch(batch_size).shuffle(2048, seed=0).prefetch(16).cache()

    train_ds = make_dataset(eng[:64], spa_in[:64], spa_out[:64])
    val_ds = make_dataset(eng[64:], spa_in[64:], spa_out[64:])

    encoder_inputs = keras.Input(shape=(None,), dtype="int64", name="encoder_inputs")
    x = PositionalEmbedding(sequence_length, vocab_size, embed_dim)(encoder_inputs)
    encoder_outputs = TransformerEncoder(embed_dim, latent_dim, num_heads)(x)

    decoder_inputs = keras.Input(shape=(None,), dtype="int64", name="decoder_inputs")
    encoded_seq_inputs = keras.Input(
        shape=(None, embed_dim), name="decoder_state_inputs"
    )
    x = PositionalEmbedding(sequence_length, vocab_size, embed_dim)(decoder_inputs)
    x = TransformerDecoder(embed_dim, latent_dim, num_heads)(x, encoded_seq_inputs)
    x = layers.Dropout(0.5)(x)
    decoder_outputs = layers.Dense(vocab_size, activation="softmax")(x)
    decoder = keras.Model([decoder_inputs, encoded_seq_inputs], decoder_outputs)

    decoder_outputs = decoder([decoder_inputs, encoder_outputs])
    transformer = keras.Model(
        [encoder_inputs, decoder_inputs], decoder_outputs, name="transformer"
    )
    transformer.compile(
        "rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return Scenario(
        name="nmt_transformer",
        source="keras-io examples/nlp/neural_machine_translation_with_transformer.py",
        model=transformer,
        x=train_ds,
        fit_kwargs={"validation_data": val_ds},
        diagnose_args=(train_ds,),
        notes="healthy: dict inputs, the output comes from a nested Model, "
        "padding masked through compute_mask; validation_data",
    )


# --------------------------------------------------------------------------
# 12. examples/vision/knowledge_distillation.py (the Keras 3 port: the
# Distiller overrides compute_loss and call instead of train_step). Its losses
# live on the model (compile(student_loss_fn=..., distillation_loss_fn=...)),
# model.loss is None. The faulty variant drops from_logits=True from the
# student loss while the student still outputs logits.
class Distiller(keras.Model):
    def __init__(self, student, teacher):
        super().__init__()
        self.teacher = teacher
        self.student = student

    def compile(
        self,
        optimizer,
        metrics,
        student_loss_fn,
        distillation_loss_fn,
        alpha=0.1,
        temperature=3,
    ):
        super().compile(optimizer=optimizer, metrics=metrics)
        self.student_loss_fn = student_loss_fn
        self.distillation_loss_fn = distillation_loss_fn
        self.alpha = alpha
        self.temperature = temperature

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False
    ):
        teacher_pred = self.teacher(x, training=False)
        student_loss = self.student_loss_fn(y, y_pred)
        distillation_loss = self.distillation_loss_fn(
            ops.softmax(teacher_pred / self.temperature, axis=1),
            ops.softmax(y_pred / self.temperature, axis=1),
        ) * (self.temperature**2)
        return self.alpha * student_loss + (1 - self.alpha) * distillation_loss

    def call(self, x):
        return self.student(x)


def _distiller(from_logits):
    def cnn(width, name):
        return keras.Sequential(
            [
                keras.Input(shape=(8, 8, 1)),
                layers.Conv2D(width, (3, 3), strides=(2, 2), padding="same"),
                layers.LeakyReLU(negative_slope=0.2),
                layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
                layers.Conv2D(2 * width, (3, 3), strides=(2, 2), padding="same"),
                layers.Flatten(),
                layers.Dense(10),
            ],
            name=name,
        )

    rng = _rng(12)
    x = rng.random((96, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 96)
    distiller = Distiller(student=cnn(4, "student"), teacher=cnn(16, "teacher"))
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits
        ),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    return x, y, distiller


def knowledge_distillation():
    x, y, model = _distiller(from_logits=True)
    return Scenario(
        name="knowledge_distillation",
        source="keras-io examples/vision/knowledge_distillation.py",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32},
        diagnose_args=(x, y),
        notes="healthy: the losses live on the model (compute_loss reads "
        "self.student_loss_fn), model.loss is None",
    )


def distillation_without_from_logits():
    x, y, model = _distiller(from_logits=False)
    return Scenario(
        name="distillation_without_from_logits",
        source="keras-io examples/vision/knowledge_distillation.py, with "
        "student_loss_fn=SparseCategoricalCrossentropy() (from_logits dropped)",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32},
        diagnose_args=(x, y),
        faults=frozenset({"PREDICTIONS_NOT_PROBABILITIES"}),
        notes="the student outputs logits; its loss, held by the model, "
        "expects probabilities",
    )


SCENARIOS = {
    builder.__name__: builder
    for builder in (
        ner_transformers,
        masked_language_modeling,
        partial_label_smoothing,
        nmt_masked_loss,
        lstm_seq2seq,
        endpoint_layer_pattern,
        vae,
        text_classifier_validation_data,
        text_classifier_validation_split,
        clipped_glove_targets,
        handwritten_ce_relu,
        nmt_transformer,
        knowledge_distillation,
        distillation_without_from_logits,
    )
}
