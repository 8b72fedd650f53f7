"""Nested lists, tuples and dicts of tensors, flattened and rebuilt fast.

Faster than `keras.tree` on PyTorch, where that walks torch's pytrees: these
run on every eager step."""

from __future__ import annotations


def flatten(structure, strict=False):
    """The tensors (and Nones) of nested lists, tuples and dicts, in order.

    A leaf of another kind is kept as a leaf, or, with `strict`, makes the
    answer None.
    """
    leaves = []
    stack = [structure]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple) and not hasattr(item, "_fields"):
            stack.extend(reversed(item))
        elif type(item) is dict:
            stack.extend(item[key] for key in reversed(sorted(item, key=str)))
        elif item is None or hasattr(item, "shape") or not strict:
            leaves.append(item)
        else:
            return None
    return leaves


def rebuild(structure, leaves):
    """`structure` with its leaves taken in order from the iterator `leaves`."""
    if isinstance(structure, list | tuple) and not hasattr(structure, "_fields"):
        return type(structure)(rebuild(item, leaves) for item in structure)
    if type(structure) is dict:
        rebuilt = {
            key: rebuild(structure[key], leaves) for key in sorted(structure, key=str)
        }
        return {key: rebuilt[key] for key in structure}
    return next(leaves)
