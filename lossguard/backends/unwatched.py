"""A Keras backend lossguard does not watch the steps of (not TensorFlow,
JAX or PyTorch): the callback checks the configuration and records Keras'
running loss only."""

from __future__ import annotations

from lossguard.backends.common import (  # noqa: F401 - the protocol
    branch_free_statistics,
    carries_state,
    compile_function,
    eager,
    gather,
    hooks_follow_each_step,
    is_chief,
    reads_keras_logits,
    replicas_in_sync,
    stops_on_bad_sparse_label,
    strategy_scope,
    sync,
)

name = "unwatched"
label = "this backend"
watched = False


def rows_for(model, capacity, width, compute):
    raise NotImplementedError("lossguard does not watch this backend's steps")


def write_row(buffer, counter, row, capacity):
    raise NotImplementedError("lossguard does not watch this backend's steps")
