"""Arrays placed against a memory alignment (tf.data copies or shares a
NumPy array depending on it; see test_keras_facts)."""

import numpy as np


def misaligned(shape, offset=16):
    """An empty float32 array `offset` bytes past a 64-byte boundary."""
    size = int(np.prod(shape)) * 4
    raw = np.empty(size + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    return raw[start : start + size].view(np.float32).reshape(shape)
